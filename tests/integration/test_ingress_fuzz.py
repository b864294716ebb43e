"""schemathesis against /openapi.json of the running ingress: no input makes it answer 5xx.

Bounded: a few generated cases per operation, authenticated as a normal user (so the
handlers run, not just the 401 path), webhooks included (unauthenticated by design).
"""

from __future__ import annotations

import asyncio

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.integration.ingressutil import make_user

pytestmark = pytest.mark.integration

EXAMPLES_PER_OPERATION = 12


async def test_no_server_errors(stack):
    user = await make_user(stack.settings)
    schema = schemathesis.openapi.from_url(f"{stack.api_url}/openapi.json")
    schema = schema.exclude(path_regex=r"^/(metrics|docs|redoc)")
    failures: list[str] = []
    statuses: list[int] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20

    def run(operation) -> None:
        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case) -> None:
            response = case.call(base_url=stack.api_url, headers=user.headers, timeout=20)
            statuses.append(response.status_code)
            if response.status_code >= 500:
                failures.append(f"{operation.label}: {response.status_code} {response.text[:200]}")

        check()

    for operation in operations:
        await asyncio.to_thread(run, operation)
    assert not failures, "\n".join(failures[:20])
    assert len(statuses) >= 5 * len(operations)
    assert {200, 422} <= set(statuses), sorted(set(statuses))
