"""The log scrubber masks mobile numbers of every country the routing rules serve."""

from __future__ import annotations

import pytest

from trailpay.logs import scrub


@pytest.mark.parametrize(("text", "expected"), [
    # Kenya
    ("pay +254712345678 now", "pay 2547******78 now"),
    ("pay 254712345678 now", "pay 2547******78 now"),
    ("pay 0712345678 now", "pay 0712****78 now"),
    ("pay 0112345678 now", "pay 0112****78 now"),
    ("pay +254 712 345 678 now", "pay 2547******78 now"),
    ("pay 0712-345-678 now", "pay 0712****78 now"),
    # Uganda
    ("pay +256772123456 now", "pay 2567******56 now"),
    ("pay 256772123456 now", "pay 2567******56 now"),
    ("pay 0772123456 now", "pay 0772****56 now"),
    ("pay +256 772 123456 now", "pay 2567******56 now"),
    # Tanzania
    ("pay +255712345678 now", "pay 2557******78 now"),
    ("pay 255612345678 now", "pay 2556******78 now"),
    ("pay 0612345678 now", "pay 0612****78 now"),
    # Zambia (was left unmasked)
    ("pay +260971234567 now", "pay 2609******67 now"),
    ("pay 260971234567 now", "pay 2609******67 now"),
    ("pay 0971234567 now", "pay 0971****67 now"),
    ("pay 260 97 123 4567 now", "pay 2609******67 now"),
    # DR Congo (was left unmasked)
    ("pay +243812345678 now", "pay 2438******78 now"),
    ("pay 243812345678 now", "pay 2438******78 now"),
    ("pay 0812345678 now", "pay 0812****78 now"),
    ("pay +243 812 345 678 now", "pay 2438******78 now"),
    # Rwanda
    ("pay +250788123456 now", "pay 2507******56 now"),
    ("pay 250788123456 now", "pay 2507******56 now"),
    ("pay 0788123456 now", "pay 0788****56 now"),
    # at the edges of a message, and in punctuation
    ("0712345678", "0712****78"),
    ("msisdn=254712345678,", "msisdn=2547******78,"),
    ('{"phone": "+243812345678"}', '{"phone": "2438******78"}'),
])
def test_mobile_numbers_are_masked(text, expected):
    assert scrub(text) == expected


@pytest.mark.parametrize("text", [
    "booking TPB-0712345678abcdef",          # part of a reference
    "payment TP0712345678ABCDEFGHIJ",
    "at 2026-12-01 07:12:34",                # a timestamp
    "amount 254700 KES",                     # too short for a number
    "port 0712",
])
def test_other_numbers_stay(text):
    assert scrub(text) == text
