"""Projections caught up together (one read, one commit per batch) on both real stores: runners
that stand at different checkpoints, racing groups on other connections and a subscription's
events handed over all end with every event applied exactly once, equal to a rebuild."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from ferry_events import StoredEvent
from ferry_events.backends import open_store
from ferry_events.projection import DocumentBatch, ProjectionRunner, catch_up_together
from ferry_events.store_postgres import PostgresEventStore
from ferry_events.store_sqlite import SqliteEventStore
from run_projection import CountingProjection
from test_projection import EVERYTHING, comments, write_log

Store = PostgresEventStore | SqliteEventStore
NAMES = ("one", "two", "three")


class Renamed:
    """What CountingProjection sees of a batch: its collections under the projection's name."""

    def __init__(self, docs: DocumentBatch, name: str) -> None:
        self._docs, self._name = docs, name

    async def get(self, collection: str, key: str) -> dict[str, Any] | None:
        return await self._docs.get(f"{self._name}.{collection}", key)

    def put(self, collection: str, key: str, doc: dict[str, Any]) -> None:
        self._docs.put(f"{self._name}.{collection}", key, doc)

    def delete(self, collection: str, key: str) -> None:
        self._docs.delete(f"{self._name}.{collection}", key)


class Counting:
    """A CountingProjection of its own name, in collections of its own."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.collections = tuple(f"{name}.{c}" for c in CountingProjection.collections)

    async def apply(self, docs: DocumentBatch, event: StoredEvent) -> None:
        await CountingProjection().apply(Renamed(docs, self.name), event)  # type: ignore[arg-type]


@pytest.fixture
async def stores(store_url: str) -> AsyncIterator[list[Store]]:
    opened: list[Store] = []
    for _ in range(2):
        opened.append(await open_store(store_url))
        await opened[-1].migrate()
    yield opened
    for store in opened:
        await store.close()


def runners(store: Store, batch: int) -> list[ProjectionRunner]:
    return [ProjectionRunner(store, Counting(name), batch=batch) for name in NAMES]


async def snapshot(store: Store, name: str) -> dict[str, list[dict[str, Any]]]:
    return {c: await store.find(c, limit=EVERYTHING) for c in Counting(name).collections}


async def assert_each_event_applied_once(store: Store, name: str) -> None:
    for doc in await store.find(f"{name}.streams", limit=EVERYTHING):
        length = await store.stream_version(doc["stream"])
        assert (doc["applied"], doc["out_of_order"]) == (length, 0), (name, doc)
    kinds = await store.find(f"{name}.stream_types", limit=EVERYTHING)
    assert sum(kind["events"] for kind in kinds) == await store.last_position(), name


async def test_runners_at_different_checkpoints_catch_up_together(stores: list[Store]) -> None:
    store, other = stores
    await write_log(store, range(60), length=5)
    group = runners(store, batch=40)
    await group[1].catch_up()  # "two" is ahead of the others
    await write_log(store, range(60, 120), length=4)
    await group[2].rebuild()  # "three" is ahead of "two"
    await write_log(store, range(120, 150), length=3)

    # Another process catches the same projections up at the same time, in smaller batches.
    reached = await asyncio.gather(
        catch_up_together(store, group, batch=40),
        catch_up_together(other, runners(other, batch=25), batch=25),
    )
    last = await store.last_position()
    assert reached == [last, last]
    for name in NAMES:
        assert await store.checkpoint(name) == last
        await assert_each_event_applied_once(store, name)
        built = await snapshot(store, name)
        assert await ProjectionRunner(store, Counting(name)).rebuild() == last
        assert await snapshot(store, name) == built


async def test_a_subscriptions_events_are_applied_once_while_more_are_written(
    stores: list[Store],
) -> None:
    store, _ = stores
    await write_log(store, range(50), length=4)
    group = runners(store, batch=30)
    at = await catch_up_together(store, group, batch=30)
    following = asyncio.create_task(_follow(store, group, at))
    try:
        await write_log(store, range(50, 150), length=3)
        for older in range(0, 50, 3):
            version = await store.stream_version(f"ticket-{older}")
            await store.append(f"ticket-{older}", comments(older, 2), expected_version=version)
        await group[0].rebuild()  # one of them rebuilt meanwhile, through its own runner
        last = await store.last_position()
        async with asyncio.timeout(60):
            while min([await store.checkpoint(name) for name in NAMES]) < last:
                await asyncio.sleep(0.02)
    finally:
        following.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await following
    for name in NAMES:
        await assert_each_event_applied_once(store, name)


async def _follow(store: Store, group: list[ProjectionRunner], after: int) -> None:
    """What Views.run does: hand each batch a subscription yields to the group."""
    async for events in store.subscribe(after=after, batch=30, poll_seconds=0.05):
        await catch_up_together(store, group, batch=30, given=(after, events))
        after = events[-1].position if events else after
