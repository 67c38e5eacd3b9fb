"""Event store figures: appends (single, batched, concurrent), full read and projection rebuild.

Baselines are bare asyncpg on a table of the same shape, without the version check, the global
lock or the hash chain: what the store adds is exactly what the ratio prices.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable

import asyncpg
from ferry_events.envelope import NewEvent, StoredEvent
from ferry_events.projection import DocumentBatch, ProjectionRunner
from ferry_events.store_postgres import PostgresEventStore

from bench.backends import database
from bench.report import Figure

BARE_TABLE = """
CREATE TABLE bare (
    position bigserial PRIMARY KEY, event_id uuid NOT NULL UNIQUE, stream text NOT NULL,
    version int NOT NULL, type text NOT NULL, data json NOT NULL, metadata json NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(), UNIQUE (stream, version))
"""
INSERT = (
    "INSERT INTO bare (event_id, stream, version, type, data, metadata) "
    "VALUES ($1, $2, $3, $4, $5, $6)"
)
DATA = {"ticket_id": "t-1", "app": "shop", "by": "lead", "comment": "tested on staging, fine " * 4}
META = {"actor": "lead", "correlation_id": "c-1"}


def new_event() -> NewEvent:
    return NewEvent(type="ticket.approved", data=DATA)


def bare_row(stream: str, version: int) -> tuple[object, ...]:
    return (uuid.uuid4(), stream, version, "ticket.approved", json.dumps(DATA), json.dumps(META))


async def _timed(coro: Awaitable[object]) -> float:
    start = time.perf_counter()
    await coro
    return time.perf_counter() - start


async def alternate(
    bare: Callable[[int], Awaitable[object]],
    ferry: Callable[[int], Awaitable[object]],
    rounds: int = 10,
) -> tuple[float, float]:
    """Total seconds of each side over rounds that alternate bare and ferry, so a change of load
    on a shared machine hits both sides alike."""
    t_bare = t_ferry = 0.0
    for r in range(rounds):
        t_bare += await _timed(bare(r))
        t_ferry += await _timed(ferry(r))
    return t_bare, t_ferry


async def single_appends(store: PostgresEventStore, conn: asyncpg.Connection, n: int) -> Figure:
    async def ferry(r: int) -> None:
        for i in range(n // 10):
            await store.append(f"single-{r}-{i}", [new_event()], 0)

    async def bare(r: int) -> None:
        for i in range(n // 10):
            async with conn.transaction():
                await conn.execute(INSERT, *bare_row(f"single-{r}-{i}", 1))

    t_bare, t_ferry = await alternate(bare, ferry)
    return Figure("append, 1 event per transaction", n / t_ferry, n / t_bare, "events/s", 0.8)


async def batch_appends(store: PostgresEventStore, conn: asyncpg.Connection, n: int) -> Figure:
    async def ferry(r: int) -> None:
        for i in range(n // 10):
            await store.append(f"batch-{r}-{i}", [new_event() for _ in range(100)], 0)

    async def bare(r: int) -> None:
        for i in range(n // 10):
            rows = [bare_row(f"batch-{r}-{i}", v) for v in range(1, 101)]
            async with conn.transaction():
                await conn.executemany(INSERT, rows)

    t_bare, t_ferry = await alternate(bare, ferry)
    return Figure("append, 100-event batches", 100 * n / t_ferry, 100 * n / t_bare, "events/s", 0.5)


async def concurrent_appends(url: str, store: PostgresEventStore, n: int) -> Figure:
    writers = 8
    conns = [await asyncpg.connect(url) for _ in range(writers)]

    async def ferry_writer(r: int, w: int) -> None:
        for i in range(n // 10):
            await store.append(f"conc-{r}-{w}-{i}", [new_event()], 0)

    async def bare_writer(r: int, w: int) -> None:
        for i in range(n // 10):
            async with conns[w].transaction():
                await conns[w].execute(INSERT, *bare_row(f"conc-{r}-{w}-{i}", 1))

    t_bare, t_ferry = await alternate(
        lambda r: asyncio.gather(*(bare_writer(r, w) for w in range(writers))),
        lambda r: asyncio.gather(*(ferry_writer(r, w) for w in range(writers))),
    )
    for c in conns:
        await c.close()
    total = writers * n
    return Figure(
        "append, 8 concurrent writers",
        total / t_ferry,
        total / t_bare,
        "events/s",
        0.25,
        note="(appends are serialised: one global order)",
    )


class CountPerStream:
    """A small projection: one document per stream counting its events."""

    name = "bench-count"
    collections = ("bench_counts",)

    async def apply(self, docs: DocumentBatch, event: StoredEvent) -> None:
        doc = await docs.get("bench_counts", event.stream) or {"stream": event.stream, "events": 0}
        docs.put("bench_counts", event.stream, {**doc, "events": doc["events"] + 1})


async def reads_and_rebuild(store: PostgresEventStore, conn: asyncpg.Connection) -> list[Figure]:
    total = await store.last_position()

    async def ferry_read() -> None:
        after = 0
        while batch := await store.read_all(after=after, limit=1000):
            after = batch[-1].position

    async def bare_read() -> None:
        async with conn.transaction():
            async for _ in conn.cursor("SELECT * FROM bare ORDER BY position", prefetch=1000):
                pass

    t_bare, t_ferry = await _timed(bare_read()), await _timed(ferry_read())
    runner = ProjectionRunner(store, CountPerStream(), batch=1000)
    t_rebuild = await _timed(runner.rebuild())
    return [
        Figure(
            "full read in global order",
            total / t_ferry,
            total / t_bare,
            "events/s",
            0.0,
            note="(informational: parsing into typed events is the price)",
        ),
        Figure(
            "projection rebuild from 0",
            total / t_rebuild,
            total / t_bare,
            "events/s",
            0.0,
            note=f"(absolute target >= 20,000 events/s: {total / t_rebuild:,.0f})",
        ),
    ]


async def run(scale: float = 1.0) -> list[Figure]:
    async with database() as url:
        store = await PostgresEventStore.connect(url)
        await store.migrate()
        conn = await asyncpg.connect(url)
        await conn.execute(BARE_TABLE)
        try:
            figures = [
                await single_appends(store, conn, int(2000 * scale)),
                await batch_appends(store, conn, int(200 * scale)),
                await concurrent_appends(url, store, int(300 * scale)),
            ]
            figures += await reads_and_rebuild(store, conn)
        finally:
            await conn.close()
            await store.close()
    return figures
