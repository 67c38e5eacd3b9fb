"""Schemathesis over /openapi.json: generated requests, valid and invalid, to every operation of
the running API (real PostgreSQL and RabbitMQ), as an admin; none may get a 5xx.

The API serves in this test's event loop (its store and bus belong to it), over a local socket;
schemathesis drives it from a worker thread, as its transport is synchronous.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import hypothesis
import hypothesis.errors
import pytest
import schemathesis
from api_client import Api, over_tcp
from hypothesis import HealthCheck, Phase
from schemathesis import GenerationMode
from schemathesis.schemas import APIOperation

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]

EXAMPLES = 8  # per operation and mode: the whole run stays well under a minute
ENDLESS = {"/api/v1/events/stream"}  # SSE never ends: test_api_apps_hosts covers it


def no_server_errors(
    operation: APIOperation,
    mode: GenerationMode,
    url: str,
    headers: dict[str, str],
    seen: Counter[tuple[str, int]],
) -> None:
    @hypothesis.settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    def check(case: schemathesis.Case) -> None:
        response = case.call(base_url=url, headers=headers, timeout=30)
        seen[(f"{case.method} {operation.path}", response.status_code)] += 1
        assert response.status_code < 500, (
            f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text}\n"
            f"{case.as_curl_command()}"
        )

    try:
        check()
    except hypothesis.errors.Unsatisfiable:
        assert mode == GenerationMode.NEGATIVE  # an operation without inputs has no bad ones


def fuzz(url: str, headers: dict[str, str]) -> Counter[tuple[str, int]]:
    """How often each operation answered each status."""
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    seen: Counter[tuple[str, int]] = Counter()
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path in ENDLESS:
            continue
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            no_server_errors(operation, mode, url, headers, seen)
    return seen


async def test_no_generated_request_gets_a_server_error(api: Api) -> None:
    admin = await api.user("admin", "admin")
    # An API token, so a generated password change (which ends sessions) does not log us out.
    token = await api.http.post("/api/v1/tokens", json={"name": "fuzz"}, headers=admin)
    headers = {"Authorization": f"Bearer {token.json()['token']}"}
    async with over_tcp(api.app) as url:
        seen = await asyncio.to_thread(fuzz, url, headers)
    print(sorted(seen.items()))
    operations = {operation for operation, _ in seen}
    assert len(operations) >= 15
    # Generated valid input gets through auth and validation (else this run proves little).
    assert seen[("POST /api/v1/users", 201)] and seen[("POST /api/v1/apps", 201)]
    assert seen[("POST /api/v1/apps", 422)]
