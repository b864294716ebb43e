"""What every request must pass before routing: a path and query values without control
characters.

A NUL in a path reference or an admin query value used to reach PostgreSQL, which refuses
it, and came back as 503 "database not reachable"; now it is 400 with the one error body,
for every route (webhooks included, whose query carries the reference). Plain ASGI, like the
metrics middleware, so the webhook fast path pays one regex search per request.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

from starlette.types import ASGIApp, Receive, Scope, Send

from connectors.ingress.errors import ApiError
from connectors.ingress.fields import CONTROL_CLASS

_CONTROL = re.compile(f"[{CONTROL_CLASS}]")
_RAW_CONTROL = re.compile(rb"[\x00-\x1f\x7f]")
#: Longest query string taken (the longest legitimate one, an admin search, is ~600 bytes).
MAX_QUERY_BYTES = 4096


def request_problem(path: str, query: bytes) -> str | None:
    """Why the path or query cannot be taken, or None."""
    if _CONTROL.search(path):
        return "the path contains a control character"
    if len(query) > MAX_QUERY_BYTES:
        return f"the query string is longer than {MAX_QUERY_BYTES} bytes"
    if not query:
        return None
    raw = unquote_to_bytes(query.replace(b"+", b" "))
    if _RAW_CONTROL.search(raw):
        return "a query value contains a control character"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "the query string is not UTF-8"
    if _CONTROL.search(text):
        return "a query value contains a control character"
    return None


class EdgeGuard:
    """Answers 400 ``bad_request`` for a path or query value no route could take."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            problem = request_problem(scope.get("path", ""), scope.get("query_string", b""))
            if problem is not None:
                await ApiError(400, "bad_request", problem).response()(scope, receive, send)
                return
        await self.app(scope, receive, send)
