"""Audit records (#17 item 4): what an act of a person or an ops command maps to, and the
reason staff must give."""

from __future__ import annotations

import getpass
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from starlette.requests import Request

from connectors.ingress.audit import entry_for
from connectors.ingress.auth import User
from connectors.ingress.errors import ApiError
from connectors.ingress.models import CancelBody, RefundBody
from connectors.ingress.routes.payments import require_reason
from controlplane.cli.audit_cmd import ops_entry
from sinks.postgres.audit import AuditEntry, audit_json

SUPPORT = User(id="usr_support", email="help@trails.example", role="support")
ALICE = User(id="usr_alice", email="alice@example.com", role="user")


def request(headers: dict[str, str], client: tuple[str, int] | None = ("10.1.2.3", 5555)) -> Request:
    return Request({"type": "http", "method": "POST", "path": "/api/payments/TP1/refund/",
                    "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
                    "client": client, "query_string": b""})


def test_an_api_act_maps_actor_role_source_and_correlation_headers() -> None:
    entry = entry_for(request({"Idempotency-Key": "k-1", "X-Request-Id": "ticket-9"}), SUPPORT,
                      "payment.refund", "TP1", reason="double booked", request_id="rf_1",
                      details={"amount_minor": 500})
    row = entry.values("pending")
    assert {k: v for k, v in row.items() if k != "id"} == {
        "actor": "usr_support", "actor_email": "help@trails.example", "role": "support",
        "action": "payment.refund", "target": "TP1", "reason": "double booked",
        "request_id": "rf_1", "source": "10.1.2.3", "outcome": "pending",
        "details": {"amount_minor": 500, "idempotency_key": "k-1", "x_request_id": "ticket-9"}}


def test_a_header_with_control_characters_or_no_client_is_left_out() -> None:
    entry = entry_for(request({"X-Request-Id": "a\tb"}, client=None), ALICE, "payment.cancel", "TP2")
    row = entry.values("ok")
    assert (row["source"], row["details"], row["role"], row["reason"]) == ("unknown", {}, "user", None)


def test_one_request_one_row_id_and_a_command_run_a_fresh_one() -> None:
    a = AuditEntry(actor="u", role="user", action="payment.cancel", target="TP1", request_id="c1")
    again = AuditEntry(actor="u", role="user", action="payment.cancel", target="TP1", request_id="c1")
    other = AuditEntry(actor="u", role="user", action="payment.refund", target="TP1", request_id="c1")
    assert a.id == again.id and a.id != other.id and len(a.id) == 32
    run1 = AuditEntry(actor="root", role="ops", action="replay", target="payments.state.v1")
    run2 = AuditEntry(actor="root", role="ops", action="replay", target="payments.state.v1")
    assert run1.id != run2.id and run1.id == run1.id


def test_columns_are_bounded() -> None:
    row = AuditEntry(actor="a" * 300, role="support", action="x" * 100, target="t" * 300,
                     source="s" * 300, request_id="r" * 300).values("ok")
    assert (len(row["actor"]), len(row["action"]), len(row["target"]), len(row["source"]),
            len(row["request_id"])) == (200, 64, 200, 200, 200)


def test_an_ops_command_is_the_os_user_at_this_host() -> None:
    entry = ops_entry("dlq.redrive", "d41d8cd98f00", reason="fixed the currency",
                      details={"fixed_value": True})
    row = entry.values("pending")
    assert (row["actor"], row["role"], row["action"], row["target"], row["reason"]) == (
        getpass.getuser(), "ops", "dlq.redrive", "d41d8cd98f00", "fixed the currency")
    assert str(row["source"]).startswith("cli@") and row["details"] == {"fixed_value": True}


def test_a_stored_row_maps_to_json() -> None:
    at = datetime(2026, 12, 1, 14, 0, tzinfo=UTC)
    row = SimpleNamespace(_mapping={
        "id": "ab", "at": at, "actor": "usr_support", "actor_email": "help@trails.example",
        "role": "support", "action": "payment.refund", "target": "TP1", "reason": "why",
        "request_id": "rf_1", "source": "10.1.2.3", "outcome": "ok", "details": None})
    assert audit_json(row) == {  # type: ignore[arg-type]
        "id": "ab", "at": "2026-12-01T14:00:00+00:00", "actor": "usr_support",
        "actor_email": "help@trails.example", "role": "support", "action": "payment.refund",
        "target": "TP1", "reason": "why", "request_id": "rf_1", "source": "10.1.2.3",
        "outcome": "ok", "details": {}}


@pytest.mark.parametrize("body", [RefundBody(), CancelBody(), RefundBody.model_validate({"amount": "5"})])
def test_staff_must_give_a_reason(body: RefundBody | CancelBody) -> None:
    with pytest.raises(ApiError) as caught:
        require_reason(SUPPORT, body)
    assert (caught.value.status, caught.value.code, list(caught.value.fields or {})) == (
        422, "payment_refused", ["reason"])
    require_reason(ALICE, body)  # an owner may leave it out (requested_by_customer)
    require_reason(User(id="a", email="a@x.example", role="admin"),
                   type(body).model_validate({"reason": "chargeback lost"}))
