"""The Daraja sandbox's B2C payments (v1 and v3) and Reversal API, with asynchronous results.

Both are accepted at once (``ResponseCode: "0"``, a ``ConversationID``) and settled
``callback_delay_s`` later by a ``Result`` POSTed to the ResultURL, or by a notice to the
QueueTimeOutURL when the request "timed out in the queue". Which, for B2C, by the LAST
DIGIT of the receiving phone (PartyB), or of an ``outcome`` fault's digit
(:data:`PAYOUT_BY_LAST_DIGIT`; phones ending 6-8 pay STK pushes, so their payments can be
refunded and fail): 6 -> ResultCode 1 (the org's balance is insufficient), 7 -> 2001 (the
initiator information is invalid), 8 -> a queue timeout, anything else pays. Like Daraja,
a wrong InitiatorName or SecurityCredential is accepted and fails in the result (2001), an
amount below the B2C minimum (10 KES) fails with ResultCode 2, and more than the org's B2C
balance with 1.

Strict where Daraja is (docs/sandboxes.md): the bearer token, CommandID, Amount (whole,
positive), PartyA (the B2C shortcode), PartyB (2547/2541 + 8 digits), Remarks (2-100
characters), ResultURL and QueueTimeOutURL (http(s), none of "mpesa", "m-pesa",
"safaricom"), Occasion (at most 100) and, on v3, OriginatorConversationID are checked
synchronously: HTTP 400 ``400.002.02`` "Bad Request - Invalid <field>". A reversal must
name an STK receipt of this sandbox (TransactionID), its whole amount, the paybill as
ReceiverParty and ``RecieverIdentifierType`` "11" (Daraja's spelling); an unknown receipt
fails in the result (R000002), a second reversal too (R000001).
"""

from __future__ import annotations

import json
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from connectors.providers.mpesa_client import FILTERED_URL_WORDS
from connectors.sandboxes.callbacks import CallbackSender
from connectors.sandboxes.faults import OUTCOME_STATE

_PHONE = re.compile(r"^254[17]\d{8}$")
B2C_COMMANDS = frozenset({"BusinessPayment", "SalaryPayment", "PromotionPayment"})
B2C_MINIMUM_KES = 10
TEXT_MAX = 100
SUCCESS_DESC = "The service request is processed successfully."
ACCEPTED = "Accept the service request successfully."
#: ResultCode and ResultDesc by the last digit; None: a queue timeout instead of a result.
PAYOUT_BY_LAST_DIGIT: dict[str, tuple[int, str] | None] = {
    "6": (1, "The balance is insufficient for the transaction."),
    "7": (2001, "The initiator information is invalid."),
    "8": None,
}
QUEUE_TIMEOUT_DESC = "The request timed out while waiting in the queue and was not processed."


def invalid(field_name: str) -> JSONResponse:
    return JSONResponse({"requestId": secrets.token_hex(8), "errorCode": "400.002.02",
                         "errorMessage": f"Bad Request - Invalid {field_name}"}, status_code=400)


def _whole(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).isdigit():
        return None
    return int(value) if int(value) >= 1 else None


def _url_ok(value: object) -> bool:
    return (isinstance(value, str) and value.startswith(("http://", "https://"))
            and not any(word in value.lower() for word in FILTERED_URL_WORDS))


def _text_ok(value: object, low: int, high: int = TEXT_MAX) -> bool:
    return isinstance(value, str) and low <= len(value) <= high


@dataclass
class Receipt:
    """A paid STK push, for the Reversal API."""

    amount: int
    phone: str
    reversed: bool = False


