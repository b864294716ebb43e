"""API errors: one JSON shape for every 4xx/5xx the ingress answers.

``{"error": "<code>", "detail": "<one line>", "fields": {"<field>": "<reason>"}}``; ``fields``
only for 422s, one reason per field: ``validation_error`` (the body breaks its schema) or
``payment_refused`` (well formed, but a business rule says no).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match


class ApiError(Exception):
    """Answer ``status`` with a machine-readable ``code`` and a readable ``detail``."""

    def __init__(self, status: int, code: str, detail: str, *,
                 fields: dict[str, str] | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.fields = fields
        self.headers = headers

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.code, "detail": self.detail}
        if self.fields:
            out["fields"] = self.fields
        return out

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def invalid(fields: dict[str, str], detail: str = "the request is not valid") -> ApiError:
    return ApiError(422, "validation_error", detail, fields=fields)


def refused(fields: dict[str, str],
            detail: str = "the payment cannot be made as asked") -> ApiError:
    """422 for a well-formed request a business rule refuses (which provider takes which
    currency, provider minimums, what is left to refund): apart from ``validation_error``,
    which means the body breaks its documented schema."""
    return ApiError(422, "payment_refused", detail, fields=fields)


def not_found(what: str = "payment") -> ApiError:
    return ApiError(404, "not_found", f"no such {what}")


def unavailable(detail: str, retry_after: int = 2) -> ApiError:
    return ApiError(503, "unavailable", detail, headers={"Retry-After": str(retry_after)})


def fields_of(exc: ValidationError | RequestValidationError) -> dict[str, str]:
    """One reason per field: ``{"amount": "Field required"}``."""
    out: dict[str, str] = {}
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "header")]
        key = ".".join(loc) or "body"
        msg = str(err.get("msg", "invalid"))
        out.setdefault(key, msg.removeprefix("Value error, "))
    return out


def allowed_methods(request: Request) -> str:
    """Every method some route takes on this path. Starlette's 405 names only the methods of
    the first route that matched the path, so a path served by two routes (GET and POST as
    separate functions) answered with half of its ``Allow``."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches({**request.scope, "method": "\x00"})
        if match is not Match.NONE and getattr(route, "methods", None):
            methods.update(route.methods)
    return ", ".join(sorted(methods))


def install_handlers(app: FastAPI) -> None:
    async def api_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return exc.response()

    async def validation_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return invalid(fields_of(exc)).response()

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = allowed_methods(request)
        return JSONResponse({"error": code, "detail": str(exc.detail)},
                            status_code=exc.status_code, headers=headers)

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
