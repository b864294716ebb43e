"""Saving a card for later payments (Stripe's ``setup_future_usage``)."""

from __future__ import annotations

from typing import Literal

#: Keep the card for payments with (``on_session``) or without (``off_session``) the customer
#: present; Stripe attaches it to the payment's customer once the payment succeeds.
FutureUsage = Literal["on_session", "off_session"]
