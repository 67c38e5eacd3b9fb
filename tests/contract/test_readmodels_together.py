"""ReadModels.commit_many on both stores: several projections' documents and checkpoints commit
in one transaction, all or nothing, and overlapping commits racing from other connections end
with exactly one winner (never a deadlock)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from ferry_events.backends import open_store
from ferry_events.store import WrongExpectedVersion
from ferry_events.store_postgres import PostgresEventStore
from ferry_events.store_sqlite import SqliteEventStore

Store = PostgresEventStore | SqliteEventStore
Changes = dict[tuple[str, str], dict[str, Any] | None]


@pytest.fixture
async def stores(store_url: str) -> AsyncIterator[list[Store]]:
    """Three connections to one fresh store."""
    opened: list[Store] = []
    for _ in range(3):
        opened.append(await open_store(store_url))
        await opened[-1].migrate()
    yield opened
    for store in opened:
        await store.close()


def doc(collection: str, key: str, **fields: Any) -> Changes:
    return {(collection, key): {"key": key, **fields}}


async def test_commit_many_moves_every_checkpoint_with_its_documents(stores: list[Store]) -> None:
    store = stores[0]
    await store.commit("apps", 0, 3, doc("apps", "shop", v=1))
    await store.commit_many(
        [
            ("apps", 3, 9, {**doc("apps", "blog", v=1), ("apps", "shop"): None}),
            ("tickets", 0, 9, doc("tickets", "t-1", state="testing")),  # its first commit
            ("users", 0, 9, {}),
        ]
    )
    reader = stores[1]
    assert [await reader.checkpoint(n) for n in ("apps", "tickets", "users")] == [9, 9, 9]
    assert await reader.get("apps", "blog") == {"key": "blog", "v": 1}
    assert await reader.get("apps", "shop") is None
    assert await reader.get("tickets", "t-1") == {"key": "t-1", "state": "testing"}


async def test_one_stale_checkpoint_and_nothing_of_the_batch_is_written(
    stores: list[Store],
) -> None:
    store = stores[0]
    await store.commit_many(
        [("apps", 0, 5, doc("apps", "shop", v=1)), ("tickets", 0, 4, doc("tickets", "t", v=1))]
    )
    for stale in (("tickets", 5), ("tickets", 0), ("never-ran", 4)):
        with pytest.raises(WrongExpectedVersion) as raised:
            await store.commit_many(
                [
                    ("apps", 5, 8, doc("apps", "shop", v=2)),
                    (stale[0], stale[1], 8, doc("tickets", "t", v=2)),
                    ("users", 0, 8, doc("users", "ann", v=2)),
                ]
            )
        assert (raised.value.stream, raised.value.expected) == stale
        assert raised.value.actual == {"tickets": 4, "never-ran": 0}[stale[0]]
    assert [await store.checkpoint(n) for n in ("apps", "tickets", "users", "never-ran")] == [
        5,
        4,
        0,
        0,
    ]
    assert await store.get("apps", "shop") == {"key": "shop", "v": 1}
    assert await store.get("tickets", "t") == {"key": "t", "v": 1}
    assert await store.get("users", "ann") is None


async def test_overlapping_commits_racing_end_with_one_winner(stores: list[Store]) -> None:
    for generation in range(4):  # new projections each time: first commits race too
        names = [f"{name}-{generation}" for name in ("apps", "hosts", "tickets", "users")]
        for position in (0, 1, 2):
            await _race(stores, names, position)
        assert [await stores[0].checkpoint(n) for n in names] == [3, 3, 3, 3]


async def _race(stores: list[Store], names: list[str], position: int) -> None:
    """Three commits of overlapping sets, listed in different orders, from `position` on."""
    orders = [names, names[::-1], names[2:0:-1]]
    results = await asyncio.gather(
        *(
            store.commit_many([(n, position, position + 1, doc("docs", n, by=i)) for n in order])
            for i, (store, order) in enumerate(zip(stores, orders, strict=True))
        ),
        return_exceptions=True,
    )
    winners = [i for i, result in enumerate(results) if result is None]
    assert len(winners) == 1, results
    assert all(isinstance(r, WrongExpectedVersion) for r in results if r is not None), results
    for n in orders[winners[0]]:
        assert await stores[0].get("docs", n) == {"key": n, "by": winners[0]}
    # The projections outside the winner's set stay behind: bring them along for the next race.
    for n in set(names) - set(orders[winners[0]]):
        await stores[0].commit(n, position, position + 1, doc("docs", n, by=winners[0]))