@dataclass
class PayoutBook:
    """What the payout endpoints need of the M-Pesa sandbox: credentials and receipts."""

    initiator: str
    credential: str
    b2c_shortcode: str
    paybill: str
    sender: CallbackSender
    balance_kes: int = 1_000_000
    receipts: dict[str, Receipt] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)

    def router(self, authorised: Any) -> APIRouter:
        """Routes for the ``/mpesa`` mount; ``authorised(request)`` checks the bearer token."""
        self._authorised = authorised
        router = APIRouter()
        router.add_api_route("/mpesa/b2c/v1/paymentrequest", self.b2c_v1, methods=["POST"])
        router.add_api_route("/mpesa/b2c/v3/paymentrequest", self.b2c_v3, methods=["POST"])
        router.add_api_route("/mpesa/reversal/v1/request", self.reversal, methods=["POST"])
        return router

    async def _body(self, request: Request) -> dict[str, Any] | JSONResponse:
        if not self._authorised(request):
            return JSONResponse({"requestId": secrets.token_hex(8), "errorCode": "404.001.03",
                                 "errorMessage": "Invalid Access Token"}, status_code=404)
        try:
            body = json.loads(await request.body())
        except ValueError:
            return invalid("JSON")
        return body if isinstance(body, dict) else invalid("JSON")

    async def b2c_v1(self, request: Request) -> JSONResponse:
        return await self._b2c(request, v3=False)

    async def b2c_v3(self, request: Request) -> JSONResponse:
        return await self._b2c(request, v3=True)

    async def _b2c(self, request: Request, *, v3: bool) -> JSONResponse:
        body = await self._body(request)
        if isinstance(body, JSONResponse):
            return body
        refused = b2c_field_error(body, self.b2c_shortcode, v3=v3)
        if refused is not None:
            return refused
        self.requests.append(body)
        amount, phone = int(body["Amount"]), str(body["PartyB"])
        digit = str(getattr(request.state, OUTCOME_STATE, None) or phone[-1])
        conversation, originator = _ids(body)
        code, desc = 0, SUCCESS_DESC
        if (body.get("InitiatorName"), body.get("SecurityCredential")) != (self.initiator, self.credential):
            code, desc = 2001, "The initiator information is invalid."
        elif amount < B2C_MINIMUM_KES:
            code, desc = 2, "Declined due to limit rule: less than the minimum transaction amount."
        elif amount > self.balance_kes:
            code, desc = 1, "The balance is insufficient for the transaction."
        elif digit in PAYOUT_BY_LAST_DIGIT:
            rule = PAYOUT_BY_LAST_DIGIT[digit]
            if rule is None:
                self._timeout(body, conversation, originator)
                return _accepted(conversation, originator)
            code, desc = rule
        params: list[dict[str, Any]] = []
        receipt = "S" + secrets.token_hex(5).upper()[:9]
        if code == 0:
            self.balance_kes -= amount
            params = [
                {"Key": "TransactionAmount", "Value": amount},
                {"Key": "TransactionReceipt", "Value": receipt},
                {"Key": "B2CRecipientIsRegisteredCustomer", "Value": "Y"},
                {"Key": "B2CChargesPaidAccountAvailableFunds", "Value": 0.0},
                {"Key": "ReceiverPartyPublicName", "Value": f"{phone} - Sandbox Customer"},
                {"Key": "TransactionCompletedDateTime", "Value": time.strftime("%d.%m.%Y %H:%M:%S")},
                {"Key": "B2CUtilityAccountAvailableFunds", "Value": float(self.balance_kes)},
                {"Key": "B2CWorkingAccountAvailableFunds", "Value": 0.0},
            ]
        self._result(body, code, desc, conversation, originator, receipt, params)
        return _accepted(conversation, originator)

    async def reversal(self, request: Request) -> JSONResponse:
        body = await self._body(request)
        if isinstance(body, JSONResponse):
            return body
        refused = reversal_field_error(body, self.paybill)
        if refused is not None:
            return refused
        self.requests.append(body)
        conversation, originator = _ids(body)
        receipt = self.receipts.get(str(body["TransactionID"]))
        code: int | str = 0
        desc = SUCCESS_DESC
        if (body.get("Initiator"), body.get("SecurityCredential")) != (self.initiator, self.credential):
            code, desc = 2001, "The initiator information is invalid."
        elif receipt is None or receipt.amount != int(body["Amount"]):
            code, desc = "R000002", "The OriginalTransactionID is invalid."
        elif receipt.reversed:
            code, desc = "R000001", "The transaction has already been reversed."
        params: list[dict[str, Any]] = []
        if code == 0 and receipt is not None:
            receipt.reversed = True
            params = [{"Key": "Amount", "Value": float(receipt.amount)},
                      {"Key": "OriginalTransactionID", "Value": body["TransactionID"]},
                      {"Key": "TransCompletedTime", "Value": int(time.strftime("%Y%m%d%H%M%S"))},
                      {"Key": "Charge", "Value": 0.0},
                      {"Key": "CreditPartyPublicName", "Value": f"{receipt.phone} - Sandbox Customer"}]
        self._result(body, code, desc, conversation, originator,
                     "S" + secrets.token_hex(5).upper()[:9], params)
        return _accepted(conversation, originator)

    def _result(self, body: dict[str, Any], code: int | str, desc: str, conversation: str,
                originator: str, transaction_id: str, params: list[dict[str, Any]]) -> None:
        result: dict[str, Any] = {
            "ResultType": 0, "ResultCode": code, "ResultDesc": desc,
            "OriginatorConversationID": originator, "ConversationID": conversation,
            "TransactionID": transaction_id,
            "ReferenceData": {"ReferenceItem": {"Key": "QueueTimeoutURL",
                                                "Value": str(body["QueueTimeOutURL"]).split("?")[0]}},
        }
        if params:
            result["ResultParameters"] = {"ResultParameter": params}
        self.sender.schedule(str(body["ResultURL"]), json.dumps({"Result": result}).encode())

    def _timeout(self, body: dict[str, Any], conversation: str, originator: str) -> None:
        notice = {"Result": {"ResultType": 1, "ResultDesc": QUEUE_TIMEOUT_DESC,
                             "OriginatorConversationID": originator, "ConversationID": conversation}}
        self.sender.schedule(str(body["QueueTimeOutURL"]), json.dumps(notice).encode())


