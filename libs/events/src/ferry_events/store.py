"""The EventStore port: one append-only, globally ordered, hash-chained log.

Errors:
    StoreError
     ├── WrongExpectedVersion   append's expected_version did not match; nothing was written
     └── DuplicateEvent         an event id is already in the log (a redelivered report)

Implementations: PostgresEventStore (production), SqliteEventStore (embedded). Both pass
tests/contract/test_store.py and keep their read models (ReadModels) in the same database, so a
projection's documents and checkpoint commit in one transaction.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from ferry_events.envelope import NewEvent, StoredEvent

ANY_VERSION = None  # append without a concurrency check


class StoreError(Exception):
    """Base of the store's errors."""


class WrongExpectedVersion(StoreError):
    def __init__(self, stream: str, expected: int, actual: int) -> None:
        super().__init__(f"stream {stream!r} is at version {actual}, expected {expected}")
        self.stream, self.expected, self.actual = stream, expected, actual


class DuplicateEvent(StoreError):
    def __init__(self, event_id: str) -> None:
        super().__init__(f"event {event_id} is already in the log")
        self.event_id = event_id


@dataclass(frozen=True)
class ChainReport:
    """Result of walking the hash chain: ok, or the first broken link and why."""

    ok: bool
    events: int
    position: int | None = None
    event_id: str | None = None
    problem: str | None = None

    def __str__(self) -> str:
        if self.ok:
            return f"OK: {self.events} events, hash chain intact"
        return f"BROKEN at position {self.position} (event {self.event_id}): {self.problem}"


DocKey = tuple[str, str]  # (collection, key)


class EventStore(Protocol):
    async def migrate(self) -> None:
        """Create or upgrade the schema; idempotent."""

    async def append(
        self, stream: str, events: Sequence[NewEvent], expected_version: int | None
    ) -> list[StoredEvent]:
        """Append all or nothing. expected_version is the stream's current event count
        (0 = the stream must not exist yet), or None for no check."""

    async def stream_version(self, stream: str) -> int: ...

    async def read_stream(self, stream: str, after_version: int = 0) -> list[StoredEvent]: ...

    async def read_all(self, after: int = 0, limit: int = 1000) -> list[StoredEvent]:
        """Events with position > after, in global order. Never skips one that commits late."""

    async def last_position(self) -> int: ...

    def subscribe(
        self, after: int = 0, batch: int = 500, poll_seconds: float = 1.0
    ) -> AsyncIterator[list[StoredEvent]]:
        """Yield batches of new events forever; sleeps until woken (notify) or poll_seconds."""

    async def verify(self) -> ChainReport: ...

    def exclusive(self, name: str) -> AbstractAsyncContextManager[bool]:
        """Hold a named lock for as long as the context lasts (one relay at a time).
        Yields False at once if another holder has it."""

    async def close(self) -> None: ...


class ReadModels(Protocol):
    """Documents of the projections, with checkpoints, in the store's database."""

    async def checkpoint(self, name: str) -> int: ...

    async def commit(
        self,
        name: str,
        expected: int,
        position: int,
        changes: Mapping[DocKey, dict[str, Any] | None],
    ) -> None:
        """Write the changed documents (None deletes) and move the checkpoint from `expected`
        to `position`, in one transaction. Raises WrongExpectedVersion if the checkpoint moved."""

    async def commit_many(
        self, commits: Sequence[tuple[str, int, int, Mapping[DocKey, dict[str, Any] | None]]]
    ) -> None:
        """commit() of several projections (name, expected, position, changes) in one
        transaction: all of them, or none."""

    async def get(self, collection: str, key: str) -> dict[str, Any] | None: ...

    async def find(
        self,
        collection: str,
        where: Mapping[str, str | int | None] | None = None,
        order_by: str | None = None,
        descending: bool = False,
        limit: int = 100,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        """Documents whose top-level fields equal `where`, ordered by a top-level field."""

    async def count(
        self, collection: str, where: Mapping[str, str | int | None] | None = None
    ) -> int: ...

    async def reset(self, name: str, collections: Sequence[str]) -> None:
        """Drop the collections' documents and the checkpoint: the next run rebuilds from 0."""
