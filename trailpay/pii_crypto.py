"""Sealing the phone number and e-mail that payments.state.v1 carries (see
:mod:`trailpay.domain.contact` for why the state topic carries them at all).

The stream worker seals every state change it publishes (:meth:`ContactKeys.seal`): the
snapshot gets the masked phone number and e-mail, the change a :class:`SealedContact`
with both sealed. Its restore agent opens them again (:meth:`ContactKeys.open`) when it
gives the state machine a payment back from payments.state.v1; nobody else holds a key.

Keys: ``TRAILPAY_STATE_PII_KEYS``, comma-separated, each 32 random bytes in base64url; the
first seals, every one opens (a rotation puts the new key first and keeps the old ones
after it). ``trailpay up`` draws one per data directory (``secrets.json``, mode 0600);
production must set its own (:func:`trailpay.secret_settings.production_secret_problem`).

The construction: AES-256-GCM (``cryptography``) with the payment reference as associated
data (a seal copied onto another payment does not open) and a synthetic nonce, an HMAC of
the reference and the plaintext under a second key drawn from the same secret. So one
payment's contact seals the same way in every version and on every emission (a state change
has the same content each time it is emitted), and two seals share a nonce only when they
seal the same plaintext for the same payment, where GCM gives the same ciphertext and
reveals nothing new. The key id is a hash of the key, so no key needs a name.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import json
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from trailpay.domain.contact import SealedContact
from trailpay.domain.errors import ConfigurationError, PermanentError
from trailpay.domain.events import PaymentSnapshot, PaymentStateChanged
from trailpay.domain.masking import is_masked, mask_email, mask_phone, phone_prefix

if TYPE_CHECKING:
    from trailpay.settings import Settings

log = logging.getLogger(__name__)

VARIABLE = "TRAILPAY_STATE_PII_KEYS"
KEY_BYTES = 32
NONCE_BYTES = 12
#: Payments whose seal the worker keeps at hand (a payment's versions come minutes apart).
CACHED_CONTACTS = 4096
_AAD = b"trailpay.contact.v1\x1f"


class ContactUnreadable(PermanentError):
    """A state change whose phone number or e-mail cannot be given back: sealed under a key
    the worker does not hold (or not one of ours), or masked and not sealed at all. The
    restore agent dead-letters it; after the missing key is added, re-drive it."""


def new_key() -> str:
    """A fresh key as ``TRAILPAY_STATE_PII_KEYS`` takes it."""
    return base64.urlsafe_b64encode(secrets.token_bytes(KEY_BYTES)).decode().rstrip("=")


def _decode_key(text: str) -> bytes:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != KEY_BYTES:
        raise ConfigurationError(f"{VARIABLE}: each key is {KEY_BYTES} random bytes in base64url "
                                 "(python -c 'import trailpay.pii_crypto as p; print(p.new_key())')")
    return raw


def _derive(secret: bytes, label: bytes) -> bytes:
    return hmac.new(secret, b"trailpay.state-pii\x1f" + label, hashlib.sha256).digest()


@dataclass(frozen=True)
class _Key:
    key_id: str
    aead: AESGCM
    nonce_key: bytes

    @classmethod
    def of(cls, secret: bytes) -> _Key:
        key_id = hashlib.sha256(b"trailpay.state-pii.key-id\x1f" + secret).hexdigest()[:12]
        return cls(key_id, AESGCM(_derive(secret, b"aes-gcm")), _derive(secret, b"nonce"))


class ContactKeys:
    """The worker's keys for the contact of a state change: the first seals, all open."""

    def __init__(self, secrets_: Sequence[bytes] = ()) -> None:
        self._keys = [_Key.of(s) for s in secrets_]
        self._by_id = {k.key_id: k for k in self._keys}
        #: A payment's contact never changes after its create, so its next versions reuse
        #: the seal (the same bytes anyway): about half the cost of sealing a change.
        self._contact = functools.lru_cache(maxsize=CACHED_CONTACTS)(self._seal_contact)

    @classmethod
    def parse(cls, text: str | None) -> ContactKeys:
        """Keys from the setting's text (comma-separated); none from None or blank."""
        parts = [p.strip() for p in (text or "").split(",") if p.strip()]
        return cls([_decode_key(p) for p in parts])

    @classmethod
    def from_settings(cls, settings: Settings) -> ContactKeys:
        value = settings.state_pii_keys
        return cls.parse(None if value is None else value.get_secret_value())

    @classmethod
    def for_worker(cls, settings: Settings) -> ContactKeys:
        """The worker's keys, with a warning when there are none (a development setup)."""
        keys = cls.from_settings(settings)
        if keys.sealing_key_id is None:
            log.warning("%s is not set: payments.state.v1 gets masked phone numbers and e-mails, "
                        "not sealed ones, so a restore cannot give a payment its phone back", VARIABLE)
        return keys

    @property
    def sealing_key_id(self) -> str | None:
        """The id of the key that seals (None: no key, the contact is masked and not sealed)."""
        return self._keys[0].key_id if self._keys else None

    # ------------------------------------------------------------------ seal
    def seal(self, change: PaymentStateChanged) -> PaymentStateChanged:
        """``change`` as payments.state.v1 carries it: phone number and e-mail masked in the
        snapshot, sealed beside it (sealed only when there is a key)."""
        snap = change.payment
        if change.sealed_contact is not None or (not snap.phone_number and not snap.email):
            return change  # sealed already, or nothing to seal
        contact, phone, email = self._contact(snap.reference, snap.phone_number, snap.email)
        masked = snap.model_copy(update={"phone_number": phone, "email": email})
        return change.model_copy(update={"payment": masked, "sealed_contact": contact})

    def _seal_contact(self, reference: str, phone: str | None,
                      email: str | None) -> tuple[SealedContact, str | None, str | None]:
        """The seal of one payment's contact, and its masked phone number and e-mail."""
        key_id = sealed = None
        if self._keys:
            key = self._keys[0]
            plain = json.dumps({"p": phone, "e": email}, separators=(",", ":")).encode()
            aad = _AAD + reference.encode()
            nonce = hmac.new(key.nonce_key, aad + b"\x1f" + plain, hashlib.sha256).digest()[:NONCE_BYTES]
            key_id = key.key_id
            sealed = base64.urlsafe_b64encode(nonce + key.aead.encrypt(nonce, plain, aad)).decode()
        contact = SealedContact(key_id=key_id, sealed=sealed, phone_prefix=phone_prefix(phone))
        return contact, mask_phone(phone) or None, mask_email(email) or None

    # ------------------------------------------------------------------ open
    def open(self, change: PaymentStateChanged) -> PaymentSnapshot:
        """The snapshot of ``change`` with its phone number and e-mail whole again, as the
        state machine's table holds it. A change that was never sealed (written before
        sealing existed) comes back as it is, unless what it holds is masked."""
        snap = change.payment
        contact = change.sealed_contact
        if contact is None or contact.sealed is None:
            if is_masked(snap.phone_number) or is_masked(snap.email):
                raise ContactUnreadable(f"payment {snap.reference}: the phone number or e-mail is "
                                        "masked and was not sealed (the worker had no key)")
            return snap
        key = self._by_id.get(contact.key_id or "")
        if key is None:
            raise ContactUnreadable(f"payment {snap.reference}: sealed with key {contact.key_id}, "
                                    f"which {VARIABLE} does not hold")
        try:
            blob = base64.urlsafe_b64decode(contact.sealed)
            plain = key.aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], _AAD + snap.reference.encode())
            data = json.loads(plain)
            phone, email = data["p"], data["e"]
            if not all(v is None or isinstance(v, str) for v in (phone, email)):
                raise TypeError("not a phone number and e-mail")
        except (InvalidTag, binascii.Error, ValueError, KeyError, TypeError) as exc:
            raise ContactUnreadable(f"payment {snap.reference}: the contact does not open with key "
                                    f"{contact.key_id} ({type(exc).__name__})") from None
        return snap.model_copy(update={"phone_number": phone, "email": email})
