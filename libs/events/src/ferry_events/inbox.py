"""Idempotent consumers: an Inbox of handled message ids, and `idempotent()` to wrap a handler
so that a redelivered or duplicated message has its effect once.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections import Counter, OrderedDict
from pathlib import Path
from typing import Protocol

import structlog

from ferry_events.bus import Handler
from ferry_events.envelope import Message

log = structlog.get_logger()

DEFAULT_CAPACITY = 100_000  # ids kept; a duplicate arrives within minutes, not 100k messages


class Inbox(Protocol):
    async def seen(self, message_id: str) -> bool: ...

    async def remember(self, message_id: str) -> None: ...


class MemoryInbox:
    """The last `capacity` ids, in process memory."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self._capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    async def seen(self, message_id: str) -> bool:
        return message_id in self._ids

    async def remember(self, message_id: str) -> None:
        self._ids[message_id] = None
        self._ids.move_to_end(message_id)
        while len(self._ids) > self._capacity:
            self._ids.popitem(last=False)


class SqliteInbox:
    """The last `capacity` ids in a SQLite file: survives restarts of an agent, which has no
    database of its own. Queries run in a worker thread so the event loop never waits on disk.
    """

    def __init__(self, path: str | Path, capacity: int = DEFAULT_CAPACITY) -> None:
        self._capacity = capacity
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # An id lost to a power cut costs one repeated effect; an fsync per message costs more.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS inbox (seq INTEGER PRIMARY KEY, message_id TEXT UNIQUE)"
        )

    async def seen(self, message_id: str) -> bool:
        return await asyncio.to_thread(self._seen, message_id)

    async def remember(self, message_id: str) -> None:
        await asyncio.to_thread(self._remember, message_id)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _seen(self, message_id: str) -> bool:
        with self._lock:
            query = "SELECT 1 FROM inbox WHERE message_id = ?"
            return self._db.execute(query, (message_id,)).fetchone() is not None

    def _remember(self, message_id: str) -> None:
        with self._lock:
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO inbox (message_id) VALUES (?)", (message_id,)
            )
            seq = cursor.lastrowid or 0
            if cursor.rowcount and seq % 1000 == 0:  # prune now and then, not on every insert
                self._db.execute("DELETE FROM inbox WHERE seq <= ?", (seq - self._capacity,))


def idempotent(handler: Handler, inbox: Inbox) -> Handler:
    """Skip a message whose id was handled successfully before; remember an id only after its
    handler returned, so a failure is retried. Concurrent copies of one id run one at a time."""
    running: dict[str, asyncio.Lock] = {}
    waiting: Counter[str] = Counter()

    async def handle_once(message: Message) -> None:
        message_id = message.message_id
        waiting[message_id] += 1
        try:
            async with running.setdefault(message_id, asyncio.Lock()):
                if await inbox.seen(message_id):
                    log.info("duplicate skipped", message_id=message_id, type=message.type)
                    return
                await handler(message)
                await inbox.remember(message_id)
        finally:
            waiting[message_id] -= 1
            if not waiting[message_id]:
                del waiting[message_id], running[message_id]

    return handle_once
