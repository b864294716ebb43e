"""Issue 16, validation at the edge: each measured defect as a unit regression test, the
failed-authentication limiter, and the OpenAPI document's error statuses."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest
from pydantic import TypeAdapter, ValidationError

from connectors.ingress.app import create_app
from connectors.ingress.bodies import json_depth, parse_json
from connectors.ingress.context import IngressContext
from connectors.ingress.edge import request_problem
from connectors.ingress.errors import ApiError
from connectors.ingress.fields import DateTimeQuery
from connectors.ingress.idempotency import request_hash
from connectors.ingress.models import (
    BookingEventBody,
    CancelBody,
    ConfirmBody,
    CreatePaymentBody,
    RefundBody,
    StripeIntentBody,
)
from connectors.ingress.ratelimit import FailureLimiter
from trailpay.settings import load_settings

OK = {"amount": "100", "currency": "KES", "phone_number": "+254700000000"}
BOOKING = {"kind": "created", "booking_id": "B-1", "user_id": "usr_1", "amount": "100",
           "currency": "KES", "country": "KE"}


def refusal(model, data) -> str:
    with pytest.raises(ValidationError) as exc:
        model.model_validate(data)
    return str(exc.value)


# --------------------------------------------------------------------------- JSON


def test_deep_json_is_400_not_recursion_error():
    deep = b"[" * 5000 + b"]" * 5000  # measured: 500 (RecursionError in the request hash)
    with pytest.raises(ApiError) as exc:
        parse_json(deep)
    assert (exc.value.status, exc.value.code) == (400, "json_too_deep")
    with pytest.raises(ApiError):
        parse_json(b'{"a":' * 33 + b"1" + b"}" * 33)
    assert json_depth(parse_json(b'{"a":' * 32 + b"1" + b"}" * 32)) == 32
    assert json_depth(parse_json(b"1")) == 0
    assert json_depth(parse_json(b"[[], {}]")) == 2


def test_request_hash_survives_any_depth():
    assert len(request_hash("POST", "/x", b"[" * 5000 + b"]" * 5000)) == 64


def test_duplicate_keys_are_refused_not_last_wins():
    with pytest.raises(ApiError) as exc:
        parse_json(b'{"amount": "1", "currency": "KES", "amount": "1000000"}')
    assert (exc.value.status, exc.value.code) == (400, "duplicate_key")
    assert "'amount'" in exc.value.detail
    with pytest.raises(ApiError):
        parse_json(b'{"a": {"b": 1, "b": 1}}')


def test_numbers_stay_exact():
    assert parse_json(b'{"amount": 99.99}') == {"amount": Decimal("99.99")}


# --------------------------------------------------------------------------- fields


@pytest.mark.parametrize("field", ["description", "booking_id", "email", "phone_number",
                                   "country", "payment_method_id"])
@pytest.mark.parametrize("char", ["\u0000", "\r", "\n", "\u007f", "\u0085", "\ud800"])
def test_control_characters_refused_in_every_text_field(field, char):
    value = {"description": "a", "booking_id": "B1", "email": "a@b.example.com",
             "phone_number": "0712345678", "country": "K", "payment_method_id": "pm_1"}[field]
    assert field in refusal(CreatePaymentBody, {**OK, field: value + char})


def test_nul_description_is_refused():  # measured: 201 and paid, then PostgreSQL refused the row
    assert "control characters" in refusal(CreatePaymentBody, {**OK, "description": "trip\u0000"})


@pytest.mark.parametrize("booking_id", ["x" * 101, "a b", "a/b", "ä", "", -1, 2**53, True])
def test_booking_id_bounded_like_its_column(booking_id):  # measured: 101 chars accepted
    assert "booking_id" in refusal(CreatePaymentBody, {**OK, "booking_id": booking_id})


@pytest.mark.parametrize(("booking_id", "kept"), [("x" * 100, "x" * 100), (123, "123"),
                                                  ("TRIP-2026.01:a_b", "TRIP-2026.01:a_b")])
def test_booking_ids_that_fit(booking_id, kept):
    assert CreatePaymentBody.model_validate({**OK, "booking_id": booking_id}).booking_id == kept


@pytest.mark.parametrize("email", ["a@b.com\r\nBcc: victim@example.com", "a@b.com\n",
                                   "not-an-address", "a@", "@b.com", "a b@c.com",
                                   "x" * 310 + "@example.com"])
def test_email_must_be_a_real_address(email):  # measured: CR/LF accepted
    assert "email" in refusal(CreatePaymentBody, {**OK, "email": email})
    assert "email" in refusal(StripeIntentBody, {"amount": "1", "currency": "USD", "email": email})
    assert "email" in refusal(BookingEventBody, {**BOOKING, "email": email})


def test_email_normalised():
    assert CreatePaymentBody.model_validate({**OK, "email": "Ann@Example.COM"}).email == "Ann@example.com"


@pytest.mark.parametrize("amount", [True, False, "\uff11\uff10\uff10", "\u0661\u0660\u0660", "1e3", " 100", "100 ", "-5",
                                    "1.0001", 1.5, None, [], {}, "NaN", Decimal("NaN"),
                                    Decimal("-1"), 10**16])
def test_amount_strict(amount):  # measured: true paid KES 1.00; full-width digits read as digits
    assert "amount" in refusal(CreatePaymentBody, {**OK, "amount": amount})
    if amount is not None:  # a refund without an amount refunds what is left
        assert "amount" in refusal(RefundBody, {"amount": amount})
    assert "amount" in refusal(BookingEventBody, {**BOOKING, "amount": amount})


@pytest.mark.parametrize("amount", ["100", "100.50", 100, Decimal("99.99")])
def test_amounts_that_fit(amount):
    assert CreatePaymentBody.model_validate({**OK, "amount": amount}).amount == amount


@pytest.mark.parametrize("currency", ["000", "KE", "KESS", "XYZ", "Kes", 404, True])
def test_currency_is_a_known_iso_code(currency):
    assert "currency" in refusal(CreatePaymentBody, {**OK, "currency": currency})


def test_currency_upper_cased():
    assert CreatePaymentBody.model_validate({**OK, "currency": "kes"}).currency == "KES"


def test_currency_schema_is_the_same_enum():
    schema = CreatePaymentBody.model_json_schema()["properties"]["currency"]
    assert "000" not in schema["enum"] and "KES" in schema["enum"] and "kes" in schema["enum"]
    for code in schema["enum"]:
        CreatePaymentBody.model_validate({**OK, "currency": code})


@pytest.mark.parametrize(("field", "value"), [
    ("confirm", "true"), ("confirm", 1), ("provider", True), ("provider", 7), ("provider", "paypal"),
    ("provider", 1.0), ("payment_method", "cash"),
])
def test_strict_types(field, value):
    assert field in refusal(CreatePaymentBody, {**OK, field: value})


def test_revision_is_an_integer_not_a_boolean_or_string():
    assert "revision" in refusal(BookingEventBody, {**BOOKING, "revision": True})
    assert "revision" in refusal(BookingEventBody, {**BOOKING, "revision": "2"})


@pytest.mark.parametrize(("model", "data", "field"), [
    (CancelBody, {"reason": "x\u0000"}, "reason"),
    (CancelBody, {"reason": "x" * 201}, "reason"),
    (RefundBody, {"reason": "\n"}, "reason"),
    (ConfirmBody, {"payment_method": "pm_1\u0000"}, "payment_method"),
    (ConfirmBody, {"return_url": "javascript:alert(1)"}, "return_url"),
    (ConfirmBody, {"return_url": "https://a.example/\r\n"}, "return_url"),
    # no URL a client could parse back (schemathesis crashed on it echoed: "Invalid IPv6 URL")
    (ConfirmBody, {"return_url": "http://[::1"}, "return_url"),
    (ConfirmBody, {"return_url": "https://user:secret@a.example/"}, "return_url"),
    (StripeIntentBody, {"amount": "1", "currency": "USD", "payment_method": "pm 1"}, "payment_method"),
    (BookingEventBody, {**BOOKING, "user_id": "u" * 101}, "user_id"),
    (BookingEventBody, {**BOOKING, "event_id": "e\u0000"}, "event_id"),
    (BookingEventBody, {**BOOKING, "country": "K\u0000"}, "country"),
    (BookingEventBody, {**BOOKING, "description": "d" * 501}, "description"),
])
def test_every_body_is_bounded(model, data, field):
    assert field in refusal(model, data)


# --------------------------------------------------------------------------- path and query


@pytest.mark.parametrize(("path", "query"), [
    ("/api/payments/TP\x00X/", b""), ("/api/payments/a\x85/", b""),
    ("/api/admin/payments/", b"reference=%00"), ("/api/admin/payments/", b"user_id=a%0d%0ab"),
    ("/api/admin/payments/", b"booking_id=%C2%85"), ("/api/admin/payments/", b"x=%FF"),
    ("/api/admin/payments/", b"a=" + b"b" * 5000),
])
def test_control_characters_in_path_or_query(path, query):
    assert request_problem(path, query) is not None


def test_plain_path_and_query_pass():
    assert request_problem("/api/admin/payments/", b"reference=TP-1&created_after=2026-01-01T00%3A00%3A00%2B03%3A00") is None


# --------------------------------------------------------------------------- failed authentication


def test_failure_limiter_buckets_per_address():
    now = [1000.0]
    limiter = FailureLimiter(burst=3, per_second=0.5, clock=lambda: now[0])
    for _ in range(3):
        assert limiter.retry_after("10.0.0.1") is None
        limiter.failed("10.0.0.1")
    assert limiter.retry_after("10.0.0.1") == 2
    assert limiter.retry_after("10.0.0.2") is None  # another address is not affected
    now[0] += 1.0
    assert limiter.retry_after("10.0.0.1") == 1
    now[0] += 1.0
    assert limiter.retry_after("10.0.0.1") is None


# --------------------------------------------------------------------------- the app in-process

SETTINGS = load_settings(kafka_bootstrap="127.0.0.1:9", database_url=None, auth_failure_burst=2,
                         auth_failure_per_s=0.01)


@pytest.fixture
async def client():
    ctx = IngressContext.build(SETTINGS, with_database=False)
    app = create_app(SETTINGS, ctx=ctx)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        yield c


async def test_nul_in_path_and_query_is_400_for_every_route(client):
    for path in ("/api/payments/TP%00/", "/api/admin/payments/?reference=%00", "/healthz?x=%00",
                 "/api/payments/callback/mpesa/?reference=%00"):
        resp = await client.get(path)
        assert resp.status_code == 400, path
        assert resp.json()["error"] == "bad_request"


async def test_deep_webhook_body_is_refused_before_kafka(client):
    # measured: 2,000 nested arrays at the Airtel callback were recorded and stopped both sinks
    resp = await client.post("/api/payments/callback/airtel/", content=b"[" * 2000 + b"]" * 2000,
                             headers={"Content-Type": "application/json"})
    assert resp.status_code == 400 and resp.json()["error"] == "json_too_deep"
    dup = await client.post("/api/stripe/webhooks/stripe/", content=b'{"id": 1, "id": 2}',
                            headers={"Content-Type": "application/json"})
    assert dup.status_code == 400 and dup.json()["error"] == "duplicate_key"


async def test_openapi_documents_every_error_status(client):
    spec = (await client.get("/openapi.json")).json()
    error = {"$ref": "#/components/schemas/Error"}
    assert spec["components"]["schemas"]["Error"]["required"] == ["error", "detail"]
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    create = spec["paths"]["/api/payments/create/"]["post"]["responses"]
    assert {"201", "400", "401", "409", "413", "415", "422", "429", "503"} <= set(create)
    for status in ("400", "401", "409", "413", "415", "422", "429"):
        assert create[status]["content"]["application/json"]["schema"] == error
    assert create["429"]["headers"]["Retry-After"]["required"] is True
    admin = spec["paths"]["/api/admin/payments/{reference}/"]["get"]["responses"]
    assert {"400", "401", "403", "404", "422", "429"} <= set(admin)
    hook = spec["paths"]["/api/payments/callback/{provider_code}/"]["post"]["responses"]
    assert {"400", "403", "404", "413", "415", "503"} <= set(hook)
    body = spec["paths"]["/api/payments/create/"]["post"]["requestBody"]["content"]["application/json"]
    assert "000" not in body["schema"]["properties"]["currency"]["enum"]


async def test_real_422_body_matches_the_documented_one(client):
    spec = (await client.get("/openapi.json")).json()
    allowed = set(spec["components"]["schemas"]["Error"]["properties"])
    resp = await client.get("/api/payments/list/?limit=0")
    assert resp.status_code == 401  # auth first; the shape is the same for every error
    assert set(resp.json()) <= allowed and {"error", "detail"} <= set(resp.json())
    assert json.loads(resp.text)["error"] == "not_authenticated"


@pytest.mark.parametrize("text", ["0.5", "1700000000", "2026-12-01", "2026-12-01T09:30:00", "2026-12-01T09:30Z"])
def test_a_date_time_query_value_is_rfc_3339_with_its_offset(text):
    # pydantic alone reads "0.5" as Unix seconds and "2026-12-01" as midnight (schemathesis
    # ST201: the admin searches took values their documented format: date-time refuses)
    with pytest.raises(ValidationError):
        TypeAdapter(DateTimeQuery).validate_python(text)


def test_a_date_time_query_value_keeps_its_offset():
    read = TypeAdapter(DateTimeQuery).validate_python("2026-12-01T09:30:00+03:00")
    assert read == datetime(2026, 12, 1, 6, 30, tzinfo=UTC)
