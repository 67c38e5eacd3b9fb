"""SqliteEventStore: the embedded EventStore and ReadModels in one SQLite file (aiosqlite, WAL).

Appends take turns by BEGIN IMMEDIATE, SQLite's one write lock, so positions are dense and
committed in order, as in Postgres (see store_postgres.py for why a single writer). The chain is
computed here with chain.py, from the same canonical text Postgres hashes.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import re
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime

import aiosqlite

from ferry_events.chain import GENESIS, canonical_event, format_time, link, walk
from ferry_events.envelope import NewEvent, StoredEvent
from ferry_events.event_texts import (
    COLUMNS,
    all_batches,
    data_texts,
    metadata_texts,
    stored_events,
)
from ferry_events.readmodels_sqlite import SqliteReadModels, scalar
from ferry_events.store import ChainReport, DuplicateEvent, WrongExpectedVersion

MEMORY = ":memory:"
BUSY_TIMEOUT_SECONDS = 30.0  # how long an append waits for another process's write to finish

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS events (
        position INTEGER PRIMARY KEY, stream TEXT NOT NULL, version INTEGER NOT NULL,
        event_id TEXT NOT NULL UNIQUE, type TEXT NOT NULL, schema_version INTEGER NOT NULL,
        data TEXT NOT NULL, metadata TEXT NOT NULL, recorded_at TEXT NOT NULL, hash TEXT NOT NULL,
        UNIQUE (stream, version))""",
    """CREATE TRIGGER IF NOT EXISTS events_no_update BEFORE UPDATE ON events
        BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS events_no_delete BEFORE DELETE ON events
        BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END""",
    # The primary key (collection, key) is also the index find() and count() use.
    """CREATE TABLE IF NOT EXISTS documents (
        collection TEXT NOT NULL, key TEXT NOT NULL, doc TEXT NOT NULL,
        PRIMARY KEY (collection, key)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS checkpoints (
        name TEXT PRIMARY KEY, position INTEGER NOT NULL)""",
)
_INSERT = f"INSERT INTO events ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"


