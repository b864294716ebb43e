"""Reading request bodies: size limit, content type, exact JSON numbers, per-field errors.

Bodies are read by hand (not by FastAPI's parser) for three reasons: the size limit must
hold before the whole body is buffered; JSON numbers must stay exact (``99.99`` must not
pass through a binary float on its way to minor units), so we parse with
``parse_float=Decimal``; and webhooks need the exact bytes for signature checks.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from connectors.ingress.errors import ApiError, fields_of, invalid

M = TypeVar("M", bound=BaseModel)

JSON_TYPES = ("application/json",)


def content_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def read_body(request: Request, max_bytes: int, *,
                    content_types: tuple[str, ...] = JSON_TYPES, allow_empty: bool = False) -> bytes:
    """The raw body, refusing wrong content types (415) and oversize bodies (413)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise ApiError(413, "payload_too_large", f"the body is larger than {max_bytes} bytes")
    if allow_empty and declared == "0":
        return b""
    ctype = content_type(request)
    if ctype not in content_types and not (allow_empty and not ctype):
        raise ApiError(415, "unsupported_media_type",
                       f"send the body as {' or '.join(content_types)} (got {ctype or 'nothing'})")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise ApiError(413, "payload_too_large", f"the body is larger than {max_bytes} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    if body and ctype not in content_types:
        raise ApiError(415, "unsupported_media_type",
                       f"send the body as {' or '.join(content_types)} (got {ctype or 'nothing'})")
    return body


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def parse_json(body: bytes) -> Any:
    """JSON with every non-integer number as an exact :class:`Decimal`."""
    try:
        return json.loads(body, parse_float=Decimal, parse_constant=_no_constants)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ApiError(400, "bad_json", f"the body is not valid JSON: {exc}") from exc


def parse_model(model: type[M], body: bytes, *, empty_ok: bool = False) -> M:
    data = {} if (empty_ok and not body.strip()) else parse_json(body)
    if not isinstance(data, dict):
        raise invalid({"body": "must be a JSON object"})
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid(fields_of(exc)) from exc


def request_body_doc(model: type[BaseModel], *, required: bool = True) -> dict[str, Any]:
    """``openapi_extra`` documenting a body that the route reads by hand."""
    schema = model.model_json_schema()
    assert "$defs" not in schema, f"{model.__name__}: keep request models flat for the docs"
    return {"requestBody": {"required": required,
                            "content": {"application/json": {"schema": schema}}}}
