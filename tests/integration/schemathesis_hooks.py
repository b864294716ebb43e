"""Loaded by the schemathesis run of test_openapi_schemathesis.py (``SCHEMATHESIS_HOOKS``).

schemathesis' ``positive_data_acceptance`` wants every schema-valid request answered 2xx (or
401/403/404/409/429). Two refusals of schema-valid requests are the API working as meant,
and no schema can express them: a business rule (``422 payment_refused``: M-Pesa takes KES
only, a provider's minimum, more decimals than the currency has) and a webhook whose
signature the generator could not make (``400 verification_failed``). The run therefore
lets 400 and 422 through that check, and this check takes over for them: a schema-valid
request may be refused with exactly those two codes, never with ``validation_error`` or
``bad_request`` (which would mean the OpenAPI document and the validators disagree).
"""

from __future__ import annotations

import schemathesis

#: (status, error code) a schema-valid request may be answered with.
RULE_REFUSALS = {(422, "payment_refused"), (400, "verification_failed")}


@schemathesis.check
def valid_requests_refused_only_by_rules(ctx, response, case):
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or response.status_code not in (400, 422):
        return None
    try:
        body = response.json()
    except ValueError:
        body = {}
    code = body.get("error") if isinstance(body, dict) else None
    if (response.status_code, code) not in RULE_REFUSALS:
        raise AssertionError(f"a schema-valid request was refused: {response.status_code} "
                             f"{response.text[:300]}")
    return None
