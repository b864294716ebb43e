"""The contract every provider module fulfils.

Two roles per provider:

* :class:`WebhookHandler` (pure, synchronous): verify a raw webhook or callback and
  normalise it into :class:`ProviderEvent` records keyed by payment reference. Used by the
  ingress (to answer 4xx on a bad signature) and by the dedup agent.
* :class:`ProviderGateway` (async, network): carry out a :class:`ProviderCommand` against the
  provider's API and report the outcome as provider events. Used by the dispatcher agent.
  Calling it twice with the same command must call the provider with the same idempotency
  key and return events with the same ``event_id`` values.
"""

from __future__ import annotations

from typing import Protocol

from trailpay.domain.errors import PermanentError
from trailpay.domain.events import Provider, ProviderCommand, ProviderEvent, RawWebhook


class WebhookRejected(PermanentError):
    """The webhook failed verification (bad signature, stale timestamp, wrong token).
    It is recorded for audit and never applied."""


class WebhookUnparseable(PermanentError):
    """The webhook verified (or needs no verification) but its body is not understood."""


class WebhookHandler(Protocol):
    provider: Provider

    def verify(self, raw: RawWebhook) -> None:
        """Raise :class:`WebhookRejected` when the webhook cannot be trusted."""

    def reference_of(self, body: bytes, query: dict[str, str]) -> str | None:
        """The payment reference, if it can be told from the body or callback URL."""

    def normalize(self, raw: RawWebhook) -> list[ProviderEvent]:
        """Provider events for a verified webhook; ``event_id`` is the dedup identity.
        An event type we do not act on gives an empty list."""


class ProviderGateway(Protocol):
    provider: Provider

    async def execute(self, command: ProviderCommand) -> list[ProviderEvent]:
        """Carry out the command; raise RetriableError for transient failures only."""

    async def aclose(self) -> None: ...
