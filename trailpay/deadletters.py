"""Build dead-letter records: the reason plus the original bytes, never a crash loop.

Phone numbers in the bytes and personal data in the reason are masked (issue 16): a dead
letter is read by support and kept for weeks, and nothing in it calls a provider. A
re-drive of a payment request therefore needs ``--value-file`` with the number.
"""

from __future__ import annotations

import hashlib

from trailpay.domain.events import DeadLetter, stable_id, utcnow
from trailpay.logs import mask_phones_in_body, scrub

#: Original bytes a dead letter carries. A letter travels as JSON with the bytes in base64
#: (4/3 of their size) and must fit the broker's default message size (1 MiB) with room
#: for its envelope: a letter that the broker refuses would stop the consumer that sends
#: it, the crash loop dead letters exist to prevent. A longer record keeps its head here;
#: the reason names its size and SHA-256, and the whole record stays at its coordinates.
MAX_VALUE_BYTES = 600_000


def dead_letter(
    *,
    source_topic: str,
    partition: int | None,
    offset: int | None,
    key: bytes | None,
    value: bytes | None,
    exc: BaseException,
    stage: str,
    reference: str | None = None,
    max_value_bytes: int = MAX_VALUE_BYTES,
) -> DeadLetter:
    """A dead letter whose id is stable for (topic, partition, offset, stage), so a record
    dead-lettered again after a redelivery is the same dead letter."""
    value = value or b""
    message = _reason(exc)
    if len(value) > max_value_bytes:
        digest = hashlib.sha256(value).hexdigest()
        message = (f"[original value {len(value)} bytes, sha256 {digest}; the first "
                   f"{max_value_bytes} kept] {message}")
    return DeadLetter(
        event_id=stable_id("dlq", source_topic, partition, offset, stage,
                           value if offset is None else ""),
        occurred_at=utcnow(),
        source_topic=source_topic,
        partition=partition,
        offset=offset,
        key=key[:max_value_bytes] if key else key,
        value=mask_phones_in_body(value[:max_value_bytes]),
        error_type=type(exc).__name__,
        error_message=scrub(message)[:2000],
        stage=stage,
        reference=reference,
    )


def _reason(exc: BaseException) -> str:
    """``str(exc)`` as valid UTF-8 (a lone surrogate quoted from a hostile record would make
    the letter itself unencodable), never raising: nothing may stop the letter."""
    try:
        return str(exc)[:4000].encode("utf-8", "replace").decode("utf-8")
    except Exception:  # noqa: BLE001 - the type name is reason enough then
        return f"<{type(exc).__name__}: text unavailable>"
