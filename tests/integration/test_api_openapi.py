"""Schemathesis over /openapi.json: generated requests, valid and invalid, to every operation of
the running API (real PostgreSQL and RabbitMQ), as an admin; none may get a 5xx.

The API serves in this test's event loop (its store and bus belong to it), over a local socket;
schemathesis drives it from a worker thread, as its transport is synchronous.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from typing import Any

import hypothesis
import hypothesis.errors
import pytest
import schemathesis
from api_client import Api, over_tcp
from ferry_api.domain import Ticket
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


def _body_schemas(responses: dict[str, Any]) -> list[dict[str, Any]]:
    """The schemas of an operation's 2xx bodies (a 204 has none)."""
    return [
        media.get("schema", {})
        for status, response in responses.items()
        if status.startswith("2") and status != "204"
        for media in response.get("content", {}).values()
    ]


def _is_open_object(schema: dict[str, Any]) -> bool:
    """`{}`, or an object of anything: it tells a client nothing of the body."""
    return not schema or (
        schema.get("type") == "object"
        and "properties" not in schema
        and schema.get("additionalProperties", True) in (True, {})
    )


async def test_every_operation_documents_its_response_body(api: Api) -> None:
    spec = (await api.http.get("/openapi.json")).json()
    vague = []
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            assert any(status.startswith("2") for status in responses), f"{method} {path}"
            schemas = _body_schemas(responses)
            if "204" not in responses and (not schemas or any(map(_is_open_object, schemas))):
                vague.append(f"{method.upper()} {path}")
    assert not vague, f"no response schema (or an empty one): {vague}"
    # A field added to the ticket read model must reach the body, not be dropped by its model.
    ticket = spec["components"]["schemas"]["TicketDetail"]["properties"]
    fields = {field.name for field in dataclasses.fields(Ticket)}
    assert fields | {"seq", "created_at", "allowed_actions", "stream_version"} <= set(ticket)
