"""How the ``payments`` table stores a payment: deflated JSON with a preset dictionary.

A payment's JSON is mostly field names and a few common values; raw deflate primed with a
dictionary of them (:data:`_DICT_V1`) takes it to about 1/6, which keeps a million payments
well inside the worker's memory budget. The first byte says how a value is stored: values
in plain JSON (written before packing existed) start with ``{`` and are read as they are.
"""

from __future__ import annotations

import zlib

from trailpay.domain.payment import Payment

#: First byte of a packed table value: raw deflate with :data:`_DICT_V1` (JSON starts with "{").
PACKED_V1 = b"\x01"
#: The preset dictionary of PACKED_V1: field names and the common values of a payment's JSON.
#: Stored values depend on it byte for byte: never edit it; add a new one and a new marker.
_DICT_V1 = (
    b'"refunds":[{"refund_id":"","amount":{"amount":,"currency":"USD"},"reason":"","status":"requested",'
    b'"provider_reference":null,"requested_at":"2026-","updated_at":"2026-"}],"status":"succeeded",'
    b'"status":"failed","status":"cancelled","status":"expired","status":"processing","status":"refunded",'
    b'"status":"partially_refunded","provider":"stripe","method":"card","provider":"airtel","currency":"UGX",'
    b'"currency":"EUR","provider_status":"requires_payment_method","client_secret":"pi_","customer_id":"cus_",'
    b'"payment_method_id":"pm_","settled_by":"webhook","settled_by":"dispatcher","provider_code":"0",'
    b'"provider_message":"The service request is processed successfully.",'
    b'{"snapshot":{"reference":"TP","version":1,"status":"created","user_id":"","amount":{"amount":0,'
    b'"currency":"KES"},"provider":"mpesa","method":"mobile_money","booking_id":null,"country":null,'
    b'"phone_number":"2547","email":null,"description":"","provider_reference":null,"provider_status":null,'
    b'"provider_code":null,"provider_message":null,"customer_id":null,"payment_method_id":null,'
    b'"client_secret":null,"refunded_amount":0,"refunds":[],"created_at":"2026-","updated_at":"2026-",'
    b'"deadline_at":"2026-","settled_by":null},"applied":["create-TP","cmd:TP","mpesa:ws_CO_'
)


def pack(payment: Payment) -> bytes:
    """The table value of ``payment``."""
    deflate = zlib.compressobj(1, zlib.DEFLATED, -15, zdict=_DICT_V1)
    return PACKED_V1 + deflate.compress(payment.to_json()) + deflate.flush()


def unpack_json(raw: bytes) -> bytes:
    """The JSON of a table value, packed or plain."""
    if raw[:1] == PACKED_V1:
        inflate = zlib.decompressobj(-15, zdict=_DICT_V1)
        return inflate.decompress(raw[1:]) + inflate.flush()
    return raw


def unpack(raw: bytes) -> Payment:
    return Payment.from_json(unpack_json(raw))
