"""Idempotent consumers: an Inbox of handled message ids, and `idempotent()` to wrap a handler
so that a redelivered or duplicated message has its effect once.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter, OrderedDict
from pathlib import Path
from typing import Protocol, TextIO

import structlog

from ferry_events.bus import Handler
from ferry_events.envelope import Message

log = structlog.get_logger()

DEFAULT_CAPACITY = 100_000  # ids kept; a duplicate arrives within minutes, not 100k messages
FILE_CAPACITY = 10_000  # a host's agent sees a few commands a day


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


class FileInbox(MemoryInbox):
    """MemoryInbox whose ids are also appended to a text file, read back on opening: survives
    restarts of an agent, which has no database of its own.

    Not SQLite: a set of recent ids needs no query engine, and sqlite3 cost every idle rsync
    agent 1.6 MiB of resident memory. Not flushed per id: one lost to a power cut costs one
    repeated effect of a handler that is idempotent anyway.
    """

    def __init__(self, path: str | Path, capacity: int = FILE_CAPACITY) -> None:
        super().__init__(capacity)
        self._path = Path(path)
        try:
            ids = self._path.read_text().split()
        except FileNotFoundError:
            ids = []
        self._ids.update(dict.fromkeys(ids[-capacity:]))
        self._lines = len(ids)
        self._file = self._rewrite() if self._lines > capacity else self._path.open("a")

    async def remember(self, message_id: str) -> None:
        if message_id in self._ids or len(message_id.split()) != 1:
            return  # (ids are uuids: one that would not read back as one line is not kept)
        await super().remember(message_id)
        self._file.write(message_id + "\n")
        self._file.flush()
        self._lines += 1
        if self._lines > 2 * self._capacity:  # compact now and then, not on every id
            self._file.close()
            self._file = self._rewrite()

    def close(self) -> None:
        self._file.close()

    def _rewrite(self) -> TextIO:
        temporary = self._path.with_name(self._path.name + ".tmp")
        temporary.write_text("".join(f"{i}\n" for i in self._ids))
        os.replace(temporary, self._path)
        self._lines = len(self._ids)
        return self._path.open("a")


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
                    log.info("duplicate.skipped", message_id=message_id, type=message.type)
                    return
                await handler(message)
                await inbox.remember(message_id)
        finally:
            waiting[message_id] -= 1
            if not waiting[message_id]:
                del waiting[message_id], running[message_id]

    return handle_once
