"""``?limit=&offset=``: the one definition of list pagination for the ingress API."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Query

DEFAULT_LIMIT = 50


@dataclass(frozen=True)
class Page:
    limit: int
    offset: int


def pagination(*, max_limit: int, max_offset: int) -> Callable[..., Page]:
    """A FastAPI dependency reading ``limit`` (1..max_limit) and ``offset`` (0..max_offset)."""

    def page(limit: int = Query(default=DEFAULT_LIMIT, ge=1, le=max_limit),
             offset: int = Query(default=0, ge=0, le=max_offset)) -> Page:
        return Page(limit, offset)

    return page


#: A caller's own payments (``/api/payments/list/``, ``/api/stripe/payment-intents/``).
OWN_PAGE = pagination(max_limit=200, max_offset=1_000_000)
#: Ops searches across all users (``/api/admin/payments/``).
ADMIN_PAGE = pagination(max_limit=500, max_offset=10_000_000)
