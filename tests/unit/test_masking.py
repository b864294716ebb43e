from __future__ import annotations

import logging

import pytest

from trailpay.domain.masking import mask_phone
from trailpay.logs import ScrubFilter, scrub


@pytest.mark.parametrize("phone", ["254712345678", "+254712345678", "0712345678", "256701234567"])
def test_phone_numbers_are_masked(phone):
    out = scrub(f"sending STK push to {phone} now")
    assert phone not in out
    assert phone.lstrip("+")[-8:] not in out


@pytest.mark.parametrize("secret", [
    "sk_test_abc123DEF", "sk_live_zzz999", "whsec_abcdef123", "pi_123abc_secret_xyz789",
])
def test_secrets_are_removed(secret):
    assert secret not in scrub(f"key={secret} more")


def test_card_numbers_are_masked():
    out = scrub("card 4242 4242 4242 4242 and 4000000000003220")
    assert "4242 4242 4242 4242" not in out and "4000000000003220" not in out
    assert "****4242" in out and "****3220" in out


def test_tokens_and_passwords():
    out = scrub('Authorization: Token abcdef123456 {"Password": "c2VjcmV0", "passkey": "bfb279f9"}')
    assert "abcdef123456" not in out and "c2VjcmV0" not in out and "bfb279f9" not in out


def test_mask_phone_keeps_ends():
    assert mask_phone("254712345678") == "2547******78"
    assert mask_phone(None) == ""


def test_filter_scrubs_args():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "pay %s with %s", ("254712345678", "sk_test_abc"), None)
    ScrubFilter().filter(record)
    assert "254712345678" not in record.getMessage()
    assert "sk_test_abc" not in record.getMessage()


@pytest.mark.parametrize("prompt", [
    "ws_CO_011220261802154c0664904857",  # the sandbox's: date and time, then hex
    "ws_CO_01122026180215ab38f2aa3c91",  # hex starting with letters: 14 digits, card-shaped
    "ws_CO_191220191020363925",  # Daraja's documented shape
])
def test_daraja_prompt_ids_are_kept_whole_and_phones_beside_them_masked(prompt):
    """They named the same payment whole in one log line and masked in the next."""
    out = scrub(f"double charge on {prompt} for 254712345678; card 4000000000003220")
    assert prompt in out
    assert "254712345678" not in out and "4000000000003220" not in out
