"""Amounts as Daraja writes them in callbacks and results."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from trailpay.domain.money import Money, MoneyError


def kes_amount(value: object) -> Money | None:
    """Daraja amounts are whole shillings, sometimes written as ``1.00``."""
    if value is None or isinstance(value, bool):
        return None
    try:
        return Money.of(Decimal(str(value)), "KES")
    except (InvalidOperation, MoneyError, ValueError):
        return None