def _owner_only(path: str) -> None:
    """The database file 0600 (created so, or narrowed): it holds password hashes and tokens'
    digests. SQLite gives its -wal and -shm files the database file's mode; any left from an
    earlier run are narrowed too."""
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    for name in (path, f"{path}-wal", f"{path}-shm", f"{path}-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.chmod(name, 0o600)


def _try_lock_file(path: str) -> int | None:
    """An open descriptor holding an exclusive flock on `path`, or None if someone else has it."""
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        return None
    return descriptor


class SqliteEventStore(SqliteReadModels):
    """EventStore and ReadModels in one SQLite database; `:memory:` for a throwaway one."""

    def __init__(self, path: str, writer: aiosqlite.Connection, reader: aiosqlite.Connection):
        self._path = path
        self._writer, self._reader = writer, reader
        self._write_lock = asyncio.Lock()
        # A file has its own reader connection, which sees only committed rows. In memory there
        # is one connection, so a read must not run in the middle of a write transaction.
        self._read_lock = self._write_lock if reader is writer else asyncio.Lock()
        self._appended = asyncio.Event()
        self._held: set[str] = set()  # exclusive() names taken, for :memory:

    @classmethod
    async def connect(cls, path: str) -> SqliteEventStore:
        """`path` of the database file, or `:memory:` (`/:memory:` as sqlite:///:memory: gives)."""
        path = MEMORY if path in (MEMORY, "/" + MEMORY) else path
        if path == MEMORY:
            writer = await cls._open(path)
            return cls(path, writer, writer)
        _owner_only(path)
        # WAL: readers never wait for the writer. synchronous=FULL: a commit survives a power cut.
        writer = await cls._open(path, "journal_mode = WAL", "synchronous = FULL")
        try:
            reader = await cls._open(path, "query_only = ON")
        except BaseException:
            await writer.close()
            raise
        return cls(path, writer, reader)

    @staticmethod
    async def _open(path: str, *pragmas: str) -> aiosqlite.Connection:
        # isolation_level=None: this module issues BEGIN IMMEDIATE / COMMIT itself.
        db = await aiosqlite.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_SECONDS)
        try:
            for pragma in pragmas:
                await db.execute_fetchall(f"PRAGMA {pragma}")
        except BaseException:
            await db.close()
            raise
        return db

    async def migrate(self) -> None:
        async with self._transaction() as db:
            for statement in SCHEMA:
                await db.execute(statement)

    async def append(
        self, stream: str, events: Sequence[NewEvent], expected_version: int | None
    ) -> list[StoredEvent]:
        datas, metadatas = data_texts(events), metadata_texts(events)
        async with self._transaction() as db:
            version = await scalar(
                db, "SELECT coalesce(max(version), 0) FROM events WHERE stream = ?", stream
            )
            if expected_version is not None and expected_version != version:
                raise WrongExpectedVersion(stream, expected_version, version)
            last = list(
                await db.execute_fetchall(
                    "SELECT position, hash FROM events ORDER BY position DESC LIMIT 1"
                )
            )
            position, previous = last[0] if last else (0, GENESIS)
            recorded_at = format_time(datetime.now(UTC))
            rows = []
            for event, data, metadata in zip(events, datas, metadatas, strict=True):
                position, version = position + 1, version + 1
                event_id = str(event.event_id)
                previous = link(
                    previous,
                    canonical_event(
                        event_id,
                        stream,
                        version,
                        event.type,
                        event.schema_version,
                        recorded_at,
                        data,
                        metadata,
                    ),
                )
                rows.append(
                    (
                        position,
                        stream,
                        version,
                        event_id,
                        event.type,
                        event.schema_version,
                        data,
                        metadata,
                        recorded_at,
                        previous,
                    )
                )
            duplicate = await self._first_duplicate(db, events)
            if duplicate is not None:
                raise DuplicateEvent(duplicate)
            await db.executemany(_INSERT, rows)
        self._wake()
        return stored_events(rows)

    @staticmethod
    async def _first_duplicate(db: aiosqlite.Connection, events: Sequence[NewEvent]) -> str | None:
        ids = [str(event.event_id) for event in events]
        sql = "SELECT event_id FROM events WHERE event_id IN (SELECT value FROM json_each(?))"
        stored = {row[0] for row in await db.execute_fetchall(sql, (json.dumps(ids),))}
        seen: set[str] = set()
        for event_id in ids:
            if event_id in stored or event_id in seen:
                return event_id
            seen.add(event_id)
        return None

    def _wake(self) -> None:
        self._appended.set()
        self._appended = asyncio.Event()

    async def stream_version(self, stream: str) -> int:
        sql = "SELECT coalesce(max(version), 0) FROM events WHERE stream = ?"
        return int((await self._read(sql, stream))[0][0])

    async def read_stream(self, stream: str, after_version: int = 0) -> list[StoredEvent]:
        sql = f"SELECT {COLUMNS} FROM events WHERE stream = ? AND version > ? ORDER BY version"
        return stored_events(await self._read(sql, stream, after_version))

    async def read_all(self, after: int = 0, limit: int = 1000) -> list[StoredEvent]:
        sql = f"SELECT {COLUMNS} FROM events WHERE position > ? ORDER BY position LIMIT ?"
        return stored_events(await self._read(sql, after, limit))

    async def last_position(self) -> int:
        return int((await self._read("SELECT coalesce(max(position), 0) FROM events"))[0][0])

    async def subscribe(
        self, after: int = 0, batch: int = 500, poll_seconds: float = 1.0
    ) -> AsyncIterator[list[StoredEvent]]:
        """Appends through this store wake subscribers at once; other processes' by polling."""
        while True:
            woken = self._appended  # taken before reading, so an append in between is not lost
            events = await self.read_all(after, batch)
            if events:
                yield events
                after = events[-1].position
                continue
            # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(poll_seconds):
                    await woken.wait()

    async def verify(self) -> ChainReport:
        return await walk(all_batches(self.read_all))

    @contextlib.asynccontextmanager
    async def exclusive(self, name: str) -> AsyncIterator[bool]:
        if self._path == MEMORY:
            held = name not in self._held
            self._held.add(name)
            try:
                yield held
            finally:
                if held:
                    self._held.discard(name)
            return
        # flock, not a row: the kernel drops it when the holder dies, however it dies.
        lock_file = f"{self._path}.{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}.lock"
        descriptor = _try_lock_file(lock_file)
        try:
            yield descriptor is not None
        finally:
            if descriptor is not None:
                os.close(descriptor)

    async def close(self) -> None:
        if self._reader is not self._writer:
            await self._reader.close()
        await self._writer.close()