def _ids(body: dict[str, Any]) -> tuple[str, str]:
    conversation = f"AG_{time.strftime('%Y%m%d')}_{secrets.token_hex(10)}"
    originator = body.get("OriginatorConversationID")
    if not isinstance(originator, str) or not originator:
        originator = f"{secrets.randbelow(90000) + 10000}-{secrets.randbelow(10**7)}-1"
    return conversation, originator


def _accepted(conversation: str, originator: str) -> JSONResponse:
    return JSONResponse({"ConversationID": conversation, "OriginatorConversationID": originator,
                         "ResponseCode": "0", "ResponseDescription": ACCEPTED})


def _common_errors(body: dict[str, Any]) -> JSONResponse | None:
    if not _text_ok(body.get("SecurityCredential"), 1, 4096):
        return invalid("SecurityCredential")
    if _whole(body.get("Amount")) is None:
        return invalid("Amount")
    if not _text_ok(body.get("Remarks"), 2):
        return invalid("Remarks")
    for name in ("QueueTimeOutURL", "ResultURL"):
        if not _url_ok(body.get(name)):
            return invalid(name)
    occasion = body.get("Occasion", "")
    if occasion is not None and not _text_ok(occasion, 0):
        return invalid("Occasion")
    return None


def b2c_field_error(body: dict[str, Any], shortcode: str, *, v3: bool) -> JSONResponse | None:
    """Daraja's synchronous refusal of a B2C request, or None."""
    if v3 and not _text_ok(body.get("OriginatorConversationID"), 1):
        return invalid("OriginatorConversationID")
    if not _text_ok(body.get("InitiatorName"), 1):
        return invalid("InitiatorName")
    if body.get("CommandID") not in B2C_COMMANDS:
        return invalid("CommandID")
    if str(body.get("PartyA")) != shortcode:
        return invalid("PartyA")
    if not _PHONE.match(str(body.get("PartyB", ""))):
        return invalid("PartyB")
    return _common_errors(body)


def reversal_field_error(body: dict[str, Any], paybill: str) -> JSONResponse | None:
    """Daraja's synchronous refusal of a reversal request, or None."""
    if not _text_ok(body.get("Initiator"), 1):
        return invalid("Initiator")
    if body.get("CommandID") != "TransactionReversal":
        return invalid("CommandID")
    if not _text_ok(body.get("TransactionID"), 1, 20):
        return invalid("TransactionID")
    if str(body.get("ReceiverParty")) != paybill:
        return invalid("ReceiverParty")
    if str(body.get("RecieverIdentifierType")) != "11":
        return invalid("RecieverIdentifierType")
    return _common_errors(body)
