"""What one applied input changes, between deciding and emitting."""

from __future__ import annotations

from dataclasses import dataclass, field

from trailpay.domain.commands import CommandOptions
from trailpay.domain.events import NotificationTemplate, ProviderCommandKind
from trailpay.domain.snapshot_update import SnapshotUpdate
from trailpay.domain.status import PaymentStatus


@dataclass
class Step:
    """What one applied input changes, before it is turned into records: the status it
    moves to (maybe the same), what moved it, the snapshot fields it changes, the provider
    commands it asks for and the notification it sends."""

    status: PaymentStatus
    cause: str
    updates: SnapshotUpdate = field(default_factory=SnapshotUpdate)
    commands: list[tuple[ProviderCommandKind, CommandOptions]] = field(default_factory=list)
    notify: NotificationTemplate | None = None
    detail: str = ""
    #: Count the status's deadline again from this input even if the status stays (a new
    #: attempt gives the customer a new window).
    restart_deadline: bool = False
    #: The deadline is the retry window from this input (a mobile-money attempt failed and
    #: the payment waits for the customer to try again: :func:`~trailpay.domain.deadlines.awaits_retry`).
    retry_window: bool = False
