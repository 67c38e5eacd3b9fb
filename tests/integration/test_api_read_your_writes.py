"""Read-your-writes of ticket submits against the real API (Postgres, RabbitMQ, its workers):
many clients at once, on two API processes whose read models race to commit, each see their new
ticket in the very next GET, and a submit's reply is what that GET shows."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from api_client import Api
from stand_in_agents import Ferry, stand_ins

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]

CLIENTS = 12
EACH = 4


@pytest.fixture
async def ferry(api: Api) -> AsyncIterator[Ferry]:
    async with stand_ins(api) as stack:
        yield stack


async def test_a_submits_reply_is_what_the_next_get_shows(ferry: Ferry) -> None:
    await ferry.add_app("shop")
    response = await ferry.post("dev", "/tickets", {"app": "shop", "reason": "r", "ref": "v1"})
    assert response.status_code == 201, response.text
    reply = response.json()
    assert reply == await ferry.ticket(reply["id"], "dev")
    listed = (await ferry.get("dev", "/tickets")).json()["tickets"]
    assert [ticket["id"] for ticket in listed] == [reply["id"]]
    assert {key: value for key, value in reply.items() if key in listed[0]} == listed[0]


async def test_every_client_sees_its_submit_at_once_on_either_api_process(ferry: Ferry) -> None:
    await ferry.add_app("shop")
    async with ferry.replica() as other:
        clients = [ferry.http if i % 2 else other for i in range(CLIENTS)]
        seen = await asyncio.gather(
            *(_submit_then_list(ferry, i, c) for i, c in enumerate(clients))
        )
    assert all(seen), seen
    total = (await ferry.get("dev", "/tickets")).json()["total"]
    assert total == CLIENTS * EACH


async def _submit_then_list(ferry: Ferry, number: int, client: httpx.AsyncClient) -> bool:
    """Submit EACH tickets one after another, each time listing the caller's own right after."""
    user = ("dev", "dev2")[number % 2]
    for _ in range(EACH):
        body = {"app": "shop", "reason": f"client {number}", "ref": "main"}
        submitted = await ferry.post(user, "/tickets", body, via=client)
        assert submitted.status_code == 201, submitted.text
        listed = await client.get(
            "/api/v1/tickets", params={"author": user, "limit": 500}, headers=ferry.auth(user)
        )
        if submitted.json()["id"] not in [ticket["id"] for ticket in listed.json()["tickets"]]:
            return False
    return True
