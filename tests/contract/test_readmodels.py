"""The ReadModels contract, run against both stores (store_url): documents and checkpoints commit
together, a checkpoint moves only from where the caller saw it, and find/count agree."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from ferry_events.backends import open_store
from ferry_events.store import WrongExpectedVersion
from ferry_events.store_postgres import PostgresEventStore
from ferry_events.store_sqlite import SqliteEventStore

Store = PostgresEventStore | SqliteEventStore
Connect = Callable[[], Awaitable[Store]]


@pytest.fixture
async def connect(store_url: str) -> AsyncIterator[Connect]:
    opened: list[Store] = []

    async def open_one() -> Store:
        opened.append(await open_store(store_url))
        await opened[-1].migrate()
        return opened[-1]

    yield open_one
    for store in opened:
        await store.close()


@pytest.fixture
async def store(connect: Connect) -> Store:
    return await connect()


TICKETS: dict[tuple[str, str], dict[str, Any] | None] = {
    ("tickets", "t-1"): {"id": "t-1", "app": "shop", "state": "testing", "n": 10, "urgent": True},
    ("tickets", "t-2"): {"id": "t-2", "app": "shop", "state": "approved", "n": 9},
    ("tickets", "t-3"): {"id": "t-3", "app": "blog", "state": "testing", "n": 100, "urgent": False},
    ("tickets", "t-4"): {"id": "t-4", "app": "shop", "state": "Testing", "n": 1.5, "urgent": None},
    ("apps", "shop"): {"name": "shop", "state": "testing"},
}


async def test_commit_writes_documents_and_moves_the_checkpoint(
    store: Store, connect: Connect
) -> None:
    assert await store.checkpoint("tickets") == 0
    await store.commit("tickets", 0, 7, TICKETS)
    assert await store.checkpoint("tickets") == 7
    assert await store.get("tickets", "t-1") == TICKETS[("tickets", "t-1")]
    assert await store.get("tickets", "missing") is None

    changes = {("tickets", "t-1"): {"id": "t-1", "state": "published"}, ("tickets", "t-2"): None}
    await store.commit("tickets", 7, 9, changes)

    reopened = await connect()
    assert await reopened.checkpoint("tickets") == 9
    assert await reopened.get("tickets", "t-1") == {"id": "t-1", "state": "published"}
    assert await reopened.get("tickets", "t-2") is None
    assert await reopened.checkpoint("other") == 0


async def test_a_stale_checkpoint_is_refused_and_nothing_is_written(store: Store) -> None:
    await store.commit("tickets", 0, 5, {("tickets", "t-1"): {"v": 1}})
    for stale in (0, 4, 6):
        with pytest.raises(WrongExpectedVersion) as raised:
            await store.commit(
                "tickets", stale, 8, {("tickets", "t-1"): {"v": 2}, ("tickets", "t-9"): {"v": 9}}
            )
        assert (raised.value.expected, raised.value.actual) == (stale, 5)
    with pytest.raises(WrongExpectedVersion):
        await store.commit("never-ran", 3, 4, {("tickets", "t-1"): None})
    assert await store.checkpoint("tickets") == 5
    assert await store.checkpoint("never-ran") == 0
    assert await store.get("tickets", "t-1") == {"v": 1}
    assert await store.get("tickets", "t-9") is None


async def test_racing_commits_of_one_projection_exactly_one_wins(
    store: Store, connect: Connect
) -> None:
    writers = [store, await connect(), await connect()]
    for expected in (0, 1):
        results = await asyncio.gather(
            *(
                w.commit("tickets", expected, expected + 1, {("tickets", "t"): {"by": i}})
                for i, w in enumerate(writers)
            ),
            return_exceptions=True,
        )
        winners = [i for i, r in enumerate(results) if r is None]
        assert len(winners) == 1, results
        assert all(isinstance(r, WrongExpectedVersion) for r in results if r is not None)
        assert await store.get("tickets", "t") == {"by": winners[0]}
    assert await store.checkpoint("tickets") == 2


async def test_find_filters_orders_and_pages(store: Store) -> None:
    await store.commit("tickets", 0, 1, TICKETS)

    def ids(docs: list[dict[str, Any]]) -> list[str]:
        return [d["id"] for d in docs]

    assert ids(await store.find("tickets")) == ["t-1", "t-2", "t-3", "t-4"]
    assert ids(await store.find("tickets", {"app": "shop", "state": "testing"})) == ["t-1"]
    assert ids(await store.find("tickets", {"n": 9})) == ["t-2"]
    assert ids(await store.find("tickets", {"n": "100"})) == ["t-3"]
    assert ids(await store.find("tickets", {"urgent": True})) == ["t-1"]
    assert ids(await store.find("tickets", {"urgent": None})) == ["t-2", "t-4"]
    assert ids(await store.find("tickets", {"app": "nope"})) == []
    assert ids(await store.find("tickets", order_by="n")) == ["t-4", "t-2", "t-1", "t-3"]
    assert ids(await store.find("tickets", order_by="n", descending=True)) == [
        "t-3",
        "t-1",
        "t-2",
        "t-4",
    ]
    # Strings compare bytewise on both stores; a document without the field comes last.
    assert ids(await store.find("tickets", order_by="state")) == ["t-4", "t-2", "t-1", "t-3"]
    assert ids(await store.find("tickets", order_by="urgent", descending=True)) == [
        "t-1",
        "t-3",
        "t-2",
        "t-4",
    ]
    assert ids(await store.find("tickets", order_by="n", limit=2, offset=1)) == ["t-2", "t-1"]
    assert await store.find("apps") == [{"name": "shop", "state": "testing"}]


async def test_count_agrees_with_find(store: Store) -> None:
    await store.commit("tickets", 0, 1, TICKETS)
    assert await store.count("tickets") == 4
    assert await store.count("tickets", {"app": "shop"}) == 3
    assert await store.count("tickets", {"state": "testing"}) == 2
    assert await store.count("tickets", {"urgent": None}) == 2
    assert await store.count("nothing") == 0


async def test_field_names_must_be_plain(store: Store) -> None:
    with pytest.raises(ValueError, match="field name"):
        await store.find("tickets", {"app') OR 1=1 --": "x"})
    with pytest.raises(ValueError, match="field name"):
        await store.find("tickets", order_by="a.b")


async def test_reset_drops_the_collections_and_the_checkpoint(store: Store) -> None:
    await store.commit("tickets", 0, 7, TICKETS)
    await store.commit("users", 0, 3, {("users", "alice"): {"role": "lead"}})

    await store.reset("tickets", ["tickets", "apps"])

    assert await store.checkpoint("tickets") == 0
    assert await store.count("tickets") == 0 and await store.count("apps") == 0
    assert await store.checkpoint("users") == 3
    assert await store.get("users", "alice") == {"role": "lead"}
    await store.commit("tickets", 0, 1, {("tickets", "t-1"): {"id": "t-1"}})
    assert await store.find("tickets") == [{"id": "t-1"}]
