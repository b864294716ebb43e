"""The topic registry: every topic TrailPay uses, its key and its configuration.

Everything that drives one payment (requests, provider events, state changes, commands)
is keyed by payment reference and has the same partition count, so one worker owns a
payment's whole history (co-partitioning). Current-state topics are compacted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

BOOKING_EVENTS = "bookings.events.v1"
PAYMENT_REQUESTS = "payments.requests.v1"
WEBHOOKS_RAW = "webhooks.raw.v1"
PROVIDER_EVENTS = "provider.events.v1"
PAYMENT_STATE = "payments.state.v1"
PROVIDER_COMMANDS = "provider.commands.v1"
NOTIFICATIONS = "notifications.v1"
DEAD_LETTERS = "deadletters.v1"
#: The public contract for the booking platform (docs/events.md), keyed by booking id.
PAYMENT_EVENTS = "payments.events.v1"

#: Header on records that ``trailpay replay`` re-publishes (value: where the copy came from);
#: the stream counters skip them so a replay does not count a payment twice.
REPLAY_HEADER = "trailpay-replay"

WEEK_MS = 7 * 24 * 3600 * 1000


@dataclass(frozen=True)
class TopicSpec:
    name: str
    key: str
    contract: str
    description: str
    compacted: bool = False
    co_partitioned: bool = True
    retention_ms: int = WEEK_MS
    extra: dict[str, str] = field(default_factory=dict)

    def config(self) -> dict[str, str]:
        if self.compacted:
            cfg = {"cleanup.policy": "compact"}
        else:
            cfg = {"cleanup.policy": "delete", "retention.ms": str(self.retention_ms)}
        return {**cfg, **self.extra}


TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(BOOKING_EVENTS, "booking id", "BookingEvent",
              "Bookings from the platform; turned into payment requests", co_partitioned=False),
    TopicSpec(PAYMENT_REQUESTS, "payment reference", "PaymentRequest",
              "Create / cancel / refund / confirm / expire a payment"),
    TopicSpec(WEBHOOKS_RAW, "payment reference (or provider event id)", "RawWebhook",
              "Provider webhooks and callbacks exactly as received", retention_ms=4 * WEEK_MS),
    TopicSpec(PROVIDER_EVENTS, "payment reference", "ProviderEvent",
              "Verified, deduplicated, normalised provider facts"),
    TopicSpec(PAYMENT_STATE, "payment reference", "PaymentStateChanged",
              "Every transition; compacted to the current state", compacted=True),
    TopicSpec(PROVIDER_COMMANDS, "payment reference", "ProviderCommand",
              "Calls for the provider dispatcher"),
    TopicSpec(NOTIFICATIONS, "payment reference", "Notification",
              "E-mails to send (success, failure, refund)"),
    TopicSpec(DEAD_LETTERS, "source topic", "DeadLetter",
              "Records that could not be decoded or applied, with the original bytes",
              co_partitioned=False, retention_ms=4 * WEEK_MS),
    TopicSpec(PAYMENT_EVENTS, "booking id (payment reference when there is none)",
              "PublicPaymentEvent", "Business facts for the booking platform (docs/events.md)",
              co_partitioned=False, retention_ms=4 * WEEK_MS),
)

BY_NAME: dict[str, TopicSpec] = {spec.name: spec for spec in TOPICS}


def spec(name: str) -> TopicSpec:
    try:
        return BY_NAME[name]
    except KeyError:
        known = ", ".join(BY_NAME)
        raise KeyError(f"unknown topic {name!r}; known topics: {known}") from None


#: Consumer group of each sink, and the topics it reads. The stream worker's group is the
#: worker id (``TRAILPAY_WORKER_ID``); its topics are :data:`WORKER_TOPICS`.
POSTGRES_SINK_GROUP = "trailpay-sink-postgres"
POSTGRES_SINK_TOPICS: tuple[str, ...] = (PAYMENT_STATE, WEBHOOKS_RAW, BOOKING_EVENTS, DEAD_LETTERS)
CLICKHOUSE_SINK_GROUP = "trailpay-sink-clickhouse"
CLICKHOUSE_SINK_TOPICS: tuple[str, ...] = (
    PAYMENT_STATE, PROVIDER_COMMANDS, PROVIDER_EVENTS, WEBHOOKS_RAW, BOOKING_EVENTS,
)
WORKER_TOPICS: tuple[str, ...] = (
    BOOKING_EVENTS, PAYMENT_REQUESTS, WEBHOOKS_RAW, PROVIDER_EVENTS,
    PROVIDER_COMMANDS, NOTIFICATIONS, PAYMENT_STATE, DEAD_LETTERS,
)
#: The outgoing-webhook deliverer (``trailpay webhooks deliver``) and the topic it reads.
WEBHOOKS_GROUP = "trailpay-webhooks"
WEBHOOKS_TOPICS: tuple[str, ...] = (PAYMENT_EVENTS,)
