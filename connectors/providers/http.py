"""HTTP plumbing shared by the Daraja and Airtel clients: timeouts, retries, error mapping.

Retries follow TrailPay's one policy (:mod:`trailpay.retry`, ``POLICIES.provider_http``),
apart from the clients: only retriable failures are retried (connection errors, timeouts,
HTTP 5xx and 429), with exponential backoff and jitter, honouring ``Retry-After``. A 4xx
is the provider saying no: it is raised at once as :class:`ProviderRejected` with the
provider's own code and text. Exhausted retries raise
:class:`ProviderUnavailable` (a :class:`RetriableError`), so the caller can try later.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx

from trailpay.domain.errors import ProviderRejected, RetriableError
from trailpay.logs import scrub
from trailpay.retry import POLICIES, RetryPolicy, retry

log = logging.getLogger(__name__)

T = TypeVar("T")

RETRIABLE_STATUS = frozenset({429, 500, 502, 503, 504})


def pooled_transport(max_connections: int = 100) -> httpx.AsyncBaseTransport:
    """httpx's API over aiohttp's connection pool (the ``httpx-aiohttp`` transport).

    httpx's own pool (httpcore) looks at every pooled connection on each request, so its
    cost grows with concurrency: measured here against one local server, 1,400 requests/s
    with one request in flight but 430/s with 32, where the aiohttp pool under the same
    httpx client does 3,000/s. The dispatcher keeps up to ``provider_concurrency`` calls
    in flight, so the provider clients use this transport; errors still arrive as httpx
    exceptions, which :func:`with_retries` classifies.
    """
    # Imported here, not at the top: aiohttp costs 110-390 ms at import (measured on this
    # machine) and most importers of this module (the ingress, the CLI) never build a pool.
    from httpx_aiohttp import AiohttpTransport

    return AiohttpTransport(limits=httpx.Limits(max_connections=max_connections))


class ProviderUnavailable(RetriableError):
    """The provider did not answer usefully (outage, timeout, 5xx, 429) after our retries."""

    def __init__(self, provider: str, code: str, message: str, *,
                 retry_after: float | None = None) -> None:
        super().__init__(f"{provider} unavailable: {code} {message}", retry_after=retry_after)
        self.provider = provider
        self.code = code
        self.provider_message = message


def retry_after_of(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


async def with_retries(
    provider: str,
    call: Callable[[], Awaitable[T]],
    policy: RetryPolicy = POLICIES.provider_http,
    *,
    what: str,
) -> T:
    """Run ``call`` under ``policy`` (:func:`trailpay.retry.retry`): transport errors and
    timeouts become :class:`ProviderUnavailable` (their cause chained) and are retried like
    a 5xx; a permanent error is raised at once; the last retriable error once attempts run out."""

    async def classified() -> T:
        try:
            return await call()
        except httpx.TimeoutException as exc:
            raise ProviderUnavailable(provider, "timeout", f"{type(exc).__name__} on {what}") from exc
        except httpx.TransportError as exc:
            raise ProviderUnavailable(provider, "connection",
                                      f"{type(exc).__name__}: {scrub(str(exc))}") from exc

    return await retry(classified, policy, what=f"{provider} {what}")


def check_response(provider: str, response: httpx.Response,
                   describe: Callable[[Any], tuple[str, str]]) -> Any:
    """The JSON body of a 2xx answer; otherwise the mapped error.

    ``describe(body)`` pulls the provider's (code, message) out of an error body.
    """
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    if response.is_success:
        return body
    code, message = describe(body) if body is not None else (str(response.status_code), "")
    message = scrub(message or response.reason_phrase or "")
    if response.status_code in RETRIABLE_STATUS:
        raise ProviderUnavailable(provider, code or str(response.status_code), message,
                                  retry_after=retry_after_of(response))
    raise ProviderRejected(provider, code or str(response.status_code), message)
