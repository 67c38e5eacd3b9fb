"""The projection runner on both real stores: a rebuild from 0 equals the state built as events
came; a runner SIGKILLed mid-rebuild resumes from its checkpoint to that same state; racing
runners never apply an event twice."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from ferry_events import NewEvent
from ferry_events.backends import open_store
from ferry_events.projection import LogWithReadModels, ProjectionRunner
from ferry_events.registry import Event
from ferry_events.schemas import AppUpdated, TicketCancelled, TicketReturned, TicketSubmitted
from run_projection import CountingProjection

RUN_PROJECTION = Path(__file__).with_name("run_projection.py")
EVERYTHING = 1_000_000


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[LogWithReadModels]:
    opened = await open_store(store_url)
    await opened.migrate()
    yield opened
    await opened.close()


def ticket_history(ticket: int, length: int) -> list[NewEvent]:
    """A ticket's stream of `length` events; every 5th ticket ends cancelled."""
    ticket_id = f"t{ticket}"
    events: list[Event] = []
    for version in range(1, length + 1):
        if version == 1:
            events.append(
                TicketSubmitted(
                    ticket_id=ticket_id, app="shop", kind="deploy", reason="r", author="dev"
                )
            )
        elif version == length and ticket % 5 == 0:
            events.append(TicketCancelled(ticket_id=ticket_id, by="dev"))
        else:
            events.append(TicketReturned(ticket_id=ticket_id, by="lead", comment=f"#{version}"))
    return [NewEvent.of(event) for event in events]


def comments(ticket: int, count: int) -> list[NewEvent]:
    return [
        NewEvent.of(TicketReturned(ticket_id=f"t{ticket}", by="lead", comment="more"))
        for _ in range(count)
    ]


async def write_log(store: LogWithReadModels, tickets: range, length: int) -> None:
    """Ticket streams of `length` events, and an app stream touched every tenth ticket."""
    for ticket in tickets:
        await store.append(f"ticket-{ticket}", ticket_history(ticket, length), expected_version=0)
        if ticket % 10 == 0:
            change = AppUpdated(name="shop", changes={"ticket": ticket}, by="admin")
            await store.append("app-shop", [NewEvent.of(change)], expected_version=None)


async def snapshot(store: LogWithReadModels) -> dict[str, list[dict[str, Any]]]:
    return {
        collection: await store.find(collection, limit=EVERYTHING)
        for collection in CountingProjection.collections
    }


async def assert_each_event_applied_once(store: LogWithReadModels, streams: int) -> None:
    """The counters prove it: every stream saw versions 1..n once, in order; totals add up."""
    docs = await store.find("streams", limit=EVERYTHING)
    assert len(docs) == streams
    for doc in docs:
        length = await store.stream_version(doc["stream"])
        assert doc["applied"] == length, doc
        assert doc["version_sum"] == length * (length + 1) // 2, doc
        assert doc["out_of_order"] == 0, doc
    kinds = await store.find("stream_types", limit=EVERYTHING)
    assert sum(kind["events"] for kind in kinds) == await store.last_position()


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 60.0) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.02)


async def test_rebuild_from_zero_equals_the_state_built_as_events_came(
    store: LogWithReadModels,
) -> None:
    runner = ProjectionRunner(store, CountingProjection(), batch=64)
    following = asyncio.create_task(runner.run())
    try:
        for round_ in range(8):
            new = range(round_ * 40, round_ * 40 + 40)
            await write_log(store, new, length=3 + round_)
            for older in range(0, round_ * 40, 7):  # earlier tickets get more events
                version = await store.stream_version(f"ticket-{older}")
                await store.append(f"ticket-{older}", comments(older, 2), expected_version=version)
            if round_ % 3 == 0:
                await asyncio.sleep(0.3)  # sometimes let it catch up, sometimes not
        last = await store.last_position()
        await eventually(lambda: _checkpoint_is(store, last))
    finally:
        following.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await following

    incremental = await snapshot(store)
    await assert_each_event_applied_once(store, streams=8 * 40 + 1)
    assert len(incremental["open_tickets"]) == 8 * 40 - 8 * 8
    assert await ProjectionRunner(store, CountingProjection(), batch=1000).rebuild() == last
    assert await snapshot(store) == incremental


async def test_a_runner_killed_mid_rebuild_resumes_from_its_checkpoint(
    store: LogWithReadModels, store_url: str
) -> None:
    await write_log(store, range(1000), length=50)
    total = await store.last_position()
    assert total == 50_100

    rebuilding = await _start_runner(store_url, "rebuild", batch=100)
    await eventually(lambda: _checkpoint_over(store, 10_000))
    assert rebuilding.returncode is None, "the rebuild finished before it could be killed"
    rebuilding.send_signal(signal.SIGKILL)
    await rebuilding.wait()
    killed_at = await store.checkpoint("counting")
    assert 10_000 <= killed_at < total
    # Documents and checkpoint committed together: the counts stop exactly at the checkpoint.
    kinds = await store.find("stream_types", limit=EVERYTHING)
    assert sum(kind["events"] for kind in kinds) == killed_at

    resuming = await _start_runner(store_url, "catch_up", batch=100)
    out, _ = await resuming.communicate()
    assert resuming.returncode == 0
    assert int(out) == total - killed_at
    resumed = await snapshot(store)
    await assert_each_event_applied_once(store, streams=1001)

    assert await ProjectionRunner(store, CountingProjection()).rebuild() == total
    assert await snapshot(store) == resumed


async def test_racing_runners_never_apply_an_event_twice(
    store: LogWithReadModels, store_url: str
) -> None:
    await write_log(store, range(300), length=12)
    total = await store.last_position()
    other = await open_store(store_url)
    try:
        first = ProjectionRunner(store, CountingProjection(), batch=25)
        second = ProjectionRunner(other, CountingProjection(), batch=25)
        applied = await asyncio.gather(first.catch_up(), second.catch_up())
    finally:
        await other.close()

    assert sum(applied) == total  # each batch was committed by exactly one of them
    assert await store.checkpoint("counting") == total
    await assert_each_event_applied_once(store, streams=301)
    assert await first.catch_up() == 0
    assert await first.lag() == 0


async def test_a_runner_rebuilt_while_it_follows_applies_each_event_once(
    store: LogWithReadModels,
) -> None:
    await write_log(store, range(200), length=10)
    runner = ProjectionRunner(store, CountingProjection(), batch=50)
    following = asyncio.create_task(runner.run())
    try:
        writing = asyncio.create_task(write_log(store, range(200, 400), length=10))
        await asyncio.sleep(0.2)
        await runner.rebuild()  # the same runner, from another task
        await writing
        last = await store.last_position()
        await eventually(lambda: _checkpoint_is(store, last))
    finally:
        following.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await following

    await assert_each_event_applied_once(store, streams=401)


async def _checkpoint_is(store: LogWithReadModels, position: int) -> bool:
    return await store.checkpoint("counting") == position


async def _checkpoint_over(store: LogWithReadModels, position: int) -> bool:
    return await store.checkpoint("counting") >= position


async def _start_runner(url: str, mode: str, batch: int) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        str(RUN_PROJECTION),
        url,
        mode,
        str(batch),
        stdout=asyncio.subprocess.PIPE,
    )
