"""Stripe's wire format: form-encoded nested params, ids, list and error envelopes."""

from __future__ import annotations

import re
import secrets
import string
from typing import Any
from urllib.parse import parse_qsl

from fastapi.responses import JSONResponse

_KEY = re.compile(r"([^\[\]]+)|\[([^\[\]]*)\]")
_ALNUM = string.ascii_letters + string.digits


def new_id(prefix: str, length: int = 24) -> str:
    return f"{prefix}_{''.join(secrets.choice(_ALNUM) for _ in range(length))}"


def _listify(node: Any) -> Any:
    if isinstance(node, dict):
        node = {k: _listify(v) for k, v in node.items()}
        if node and all(k.isdigit() for k in node):
            return [node[k] for k in sorted(node, key=int)]
    return node


def parse_form(raw: bytes | str) -> dict[str, Any]:
    """``metadata[a]=1&items[0][price]=p`` -> ``{"metadata": {"a": "1"}, "items": [{"price": "p"}]}``."""
    text = raw.decode() if isinstance(raw, bytes) else raw
    root: dict[str, Any] = {}
    for key, value in parse_qsl(text, keep_blank_values=True):
        parts = [m.group(1) if m.group(1) is not None else m.group(2) for m in _KEY.finditer(key)]
        node = root
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if part == "":  # "expand[]": append
                part = str(len(node))
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
    return _listify(root)


def as_bool(value: Any) -> bool:
    return str(value).lower() in ("true", "1", "yes")


def as_int(value: Any, param: str) -> int:
    try:
        return int(str(value))
    except ValueError:
        raise StripeHTTPError(400, "invalid_request_error", f"Invalid integer: {value}",
                              code="parameter_invalid_integer", param=param) from None


class StripeHTTPError(Exception):
    def __init__(self, status: int, type_: str, message: str, *, code: str | None = None,
                 param: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = {"type": type_, "message": message}
        if code:
            self.body["code"] = code
        if param:
            self.body["param"] = param
        self.body.update(extra)

    def response(self) -> JSONResponse:
        return JSONResponse({"error": self.body}, status_code=self.status,
                            headers={"Request-Id": new_id("req", 14)})


def missing(resource: str, ident: str) -> StripeHTTPError:
    return StripeHTTPError(404, "invalid_request_error", f"No such {resource}: '{ident}'",
                           code="resource_missing", param="id")


def listing(url: str, data: list[dict[str, Any]], limit: int = 10) -> dict[str, Any]:
    return {"object": "list", "url": url, "has_more": len(data) > limit, "data": data[:limit]}


def found(objects: dict[str, dict[str, Any]], resource: str, ident: str) -> dict[str, Any]:
    """The object ``ident`` of one kind, or Stripe's ``resource_missing`` 404 for it."""
    if ident not in objects:
        raise missing(resource, ident)
    return objects[ident]
