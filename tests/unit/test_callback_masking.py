"""Stored callbacks: phone numbers masked, identifiers kept (trailpay.logs.mask_phones_in_body).

Found in the scale-out runs (issue 14): the ingress masked a "phone number" inside Daraja's
CheckoutRequestID (``ws_CO_011220261802154c0664904857`` ends in ``0664904857``), the
normalized success named ``ws_CO_011220261802154c0664****57``, the state machine refused it
as not this payment's (reference_mismatch) and a paid customer stayed pending.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from connectors.providers.mpesa_callbacks import MpesaCallbackHandler
from trailpay.domain.events import Provider, RawWebhook
from trailpay.logs import mask_phones_in_body

CHECKOUT = "ws_CO_011220261802154c0664904857"  # the one the scale-out run lost
T0 = datetime(2026, 12, 1, 18, 2, 16, tzinfo=UTC)


def _stk_success(checkout: str) -> bytes:
    return json.dumps({"Body": {"stkCallback": {
        "MerchantRequestID": "29115-34620561-0712345678", "CheckoutRequestID": checkout,
        "ResultCode": 0, "ResultDesc": "The service request is processed successfully.",
        "CallbackMetadata": {"Item": [
            {"Name": "Amount", "Value": 150},
            {"Name": "MpesaReceiptNumber", "Value": "NLJ0712345678"},
            {"Name": "TransactionDate", "Value": 20261201180216},
            {"Name": "PhoneNumber", "Value": 254712345678},
        ]}}}}).encode()


def test_identifiers_stay_and_the_phone_number_is_masked() -> None:
    stored = json.loads(mask_phones_in_body(_stk_success(CHECKOUT)))
    callback = stored["Body"]["stkCallback"]
    assert callback["CheckoutRequestID"] == "ws_CO_011220261802154c0664904857"
    assert callback["MerchantRequestID"] == "29115-34620561-0712345678"
    assert callback["CallbackMetadata"]["Item"] == [
        {"Name": "Amount", "Value": 150},
        {"Name": "MpesaReceiptNumber", "Value": "NLJ0712345678"},
        {"Name": "TransactionDate", "Value": 20261201180216},
        {"Name": "PhoneNumber", "Value": "2547******78"},
    ]


def test_a_phone_number_in_free_text_is_still_masked() -> None:
    body = json.dumps({"Result": {"ConversationID": "AG_20261201_0712345678", "ResultDesc":
                                  "sent to 0712345678", "ResultParameters": {"ResultParameter": [
                                      {"Key": "TransactionReceipt", "Value": "R0712345678"},
                                      {"Key": "ReceiverPartyPublicName", "Value": "0712345678 - Jane"}]}}})
    stored = json.loads(mask_phones_in_body(body.encode()))["Result"]
    assert stored["ConversationID"] == "AG_20261201_0712345678"
    assert stored["ResultDesc"] == "sent to 0712****78"
    assert stored["ResultParameters"]["ResultParameter"] == [
        {"Key": "TransactionReceipt", "Value": "R0712345678"},
        {"Key": "ReceiverPartyPublicName", "Value": "0712****78 - Jane"},
    ]


def test_airtel_ids_stay_and_its_msisdn_is_masked() -> None:
    body = json.dumps({"transaction": {"id": "TPB-0712345678", "message": "Paid from 0733000123",
                                       "status_code": "TS", "airtel_money_id": "MP0712345678",
                                       "msisdn": "0733000123"}})
    assert json.loads(mask_phones_in_body(body.encode())) == {"transaction": {
        "id": "TPB-0712345678", "message": "Paid from 0733****23", "status_code": "TS",
        "airtel_money_id": "MP0712345678", "msisdn": "0733****23"}}


def test_the_normalized_success_names_the_checkout_the_push_returned() -> None:
    raw = RawWebhook(event_id="raw-1", occurred_at=T0, provider=Provider.MPESA,
                     body=mask_phones_in_body(_stk_success(CHECKOUT)), received_at=T0,
                     query={"reference": "TPB-c98ff93eead2d87fd8c6"},
                     reference="TPB-c98ff93eead2d87fd8c6", verified=True)
    (event,) = MpesaCallbackHandler("token").normalize(raw)
    assert event.provider_reference == "ws_CO_011220261802154c0664904857"
    assert event.event_id == "mpesa:ws_CO_011220261802154c0664904857:0"
