"""Deadlines per non-terminal status (property 5: nothing stuck forever).

A payment in ``created``/``pending`` or ``processing`` has a deadline counted from the event
that moved it there. Past the deadline the sweeper asks the provider once (a QUERY command);
if the payment is still open a grace period later, it is expired.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from trailpay.domain.status import PaymentStatus

S = PaymentStatus

#: Shortest grace between the provider query and the expiry.
MIN_GRACE_S = 5


class _DeadlineSettings(Protocol):
    @property
    def pending_deadline_s(self) -> int: ...

    @property
    def processing_deadline_s(self) -> int: ...


@dataclass(frozen=True)
class DeadlinePolicy:
    """How long each open status may last, and the grace after the provider is asked."""

    pending_s: int = 120
    processing_s: int = 600

    @classmethod
    def from_settings(cls, settings: _DeadlineSettings) -> DeadlinePolicy:
        return cls(pending_s=settings.pending_deadline_s, processing_s=settings.processing_deadline_s)

    def window(self, status: PaymentStatus) -> timedelta | None:
        """How long ``status`` may last; None for settled statuses."""
        if status in (S.CREATED, S.PENDING):
            return timedelta(seconds=self.pending_s)
        if status is S.PROCESSING:
            return timedelta(seconds=self.processing_s)
        return None

    def deadline(self, status: PaymentStatus, since: datetime) -> datetime | None:
        window = self.window(status)
        return None if window is None else since + window

    def grace(self, status: PaymentStatus) -> timedelta:
        """Time between the provider query and the expiry: half the window, at least 5 s,
        so a query answer has time to come back through the dispatcher."""
        window = self.window(status)
        seconds = 0.0 if window is None else window.total_seconds() / 2
        return timedelta(seconds=max(MIN_GRACE_S, seconds))


#: The policy when none is configured (``apply`` and ``expire_request`` default to it).
DEFAULT_POLICY = DeadlinePolicy()
