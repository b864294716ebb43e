"""The OpenAPI document as the API behaves: every status a route can answer, with the one
error body the handlers send (:mod:`connectors.ingress.errors`), and the parameter rules the
edge enforces (:mod:`connectors.ingress.edge`).

FastAPI documents only the success status and its own 422 shape (``{"detail": [...]}``),
which the ingress never sends. :func:`describe` rewrites the generated document once, by
rules that follow from how routes are built: an authenticated route can answer 401, 429
(failed authentications from the address) and 503 (the user database); an admin route 403;
a route with a path parameter 404; a route reading a body 400 (not JSON, too deep, a
repeated key), 409 (Idempotency-Key reused or in flight, or the payment's state), 413, 415
and 422; any route 400 for a control character in the path or a query value.
"""

from __future__ import annotations

from typing import Any

from connectors.ingress.fields import CONTROL_CLASS

ERROR_REF = {"$ref": "#/components/schemas/Error"}
ERROR_SCHEMA: dict[str, Any] = {
    "title": "Error",
    "type": "object",
    "description": "Every 4xx and 5xx the API answers. `fields`: one reason per invalid field "
                   "(validation errors only).",
    "required": ["error", "detail"],
    "additionalProperties": False,
    "properties": {
        "error": {"type": "string", "description": "Machine-readable code, e.g. validation_error"},
        "detail": {"type": "string", "description": "One readable line"},
        "fields": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}
READINESS_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["ready", "kafka", "database"],
    "properties": {"ready": {"type": "boolean"}, "kafka": {"type": "boolean"},
                   "database": {"type": "boolean"}},
}
#: What a path parameter or query string value may hold: no control character, no slash.
PARAM_PATTERN = f"^[^/{CONTROL_CLASS}]+$"
QUERY_PATTERN = f"^[^{CONTROL_CLASS}]*$"
MAX_PATH_PARAM = 200

DESCRIPTIONS = {
    "400": "Malformed request: not JSON, nested too deep, a repeated key, a control character "
           "in the path or a query value, or (webhooks) a failed signature",
    "401": "No token, or an unknown or revoked one",
    "403": "The token's role may not use this endpoint (webhooks: a wrong callback token)",
    "404": "No such resource (another user's payment is absent too)",
    "409": "Idempotency-Key reused with another body or still in flight, or the payment's "
           "status does not allow this",
    "413": "The body is larger than the limit",
    "415": "The body is not application/json",
    "422": "A field is invalid, or the payment cannot be made as asked (routing, provider "
           "limits); `fields` names each",
    "428": "This request needs an Idempotency-Key header",
    "429": "Too many failed authentications from this address",
    "503": "Kafka or the database not reachable in time; retry",
}
WEBHOOK_PATHS = ("/api/stripe/webhooks/", "/api/payments/callback/")
ADMIN_PATHS = ("/api/admin/", "/api/bookings/")


def _error(status: str) -> dict[str, Any]:
    out: dict[str, Any] = {"description": DESCRIPTIONS[status],
                           "content": {"application/json": {"schema": ERROR_REF}}}
    if status == "429":
        out["headers"] = {"Retry-After": {"required": True, "schema": {"type": "integer"},
                                          "description": "Seconds to wait"}}
    elif status == "401":
        out["headers"] = {"WWW-Authenticate": {"required": True, "schema": {"type": "string"}}}
    return out


def statuses_of(path: str, method: str, operation: dict[str, Any]) -> set[str]:
    """The error statuses ``operation`` can answer, by the rules of the module docstring."""
    out = {"400"}
    params = operation.get("parameters", [])
    if path.startswith(WEBHOOK_PATHS):
        out |= {"403", "413", "415", "503"}
        if any(p.get("in") == "path" for p in params):
            out |= {"404", "422"}
        return out
    if operation.get("security"):
        out |= {"401", "429", "503"}
    if path.startswith(ADMIN_PATHS):
        out.add("403")
    if any(p.get("in") == "path" for p in params):
        out |= {"404", "409"} if method == "post" else {"404"}
    if params:
        out.add("422")
    if "requestBody" in operation:
        out |= {"409", "413", "415", "422"}
    if path.endswith("/client-secret/"):
        out.add("409")
    return out


def _tighten(parameter: dict[str, Any]) -> None:
    schema = parameter.get("schema", {})
    if parameter.get("in") == "path":
        schema.setdefault("maxLength", MAX_PATH_PARAM)
        schema["pattern"] = PARAM_PATTERN
        return
    if parameter.get("in") != "query":
        return
    # An empty query value is taken (as no filter), so the pattern allows it.
    for option in [schema, *schema.get("anyOf", ())]:
        if option.get("type") == "string" and "format" not in option:
            option.setdefault("pattern", QUERY_PATTERN)


#: What an ``Idempotency-Key`` may be (:mod:`connectors.ingress.idempotency`): 1 to 255
#: printable ASCII characters, not starting or ending with a space.
IDEMPOTENCY_KEY: dict[str, Any] = {
    "name": "Idempotency-Key", "in": "header", "required": True,
    "description": "Required here: a repeated request must not repeat the effect",
    "schema": {"type": "string", "pattern": "^[!-~]([ -~]{0,253}[!-~])?$", "maxLength": 255},
}


def describe(spec: dict[str, Any]) -> dict[str, Any]:
    """``spec`` (FastAPI's generated document) rewritten in place to match the API."""
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas["Error"] = ERROR_SCHEMA
    for path, operations in spec.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            for parameter in operation.get("parameters", []):
                _tighten(parameter)
            if path == "/readyz":
                responses["503"] = {"description": "Not ready",
                                    "content": {"application/json": {"schema": READINESS_SCHEMA}}}
            if "428" in responses:  # the route refuses to run without the key: say so
                parameters = operation.setdefault("parameters", [])
                if not any(p.get("name") == IDEMPOTENCY_KEY["name"] for p in parameters):
                    parameters.append(dict(IDEMPOTENCY_KEY))
            for status in sorted(statuses_of(path, method, operation) | ({"428"} & set(responses))):
                responses.setdefault(status, {}).update(_error(status))
    return spec
