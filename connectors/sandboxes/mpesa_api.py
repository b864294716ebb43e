"""A Daraja subset: OAuth, STK Push and STK Push Query, and the STK callback; B2C payments
and reversals with their asynchronous results (mpesa_payouts.py).

The callback goes to the ``CallBackURL`` given in the STK Push after ``callback_delay_s``,
with the ResultCode chosen by the phone number's last digit (see rules.py); for 1037 no
callback is sent at all and the query answers 1037 once the delay has passed. Until then
the query answers like Daraja does for an open prompt: HTTP 500, ``500.001.1001``.

As strict as Daraja where Daraja is strict (each rule and its source: docs/sandboxes.md):
an invalid token is HTTP 404 ``404.001.03``; a CallBackURL containing "mpesa", "m-pesa" or
"safaricom" is refused, and so are an AccountReference over 12 characters and a
TransactionDesc over 13; with ``lock_subscriber``, a push to a phone whose prompt is still
open is HTTP 500 ``500.001.1001`` "Unable to lock subscriber".
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from connectors.providers.mpesa_client import FILTERED_URL_WORDS, stk_password
from connectors.sandboxes.callbacks import CallbackSender
from connectors.sandboxes.faults import OUTCOME_STATE
from connectors.sandboxes.mpesa_payouts import PayoutBook, Receipt
from connectors.sandboxes.rules import MobileOutcome, mobile_outcome

_PHONE = re.compile(r"^254[17]\d{8}$")
ACCOUNT_REFERENCE_MAX = 12
TRANSACTION_DESC_MAX = 13
LOCKED_MESSAGE = ("Unable to lock subscriber, a transaction is already in process for the "
                  "current subscriber")


def _invalid(field: str) -> JSONResponse:
    return _error(400, "400.002.02", f"Bad Request - Invalid {field}")


def push_field_error(body: dict[str, Any]) -> JSONResponse | None:
    """Daraja's refusal of an STK Push's CallBackURL, AccountReference or TransactionDesc."""
    url = str(body.get("CallBackURL", ""))
    if not url.startswith(("http://", "https://")) or any(w in url.lower() for w in FILTERED_URL_WORDS):
        return _invalid("CallBackURL")
    reference = body.get("AccountReference")
    if not isinstance(reference, str) or not 1 <= len(reference) <= ACCOUNT_REFERENCE_MAX:
        return _invalid("AccountReference")
    desc = body.get("TransactionDesc")
    if not isinstance(desc, str) or not 1 <= len(desc) <= TRANSACTION_DESC_MAX:
        return _invalid("TransactionDesc")
    return None


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"requestId": secrets.token_hex(8), "errorCode": code,
                         "errorMessage": message}, status_code=status)


@dataclass
class StkRequest:
    checkout_id: str
    merchant_id: str
    phone: str
    amount: int
    outcome: MobileOutcome
    settles_at: float


class MpesaSandbox:
    def __init__(self, consumer_key: str, consumer_secret: str, shortcode: str, passkey: str,
                 sender: CallbackSender, token_ttl_s: int = 3599, lock_subscriber: bool = True,
                 payouts: PayoutBook | None = None) -> None:
        self.key, self.secret = consumer_key, consumer_secret
        self.shortcode, self.passkey = shortcode, passkey
        self.sender = sender
        self.token_ttl_s = token_ttl_s
        self.tokens: dict[str, float] = {}
        self.requests: dict[str, StkRequest] = {}
        self.tokens_issued = 0
        self.lock_subscriber = lock_subscriber
        #: phone -> when its open prompt settles (the subscriber is locked until then)
        self.open_prompts: dict[str, float] = {}
        #: B2C payments and reversals (refunds): mpesa_payouts.py
        self.payouts = payouts or PayoutBook("sandbox-initiator", "sandbox-security-credential",
                                             shortcode, shortcode, sender)

    def router(self) -> APIRouter:
        router = APIRouter()
        router.add_api_route("/oauth/v1/generate", self.generate, methods=["GET"])
        router.add_api_route("/mpesa/stkpush/v1/processrequest", self.stk_push, methods=["POST"])
        router.add_api_route("/mpesa/stkpushquery/v1/query", self.stk_query, methods=["POST"])
        router.include_router(self.payouts.router(self._authorised))
        return router

    async def generate(self, request: Request) -> JSONResponse:
        if request.query_params.get("grant_type") != "client_credentials":
            return _error(400, "400.008.02", "Invalid grant type passed")
        auth = request.headers.get("authorization", "")
        try:
            user, _, password = base64.b64decode(auth.removeprefix("Basic ")).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            user = password = ""
        if not auth.startswith("Basic ") or (user, password) != (self.key, self.secret):
            return _error(400, "400.008.01", "Invalid Authentication passed")
        token = secrets.token_urlsafe(24)
        self.tokens[token] = time.monotonic() + self.token_ttl_s
        self.tokens_issued += 1
        return JSONResponse({"access_token": token, "expires_in": str(self.token_ttl_s)})

    def _authorised(self, request: Request) -> bool:
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        expires = self.tokens.get(token)
        return expires is not None and time.monotonic() < expires

    async def _body(self, request: Request) -> dict[str, Any] | JSONResponse:
        if not self._authorised(request):
            return _error(404, "404.001.03", "Invalid Access Token")  # yes, 404 (Daraja's)
        try:
            body = json.loads(await request.body())
        except ValueError:
            return _error(400, "400.002.02", "Bad Request - Invalid JSON")
        if not isinstance(body, dict):
            return _error(400, "400.002.02", "Bad Request - Invalid JSON")
        if str(body.get("BusinessShortCode")) != self.shortcode:
            return _error(400, "400.002.02", "Bad Request - Invalid BusinessShortCode")
        ts = str(body.get("Timestamp", ""))
        if not re.fullmatch(r"\d{14}", ts):
            return _error(400, "400.002.02", "Bad Request - Invalid Timestamp")
        if body.get("Password") != stk_password(self.shortcode, self.passkey, ts):
            return _error(400, "400.002.02", "Bad Request - Invalid Password")
        return body

    async def stk_push(self, request: Request) -> JSONResponse:
        body = await self._body(request)
        if isinstance(body, JSONResponse):
            return body
        phone = str(body.get("PhoneNumber", ""))
        if not _PHONE.match(phone) or str(body.get("PartyA")) != phone:
            return _error(400, "400.002.02", "Bad Request - Invalid PhoneNumber")
        amount = body.get("Amount")
        if isinstance(amount, bool) or not isinstance(amount, int | str) or not str(amount).isdigit() \
                or int(amount) < 1:
            return _error(400, "400.002.02", "Bad Request - Invalid Amount")
        refused = push_field_error(body)
        if refused is not None:
            return refused
        now = time.monotonic()
        if self.lock_subscriber and self.open_prompts.get(phone, 0.0) > now:
            return _error(500, "500.001.1001", LOCKED_MESSAGE)
        url = str(body["CallBackURL"])
        outcome = mobile_outcome(str(getattr(request.state, OUTCOME_STATE, None) or phone))
        req = StkRequest(f"ws_CO_{time.strftime('%d%m%Y%H%M%S')}{secrets.token_hex(6)}",
                         f"{secrets.randbelow(90000) + 10000}-{secrets.randbelow(10**8)}-1",
                         phone, int(amount), outcome, time.monotonic() + self.sender.delay_s)
        self.requests[req.checkout_id] = req
        self.open_prompts[phone] = req.settles_at
        if outcome.callback:
            self.sender.schedule(url, json.dumps(self.callback_body(req)).encode())
        return JSONResponse({
            "MerchantRequestID": req.merchant_id, "CheckoutRequestID": req.checkout_id,
            "ResponseCode": "0", "ResponseDescription": "Success. Request accepted for processing",
            "CustomerMessage": "Success. Request accepted for processing"})

    def callback_body(self, req: StkRequest) -> dict[str, Any]:
        cb: dict[str, Any] = {"MerchantRequestID": req.merchant_id,
                              "CheckoutRequestID": req.checkout_id,
                              "ResultCode": req.outcome.daraja_code,
                              "ResultDesc": req.outcome.daraja_desc}
        if req.outcome.daraja_code == 0:
            receipt = "S" + secrets.token_hex(5).upper()[:9]
            self.payouts.receipts[receipt] = Receipt(req.amount, req.phone)  # for a reversal
            cb["CallbackMetadata"] = {"Item": [
                {"Name": "Amount", "Value": float(req.amount)},
                {"Name": "MpesaReceiptNumber", "Value": receipt},
                {"Name": "TransactionDate", "Value": int(time.strftime("%Y%m%d%H%M%S"))},
                {"Name": "PhoneNumber", "Value": int(req.phone)},
            ]}
        return {"Body": {"stkCallback": cb}}

    async def stk_query(self, request: Request) -> JSONResponse:
        body = await self._body(request)
        if isinstance(body, JSONResponse):
            return body
        req = self.requests.get(str(body.get("CheckoutRequestID", "")))
        if req is None:
            return _error(400, "400.002.02", "Bad Request - Invalid CheckoutRequestID")
        if time.monotonic() < req.settles_at:
            return _error(500, "500.001.1001", "The transaction is being processed")
        return JSONResponse({
            "ResponseCode": "0",
            "ResponseDescription": "The service request has been accepted successsfully",
            "MerchantRequestID": req.merchant_id, "CheckoutRequestID": req.checkout_id,
            "ResultCode": str(req.outcome.daraja_code), "ResultDesc": req.outcome.daraja_desc})
