"""The worker's typed wiring (streams/worker.py): what is built, in which order, with what.

A Faust app is only declared here (agents, tables, timers), never started: no broker.
"""

from __future__ import annotations

from typing import Any

import pytest

from streams.app import build
from streams.worker import AGENTS, Adapters, wire
from trailpay.domain.events import Provider, ProviderCommand, ProviderEvent
from trailpay.retry import RetryPolicies, RetryPolicy
from trailpay.settings import Settings

SETTINGS = Settings(kafka_bootstrap="127.0.0.1:9")


class FakeGateway:
    provider = Provider.MPESA

    async def execute(self, command: ProviderCommand) -> list[ProviderEvent]:
        return []

    async def aclose(self) -> None:
        return None


class FakeSender:
    async def send(self, event_id: str, message: Any) -> None:
        return None


def test_every_agent_is_declared_once_with_the_adapters_given():
    gateway, sender = FakeGateway(), FakeSender()
    handlers: dict[Provider, Any] = {}
    slow = RetryPolicy(attempts=7, base_delay_s=2.0, max_delay_s=20.0)
    adapters = Adapters(gateways=lambda: {Provider.MPESA: gateway}, webhook_handlers=handlers,
                        mail_sender=sender, retry=RetryPolicies(dispatcher=slow))
    parts = wire(build(SETTINGS), adapters=adapters)
    assert sorted(parts.app.agents) == [
        "advance_payments", "bridge_bookings", "dispatch_provider_commands", "normalize_webhooks",
        "observe_pipeline", "publish_public_events", "restore_payments", "send_notifications"]
    assert sorted(parts.app.tables.keys()) == [
        "bookings-handled", "notifications-sent", "parked", "payments", "provider-commands-done",
        "webhook-dedup"]
    assert parts.agents == AGENTS
    assert parts.dedup is not None and parts.dedup.handlers == {}
    assert parts.notifications is not None and parts.notifications.sender is sender
    assert parts.dispatcher is not None
    dispatcher = parts.dispatcher()
    assert dispatcher.gateways == {Provider.MPESA: gateway} and dispatcher.policy == slow
    assert parts.dispatcher() is dispatcher  # built once


def test_order_of_the_names_does_not_matter():
    parts = wire(build(SETTINGS), ["streams.agents.restore", "streams.agents.sweeper",
                                   "streams.agents.payments"])
    assert sorted(parts.app.agents) == ["advance_payments", "restore_payments"]
    assert parts.payments is not None and parts.dispatcher is None and parts.dedup is None


@pytest.mark.parametrize("name", ["streams.agents.sweeper", "streams.agents.restore"])
def test_an_agent_without_the_state_it_works_on_is_refused(name):
    with pytest.raises(ValueError, match=r"streams\.agents\.payments"):
        wire(build(SETTINGS), [name])


def test_faust_keeps_its_data_directory_in_the_stack_data_dir(tmp_path):
    """Faust's default is "<app id>-data" in the working directory: test runs left dozens of
    them in the checkout."""
    from streams.app import create_app

    app = create_app(Settings(kafka_bootstrap="127.0.0.1:9", data_dir=tmp_path / "stack"), app_id="tp-{x}")
    assert app.conf.datadir == tmp_path / "stack" / "faust" / "tp-{x}"
