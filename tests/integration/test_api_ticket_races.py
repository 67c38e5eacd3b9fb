"""Racing ticket actions over HTTP against the real API (Postgres, RabbitMQ, its workers), also
from two API processes deciding before either appends: one wins, the other gets 409, nothing is
half written; racing publishes get distinct consecutive release numbers, a lost one takes none.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest
from api_client import Api
from ferry_events.schema_postgres import APPEND_LOCK
from stand_in_agents import Ferry, stand_ins

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]


@pytest.fixture
async def ferry(api: Api) -> AsyncIterator[Ferry]:
    async with stand_ins(api) as stack:
        yield stack


async def ticket_events(ferry: Ferry, ticket_id: str) -> list[str]:
    return await ferry.stream(f"ticket-{ticket_id}")


async def race(ferry: Ferry, *moves: tuple[str, str, str]) -> list[int]:
    """Send the actions at once; their statuses, in the order given."""
    responses = await asyncio.gather(
        *(ferry.post(user, f"/tickets/{ticket}/{action}") for user, ticket, action in moves)
    )
    for response in responses:
        assert response.status_code in (200, 409), response.text
    return [response.status_code for response in responses]


@contextlib.asynccontextmanager
async def appends_held(ferry: Ferry) -> AsyncIterator[Callable[[int], Awaitable[None]]]:
    """Hold the store's append lock, so that racing requests all decide on the same version
    before any of them appends; yields a function that waits until `n` appends wait for it
    (one per API process: a process queues its own appends to write them together)."""
    holder = await asyncpg.connect(ferry.runtime.settings.database_url)
    # Another connection watches: inside a transaction pg_stat_activity is a frozen snapshot.
    watcher = await asyncpg.connect(ferry.runtime.settings.database_url)
    transaction = holder.transaction()
    await transaction.start()
    await holder.execute("SELECT pg_advisory_xact_lock($1)", APPEND_LOCK)

    async def queued(count: int) -> None:
        waiting = (
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND query LIKE '%ferry_append%' AND datname = current_database()"
        )
        async with asyncio.timeout(30):
            while await watcher.fetchval(waiting) < count:
                await asyncio.sleep(0.01)

    try:
        yield queued
    finally:
        await transaction.rollback()
        await holder.close()
        await watcher.close()


async def true_race(
    ferry: Ferry, first: tuple[str, str, str], second: tuple[str, str, str]
) -> list[int]:
    """Two actions from two API processes, both decided before either appends; the first
    one's append is queued first."""
    async with ferry.replica() as other, appends_held(ferry) as queued:
        requests = []
        for count, ((user, ticket, action), client) in enumerate(
            ((first, ferry.http), (second, other)), start=1
        ):
            path = f"/tickets/{ticket}/{action}"
            requests.append(asyncio.ensure_future(ferry.post(user, path, via=client)))
            await queued(count)
    responses = await asyncio.gather(*requests)
    for response in responses:
        assert response.status_code in (200, 409), response.text
    return [response.status_code for response in responses]


async def test_two_approvals_at_once_one_wins(ferry: Ferry) -> None:
    for index in range(3):
        app = f"shop{index}"
        await ferry.add_app(app)
        waiting = await ferry.to_state("awaiting_approval", app)
        moves = (("lead", waiting, "approve"), ("admin", waiting, "approve"))
        statuses = await (true_race if index < 2 else race)(ferry, *moves)
        assert sorted(statuses) == [200, 409]
        events = await ticket_events(ferry, waiting)
        assert events.count("ticket.approved") == 1
        winner = "lead" if statuses[0] == 200 else "admin"
        assert (await ferry.ticket(waiting))["approved_by"] == winner


async def test_approve_and_cancel_at_once_one_wins_and_nothing_is_half_written(
    ferry: Ferry,
) -> None:
    outcomes = set()
    for index in range(4):
        app = f"shop{index}"
        await ferry.add_app(app)
        waiting = await ferry.to_state("awaiting_approval", app)
        moves = [("lead", waiting, "approve"), ("dev", waiting, "cancel")]
        if index % 2:
            moves.reverse()  # each move goes first, from either API process
        statuses = await true_race(ferry, *moves)
        assert statuses == [200, 409]  # the append queued first wins
        winner = moves[0][2]
        events = await ticket_events(ferry, waiting)
        assert events.count("ticket.approved") + events.count("ticket.cancelled") == 1
        expected = {"approve": "approved", "cancel": "cancelled"}[winner]
        assert events[-1] == f"ticket.{expected}"
        assert (await ferry.ticket(waiting))["state"] == expected
        outcomes.add(expected)
    assert outcomes == {"approved", "cancelled"}


async def approved_tickets(ferry: Ferry, app: str, count: int) -> list[str]:
    """`count` approved tickets of one app (staged and tested one after the other)."""
    return [await ferry.to_state("approved", app, author="dev") for _ in range(count)]


async def test_racing_publishes_get_distinct_consecutive_versions(ferry: Ferry) -> None:
    await ferry.add_app("shop")
    tickets = await approved_tickets(ferry, "shop", 6)
    statuses = await race(ferry, *(("dev", ticket, "publish") for ticket in tickets))
    assert statuses == [200] * 6
    versions = {ticket: (await ferry.ticket(ticket))["version"] for ticket in tickets}
    assert sorted(versions.values()) == [1, 2, 3, 4, 5, 6]

    allocated = [
        (event.data["version"], event.data["ticket_id"])
        for event in await ferry.runtime.store.read_stream("app-shop")
        if event.type == "app.version_allocated"
    ]
    assert allocated == sorted((version, ticket) for ticket, version in versions.items())
    for ticket, version in versions.items():
        command = await ferry.publisher.command(ticket)
        assert command.version == version  # type: ignore[attr-defined]


async def test_a_publish_that_loses_to_a_cancel_takes_no_version(ferry: Ferry) -> None:
    await ferry.add_app("shop")
    outcomes = []
    for ticket in await approved_tickets(ferry, "shop", 4):
        statuses = await race(ferry, ("dev", ticket, "publish"), ("dev", ticket, "cancel"))
        assert sorted(statuses) == [200, 409]
        events = await ticket_events(ferry, ticket)
        assert events.count("ticket.publish_requested") + events.count("ticket.cancelled") == 1
        outcomes.append(statuses[0] == 200)
    last = await ferry.to_state("publishing", "shop")
    allocated = [
        event.data["version"]
        for event in await ferry.runtime.store.read_stream("app-shop")
        if event.type == "app.version_allocated"
    ]
    published = sum(outcomes) + 1
    assert allocated == list(range(1, published + 1))
    assert (await ferry.ticket(last))["version"] == published
