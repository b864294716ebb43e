"""Provider events the gateways emit for a command's outcome.

Identity: ``cmd:<command id>`` for dispatcher results and ``query:<command id>`` for
query results (the sweeper's questions), so the same command always yields the same ids.
A provider refusing a command gives ``command_failed`` (status ``failed`` for an initiate)
with the provider's own code and text.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Generic, Protocol, TypeVar

from trailpay.domain.errors import PermanentError, ProviderRejected
from trailpay.domain.events import (
    ProviderCommand,
    ProviderCommandKind,
    ProviderEvent,
    ProviderEventKind,
    utcnow,
)
from trailpay.domain.status import PaymentStatus


def event_id_for(command: ProviderCommand, suffix: str | None = None) -> str:
    prefix = "query" if command.kind is ProviderCommandKind.QUERY else "cmd"
    base = f"{prefix}:{command.event_id}"
    return f"{base}:{suffix}" if suffix else base


def outcome(command: ProviderCommand, kind: ProviderEventKind, *, suffix: str | None = None,
            **fields: Any) -> ProviderEvent:
    source = "sweep" if command.kind is ProviderCommandKind.QUERY else "dispatcher"
    return ProviderEvent(
        event_id=event_id_for(command, suffix),
        occurred_at=utcnow(),
        kind=kind,
        reference=command.reference,
        provider=command.provider,
        source=source,
        command_id=command.event_id,
        **fields,
    )


def refused(command: ProviderCommand, code: str, message: str, **fields: Any) -> ProviderEvent:
    """``command_failed``: the provider (or our own validation before calling it) said no."""
    status = PaymentStatus.FAILED if command.kind is ProviderCommandKind.INITIATE else None
    if command.kind is ProviderCommandKind.REFUND:
        fields.setdefault("refund_id", command.refund_id)
        fields.setdefault("refund_succeeded", False)
        fields.setdefault("amount", command.refund_amount)
    return outcome(command, ProviderEventKind.COMMAND_FAILED, status=status,
                   provider_code=code, provider_message=message[:500], **fields)


def refused_by_error(command: ProviderCommand, exc: PermanentError) -> ProviderEvent:
    if isinstance(exc, ProviderRejected):
        extra: dict[str, Any] = {}
        reference = getattr(exc, "provider_reference", None)
        if reference:
            extra["provider_reference"] = reference
        return refused(command, exc.code, exc.provider_message, **extra)
    return refused(command, getattr(exc, "code", type(exc).__name__), str(exc))


def unsupported(command: ProviderCommand, what: str) -> ProviderEvent:
    return refused(command, "unsupported", f"{command.provider} does not support {what}")


Handler = Callable[[ProviderCommand], Awaitable[list[ProviderEvent]]]


class CommandGateway:
    """Runs a command by the handler for its kind (the ProviderGateway contract).

    A provider refusal (any :class:`PermanentError`) becomes a ``command_failed`` event with
    the provider's code and text; a kind the provider has no API for becomes ``unsupported``.
    Retriable errors propagate: the dispatcher retries them, then dead-letters.
    """

    def handlers(self) -> Mapping[ProviderCommandKind, Handler]:
        raise NotImplementedError

    def unsupported_what(self, kind: ProviderCommandKind) -> str:
        return f"{kind} commands"

    async def execute(self, command: ProviderCommand) -> list[ProviderEvent]:
        handler = self.handlers().get(command.kind)
        if handler is None:
            return [unsupported(command, self.unsupported_what(command.kind))]
        try:
            return await handler(command)
        except PermanentError as exc:
            return [refused_by_error(command, exc)]


class ProviderClient(Protocol):
    """What a gateway needs of its provider's API client beyond the calls: a way to close it."""

    async def aclose(self) -> None: ...


ClientT = TypeVar("ClientT", bound=ProviderClient)


class ClientGateway(CommandGateway, Generic[ClientT]):
    """A :class:`CommandGateway` over one provider API client, which it owns and closes."""

    def __init__(self, client: ClientT) -> None:
        self.client = client

    async def aclose(self) -> None:
        await self.client.aclose()
