"""PostgresEventStore: the production EventStore and ReadModels on PostgreSQL (asyncpg).

An append is one round trip: a single autocommit call of ferry_append (schema_postgres.py), which
locks, checks the version, chains the hashes, inserts, notifies and returns the stored rows;
appends that queue up in one process meanwhile share the next commit (append_postgres.py).

Global order. Every append takes one transaction-level advisory lock, so appends take turns and
position = last + 1 is dense and committed in order: a reader tailing by position never meets a
gap that a slower transaction fills later. The alternatives, and why not them:
- eventsourcing locks the whole table (LOCK TABLE … EXCLUSIVE): the same serialisation, but it also
  blocks readers and anything else that wants the table; the advisory lock blocks only appenders.
- Emmett orders by transaction id (xid8) and has readers stop below pg_snapshot_xmin: appends run
  in parallel, but positions have gaps and every reader needs the snapshot arithmetic.
- Marten lets a sequence hand out positions and a daemon publish a "high-water mark" below which
  no gap can still fill: parallel appends, at the price of a daemon and a lagging tail.
Ferry appends a few events per human action, so a serial writer costs little (group commit wins
back most of the rest) and keeps readers trivial; the hash chain needs the previous event's hash
anyway, which is serial by nature.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg
import structlog

from ferry_events import schema_postgres
from ferry_events.append_postgres import PostgresAppender
from ferry_events.chain import walk
from ferry_events.envelope import NewEvent, StoredEvent
from ferry_events.event_texts import COLUMNS, all_batches, stored_events
from ferry_events.readmodels_postgres import PostgresReadModels
from ferry_events.schema_postgres import CHANNEL, EXCLUSIVE_LOCKS
from ferry_events.store import ChainReport

log = structlog.get_logger()


async def _keep_session(connection: Any) -> None:
    """Pool reset hook. Nothing here changes session state on a pooled connection (LISTEN and
    session locks live on their own connections), so asyncpg's default reset query would only
    add a round trip to every append."""


class PostgresEventStore(PostgresReadModels):
    """EventStore and ReadModels in one PostgreSQL database."""

    def __init__(self, url: str, pool: Any) -> None:
        self._url = url
        self._pool = pool
        self._appender = PostgresAppender(pool)
        self._appended = asyncio.Event()
        self._listener: Any = None
        self._listener_lock = asyncio.Lock()

    @classmethod
    async def connect(cls, url: str, max_connections: int = 10) -> PostgresEventStore:
        pool = await asyncpg.create_pool(
            url, min_size=1, max_size=max_connections, reset=_keep_session
        )
        return cls(url, pool)

    async def migrate(self, app_role: str = "ferry_app") -> None:
        async with self._pool.acquire() as connection:
            await schema_postgres.migrate(connection, app_role)

    async def append(
        self, stream: str, events: Sequence[NewEvent], expected_version: int | None
    ) -> list[StoredEvent]:
        return await self._appender.append(stream, events, expected_version)

    async def stream_version(self, stream: str) -> int:
        sql = "SELECT coalesce(max(version), 0) FROM events WHERE stream = $1"
        return int(await self._pool.fetchval(sql, stream))

    async def read_stream(self, stream: str, after_version: int = 0) -> list[StoredEvent]:
        sql = f"SELECT {COLUMNS} FROM events WHERE stream = $1 AND version > $2 ORDER BY version"
        return stored_events(await self._pool.fetch(sql, stream, after_version))

    async def read_all(self, after: int = 0, limit: int = 1000) -> list[StoredEvent]:
        sql = f"SELECT {COLUMNS} FROM events WHERE position > $1 ORDER BY position LIMIT $2"
        return stored_events(await self._pool.fetch(sql, after, limit))

    async def last_position(self) -> int:
        return int(await self._pool.fetchval("SELECT coalesce(max(position), 0) FROM events"))

    async def subscribe(
        self, after: int = 0, batch: int = 500, poll_seconds: float = 1.0
    ) -> AsyncIterator[list[StoredEvent]]:
        while True:
            await self._listen()
            woken = self._appended  # taken before reading, so a NOTIFY in between is not lost
            events = await self.read_all(after, batch)
            if events:
                yield events
                after = events[-1].position
                continue
            # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(poll_seconds):
                    await woken.wait()

    async def _listen(self) -> None:
        """Keep one LISTEN connection open; without it subscribers still poll."""
        async with self._listener_lock:
            if self._listener is not None and not self._listener.is_closed():
                return
            try:
                listener = await asyncpg.connect(self._url)
            except (OSError, asyncpg.PostgresError) as error:
                log.warning("event_store.listen_failed", error=str(error))
                return
            try:
                await listener.add_listener(CHANNEL, self._on_notify)
            except BaseException:
                listener.terminate()
                raise
            listener.add_termination_listener(self._on_notify)
            self._listener = listener

    def _on_notify(self, *_: object) -> None:
        self._appended.set()
        self._appended = asyncio.Event()

    async def verify(self) -> ChainReport:
        return await walk(all_batches(self.read_all))

    @contextlib.asynccontextmanager
    async def exclusive(self, name: str) -> AsyncIterator[bool]:
        # A session lock on a connection of its own: it lasts exactly as long as the context,
        # and dies with the process if the holder crashes.
        connection = await asyncpg.connect(self._url)
        try:
            sql = "SELECT pg_try_advisory_lock($1, hashtext($2))"
            yield bool(await connection.fetchval(sql, EXCLUSIVE_LOCKS, name))
        finally:
            await connection.close()

    async def close(self) -> None:
        if self._listener is not None and not self._listener.is_closed():
            await self._listener.close()
        await self._pool.close()
