"""Payment references: random for API payments, derived for booking payments."""

from __future__ import annotations

import secrets

from trailpay.domain.events import stable_id

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def new_reference() -> str:
    """An ingress-made payment reference: ``TP`` + 20 upper-case alphanumerics."""
    return "TP" + "".join(secrets.choice(_ALPHABET) for _ in range(20))


def keyed_reference(seed: str) -> str:
    """The payment reference of a request with an ``Idempotency-Key``: derived from the
    key's seed (:func:`connectors.ingress.idempotency.request_seed`), so running the request
    again after its first run died half-way names the same payment."""
    return "TP" + stable_id("reference", seed)[:20].upper()


def booking_reference(booking_id: str, revision: int) -> str:
    """The payment reference of one booking revision: the same booking event, delivered or
    replayed any number of times, names the same payment."""
    return "TPB-" + stable_id(booking_id, revision)[:20]
