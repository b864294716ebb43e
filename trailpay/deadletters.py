"""Build dead-letter records: the reason plus the original bytes, never a crash loop.

Phone numbers in the bytes and personal data in the reason are masked (issue 16): a dead
letter is read by support and kept for weeks, and nothing in it calls a provider. A
re-drive of a payment request therefore needs ``--value-file`` with the number.
"""

from __future__ import annotations

from trailpay.domain.events import DeadLetter, stable_id, utcnow
from trailpay.logs import mask_phones_in_body, scrub


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
) -> DeadLetter:
    """A dead letter whose id is stable for (topic, partition, offset, stage), so a record
    dead-lettered again after a redelivery is the same dead letter."""
    return DeadLetter(
        event_id=stable_id("dlq", source_topic, partition, offset, stage,
                           value if offset is None else ""),
        occurred_at=utcnow(),
        source_topic=source_topic,
        partition=partition,
        offset=offset,
        key=key,
        value=mask_phones_in_body(value or b""),
        error_type=type(exc).__name__,
        error_message=scrub(str(exc))[:2000],
        stage=stage,
        reference=reference,
    )
