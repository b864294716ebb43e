"""An Airtel Money (Africa) subset: token, USSD push collection, status enquiry, refund.

Collections settle after ``callback_delay_s`` by the phone number's last digit (rules.py);
the callback is POSTed to ``{callback base}/api/payments/callback/airtel/?token=...`` with
``hash`` when a callback secret is configured. "No callback" (digit 3) leaves the enquiry at
TIP until the delay passes, then TE. Every attempt of a payment has a transaction id of its
own (the reference, then ``<reference>-A<n>``): an id seen before is refused as a duplicate.
An ``outcome`` fault (faults.py) settles the next collection by another digit's rule.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from connectors.providers.airtel_callbacks import callback_hash
from connectors.sandboxes.callbacks import CallbackSender
from connectors.sandboxes.faults import OUTCOME_STATE
from connectors.sandboxes.rules import MobileOutcome, mobile_outcome

_MSISDN = re.compile(r"^[17]\d{8}$")


def _status(success: bool, code: str, message: str, http: int = 200) -> dict[str, Any]:
    return {"code": str(http), "message": message, "result_code": "ESB000010" if success else "ESB000001",
            "response_code": code, "success": success}


def _refuse(code: str, message: str, http: int = 200) -> JSONResponse:
    return JSONResponse({"data": {}, "status": _status(False, code, message, http)}, status_code=http)


@dataclass
class Collection:
    id: str
    msisdn: str
    amount: int
    outcome: MobileOutcome
    settles_at: float
    airtel_money_id: str
    refunded: bool = False


class AirtelSandbox:
    def __init__(self, client_id: str, client_secret: str, callback_url: str,
                 callback_secret: str | None, sender: CallbackSender, token_ttl_s: int = 180) -> None:
        self.client_id, self.client_secret = client_id, client_secret
        self.callback_url = callback_url
        self.callback_secret = callback_secret
        self.sender = sender
        self.token_ttl_s = token_ttl_s
        self.tokens: dict[str, float] = {}
        self.collections: dict[str, Collection] = {}

    def router(self) -> APIRouter:
        router = APIRouter()
        router.add_api_route("/auth/oauth2/token", self.token, methods=["POST"])
        router.add_api_route("/merchant/v1/payments/", self.collect, methods=["POST"])
        router.add_api_route("/standard/v1/payments/refund", self.refund, methods=["POST"])
        router.add_api_route("/standard/v1/payments/{txn_id}", self.enquiry, methods=["GET"])
        return router

    async def token(self, request: Request) -> JSONResponse:
        try:
            body = json.loads(await request.body())
        except ValueError:
            body = {}
        if (body.get("client_id"), body.get("client_secret")) != (self.client_id, self.client_secret) \
                or body.get("grant_type") != "client_credentials":
            return JSONResponse({"error": "invalid_client",
                                 "error_description": "Client authentication failed"}, status_code=401)
        token = secrets.token_urlsafe(24)
        self.tokens[token] = time.monotonic() + self.token_ttl_s
        return JSONResponse({"access_token": token, "expires_in": str(self.token_ttl_s),
                             "token_type": "bearer"})

    def _authorised(self, request: Request) -> bool:
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        expires = self.tokens.get(token)
        return expires is not None and time.monotonic() < expires

    async def collect(self, request: Request) -> JSONResponse:
        if not self._authorised(request):
            return JSONResponse({"error": "invalid_token"}, status_code=401)
        try:
            body = json.loads(await request.body())
            subscriber, txn = body["subscriber"], body["transaction"]
            msisdn, txn_id, amount = str(subscriber["msisdn"]), str(txn["id"]), txn["amount"]
        except (ValueError, KeyError, TypeError):
            return _refuse("DP00800001000", "Invalid request body", 400)
        if not _MSISDN.match(msisdn):
            return _refuse("DP00800001002", "Invalid MSISDN", 400)
        if isinstance(amount, bool) or not isinstance(amount, int) or amount < 1:
            return _refuse("DP00800001003", "Invalid amount", 400)
        if txn_id in self.collections:
            return _refuse("DP00800001009", "Duplicate transaction id")
        outcome = mobile_outcome(str(getattr(request.state, OUTCOME_STATE, None) or msisdn))
        col = Collection(txn_id, msisdn, amount, outcome, time.monotonic() + self.sender.delay_s,
                         f"MP{time.strftime('%y%m%d')}.{secrets.token_hex(2)}.{secrets.token_hex(3).upper()}")
        self.collections[txn_id] = col
        if outcome.callback:
            self.send_callback(col)
        return JSONResponse({"data": {"transaction": {"id": txn_id, "status": "Success."}},
                             "status": _status(True, "DP00800001006", "Success.")})

    def send_callback(self, col: Collection) -> None:
        txn = {"id": col.id, "message": col.outcome.airtel_message,
               "status_code": col.outcome.airtel_status, "airtel_money_id": col.airtel_money_id}
        body: dict[str, Any] = {"transaction": txn}
        if self.callback_secret:
            body["hash"] = callback_hash(self.callback_secret, txn)
        self.sender.schedule(self.callback_url, json.dumps(body).encode())

    def _state(self, col: Collection) -> str:
        return col.outcome.airtel_status if time.monotonic() >= col.settles_at else "TIP"

    async def enquiry(self, txn_id: str, request: Request) -> JSONResponse:
        if not self._authorised(request):
            return JSONResponse({"error": "invalid_token"}, status_code=401)
        col = self.collections.get(txn_id)
        if col is None:
            return _refuse("DP00800001010", "Transaction not found", 404)
        state = self._state(col)
        return JSONResponse({"data": {"transaction": {
            "airtel_money_id": col.airtel_money_id if state == "TS" else None, "id": col.id,
            "message": col.outcome.airtel_message if state != "TIP" else "Transaction in progress",
            "status": state}}, "status": _status(True, "DP00800001001", "SUCCESS")})

    async def refund(self, request: Request) -> JSONResponse:
        if not self._authorised(request):
            return JSONResponse({"error": "invalid_token"}, status_code=401)
        try:
            money_id = str(json.loads(await request.body())["transaction"]["airtel_money_id"])
        except (ValueError, KeyError, TypeError):
            return _refuse("DP00800001000", "Invalid request body", 400)
        col = next((c for c in self.collections.values() if c.airtel_money_id == money_id), None)
        if col is None or self._state(col) != "TS":
            return _refuse("DP00800001010", "Transaction not found or not successful")
        if col.refunded:
            return _refuse("DP00800001011", "Transaction already refunded")
        col.refunded = True
        return JSONResponse({"data": {"transaction": {"airtel_money_id": money_id, "status": "SUCCESS"}},
                             "status": _status(True, "DP00800001001", "SUCCESS")})


def airtel_callback_url(base: str, token: str) -> str:
    return f"{base}/api/payments/callback/airtel/?{urlencode({'token': token})}"
