"""Reading request bodies: size limit, content type, exact JSON numbers, per-field errors.

Bodies are read by hand (not by FastAPI's parser) for four reasons: the size limit must
hold before the whole body is buffered; JSON numbers must stay exact (``99.99`` must not
pass through a binary float on its way to minor units), so we parse with
``parse_float=Decimal``; webhooks need the exact bytes for signature checks; and every JSON
body, webhooks included, is refused (400) before anything else sees it when it nests deeper
than ``max_json_depth`` (5,000 nested arrays once raised ``RecursionError`` in the request
hash and, recorded on Kafka, in both sinks) or repeats a key (which of two ``amount``s
counts would be up to the parser: the last one, silently).
"""

from __future__ import annotations

import json
import sys
from decimal import Decimal
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from connectors.ingress.errors import ApiError, fields_of, invalid

M = TypeVar("M", bound=BaseModel)

JSON_TYPES = ("application/json",)
#: Default of ``Settings.max_json_depth``: deeper than any body we or a provider send.
MAX_JSON_DEPTH = 32


class _DuplicateKey(ValueError):
    pass


def content_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def read_body(request: Request, max_bytes: int, *,
                    content_types: tuple[str, ...] = JSON_TYPES, allow_empty: bool = False,
                    max_depth: int = MAX_JSON_DEPTH) -> bytes:
    """The raw body, refusing wrong content types (415), oversize bodies (413) and JSON that
    is malformed, too deep or has a repeated key (400)."""
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
    if body.strip() and ctype in JSON_TYPES:
        parse_json(body, max_depth)
    return body


def _exact_number(text: str) -> Decimal | int:
    """A JSON number with a fraction or exponent: exact, and an ``int`` when it is a whole
    number (``96.0``, ``1e2``), as JSON Schema counts it an integer too. Huge exponents stay
    Decimal (``int()`` of ``1e999999999`` would build a billion-digit number)."""
    value = Decimal(text)
    if value.is_finite() and value.adjusted() < 30 and value == value.to_integral_value():
        return int(value)
    return value


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(f"the key {key!r} appears more than once in one object")
            seen.add(key)
    return out


def json_depth(value: Any) -> int:
    """How deep arrays and objects nest (a scalar is 0, ``[]`` 1); iterative, so any depth
    the parser produced can be measured."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children
                     if isinstance(child, (dict, list)))
    return deepest


def parse_json(body: bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """JSON with every non-integer number as an exact :class:`Decimal`; 400 when it is not
    JSON, repeats a key or nests deeper than ``max_depth``."""
    try:
        data = json.loads(body, parse_float=_exact_number, parse_constant=_no_constants,
                          object_pairs_hook=_unique_keys)
    except _DuplicateKey as exc:
        raise ApiError(400, "duplicate_key", str(exc)) from exc
    except RecursionError as exc:  # the C scanner's own limit, far deeper than ours
        raise ApiError(400, "json_too_deep", f"the body nests deeper than {max_depth} levels") from exc
    except (UnicodeDecodeError, ValueError) as exc:
        raise ApiError(400, "bad_json", f"the body is not valid JSON: {exc}") from exc
    if json_depth(data) > max_depth:
        raise ApiError(400, "json_too_deep", f"the body nests deeper than {max_depth} levels")
    return data


def parse_model(model: type[M], body: bytes, *, empty_ok: bool = False) -> M:
    """``model`` from a body :func:`read_body` has checked (its depth limit included)."""
    data = {} if (empty_ok and not body.strip()) else parse_json(body, max_depth=sys.maxsize)
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
