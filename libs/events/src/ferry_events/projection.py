"""Projections: read models folded from the log in batches, each batch's documents committed
together with the projection's checkpoint, so an event is never applied twice nor skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, Sequence
from typing import Any, Protocol

import structlog

from ferry_events.envelope import StoredEvent
from ferry_events.store import DocKey, EventStore, ReadModels, WrongExpectedVersion

log = structlog.get_logger()

Doc = dict[str, Any]


class LogWithReadModels(EventStore, ReadModels, Protocol):
    """A store that keeps the read models in its own database (both store backends do)."""


class Projection(Protocol):
    """A deterministic fold of the log into documents of its own collections.

    apply() must depend only on the documents it reads and the event: that is what makes a
    rebuild from position 0 equal the incrementally built state.
    """

    @property
    def name(self) -> str: ...

    @property
    def collections(self) -> Sequence[str]: ...

    async def apply(self, docs: DocumentBatch, event: StoredEvent) -> None: ...


class KnownDocs:
    """The documents as they are at the runner's checkpoint, kept between batches.

    Valid because projections are deterministic and every commit checks the checkpoint: whoever
    committed up to a position wrote the same documents. At checkpoint 0 nothing exists yet, so
    a rebuild reads nothing at all (`complete`).
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._docs: dict[DocKey, Doc | None] = {}
        self.complete = False

    def lookup(self, key: DocKey) -> tuple[bool, Doc | None]:
        if key in self._docs:
            return True, self._docs[key]
        return self.complete, None

    def remember(self, key: DocKey, doc: Doc | None) -> None:
        self._docs[key] = doc

    def forget(self, *, complete: bool = False) -> None:
        self._docs.clear()
        self.complete = complete

    def committed(self, changes: dict[DocKey, Doc | None]) -> None:
        for key, doc in changes.items():
            # A JSON copy: what the database holds, and no alias the projection may still change.
            self._docs[key] = None if doc is None else json.loads(json.dumps(doc))
        if len(self._docs) > self._limit:
            self.forget()


class DocumentBatch:
    """One batch's unit of work: reads (once per key) and pending writes of documents.

    get() returns the batch's working copy: change it only to put() it back.
    """

    def __init__(self, models: ReadModels, known: KnownDocs) -> None:
        self._models = models
        self._known = known
        self.changes: dict[DocKey, Doc | None] = {}

    async def get(self, collection: str, key: str) -> Doc | None:
        doc_key = (collection, key)
        if doc_key in self.changes:
            return self.changes[doc_key]
        found, doc = self._known.lookup(doc_key)
        if not found:
            doc = await self._models.get(collection, key)
            self._known.remember(doc_key, doc)
        return doc

    def put(self, collection: str, key: str, doc: Doc) -> None:
        self.changes[(collection, key)] = doc

    def delete(self, collection: str, key: str) -> None:
        self.changes[(collection, key)] = None


class ProjectionRunner:
    """Applies the log to one projection: catch up, follow, or rebuild from position 0."""

    def __init__(
        self,
        store: LogWithReadModels,
        projection: Projection,
        batch: int = 1000,
        *,
        cache_limit: int = 100_000,
    ) -> None:
        self._store = store
        self._projection = projection
        self._batch = batch
        self._known = KnownDocs(cache_limit)
        self._checkpoint: int | None = None
        self._turn = asyncio.Lock()  # callers may share a runner: one batch at a time
        self._log = log.bind(projection=projection.name)

    async def catch_up(self) -> int:
        """Apply every event up to the log's current end; returns how many this runner applied."""
        async with self._turn:
            return await self._catch_up()

    async def run(self) -> None:
        """Catch up, then follow the log for ever."""
        while True:
            async with self._turn:
                await self._catch_up()
                after = self._checkpoint or 0
            await self._follow(after)

    async def rebuild(self) -> int:
        """Drop the projection's documents and checkpoint, then apply the log from position 0."""
        async with self._turn:
            self._log.info("projection.rebuild_started")
            await self._store.reset(self._projection.name, self._projection.collections)
            self._checkpoint = None
            return await self._catch_up()

    async def lag(self) -> int:
        """Events in the log this projection has not applied yet (for /metrics)."""
        position = await self._store.checkpoint(self._projection.name)
        return max(0, await self._store.last_position() - position)

    async def _catch_up(self) -> int:
        end = await self._store.last_position()
        checkpoint = await self._load_checkpoint()
        applied = 0
        reading = self._read_after(checkpoint)
        try:
            while checkpoint < end:
                events = await reading
                if not events:
                    break
                # Read the next batch while this one is applied and committed.
                reading = self._read_after(events[-1].position)
                if await self._apply(events):
                    applied += len(events)
                else:
                    reading.cancel()
                    reading = self._read_after(self._checkpoint or 0)
                checkpoint = self._checkpoint or 0
        finally:
            reading.cancel()
            await asyncio.wait({reading})  # unlike awaiting it, keeps our own cancellation
            if not reading.cancelled():
                reading.exception()  # retrieved: a read past the end is not needed
        return applied

    def _read_after(self, position: int) -> asyncio.Task[list[StoredEvent]]:
        return asyncio.ensure_future(self._store.read_all(after=position, limit=self._batch))

    async def _follow(self, after: int) -> None:
        """Apply new batches as they come, until the checkpoint moves under the subscription
        (another runner, or a catch-up or rebuild through this one)."""
        subscription = self._store.subscribe(after=after, batch=self._batch)
        try:
            async for events in subscription:
                if not events:
                    continue
                async with self._turn:
                    if self._checkpoint != after or not await self._apply(events):
                        return
                after = events[-1].position
        finally:
            if isinstance(subscription, AsyncGenerator):
                await subscription.aclose()

    async def _load_checkpoint(self) -> int:
        checkpoint = await self._store.checkpoint(self._projection.name)
        if checkpoint != self._checkpoint:
            self._known.forget(complete=checkpoint == 0)
            self._checkpoint = checkpoint
        return checkpoint

    async def _apply(self, events: list[StoredEvent]) -> bool:
        """Apply and commit one batch; False if another runner moved the checkpoint first."""
        expected = self._checkpoint or 0
        docs = await self._fold(events)
        try:
            await self._store.commit(
                self._projection.name, expected, events[-1].position, docs.changes
            )
        except WrongExpectedVersion:
            self._log.info("projection.checkpoint_moved", expected=expected)
            self._checkpoint = None
            await self._load_checkpoint()
            return False
        except BaseException:
            self._untrusted()
            raise
        self._committed(events[-1].position, docs)
        return True

    async def _fold(self, events: Sequence[StoredEvent]) -> DocumentBatch:
        """The batch's document changes, not committed yet."""
        docs = DocumentBatch(self._store, self._known)
        try:
            for event in events:
                await self._projection.apply(docs, event)
        except BaseException:
            self._untrusted()
            raise
        return docs

    def _committed(self, position: int, docs: DocumentBatch) -> None:
        self._checkpoint = position
        self._known.committed(docs.changes)

    def _untrusted(self) -> None:
        # The projection may have changed cached documents in place: trust none of them, and
        # load the checkpoint again.
        self._known.forget()
        self._checkpoint = None


async def catch_up_together(
    store: LogWithReadModels,
    runners: Sequence[ProjectionRunner],
    *,
    batch: int = 1000,
    given: tuple[int, list[StoredEvent]] | None = None,
) -> int:
    """Catch the runners up to the log's end from one read of the log per batch, and one commit
    of the batch for all of them (one transaction). Returns the position they all reached.
    `given`: events a subscription already read after a position, used instead of a read if
    that is where the runners stand."""
    async with contextlib.AsyncExitStack() as turns:
        for runner in runners:  # always in this order: two callers never wait for each other
            await turns.enter_async_context(runner._turn)
        while True:
            after = await _lowest_checkpoint(runners)
            if given is not None and given[0] == after:
                events = given[1]
            else:
                events = await store.read_all(after=after, limit=batch)
            given = None
            if not events:
                return after
            if await _apply_together(store, runners, events) and len(events) < batch:
                return await _lowest_checkpoint(runners)


async def _lowest_checkpoint(runners: Sequence[ProjectionRunner]) -> int:
    # A checkpoint known from the runner's own last commit is not read again: were it moved by
    # someone else meanwhile, the next commit finds out.
    for runner in runners:
        if runner._checkpoint is None:
            await runner._load_checkpoint()
    return min((runner._checkpoint or 0 for runner in runners), default=0)


async def _apply_together(
    store: LogWithReadModels, runners: Sequence[ProjectionRunner], events: list[StoredEvent]
) -> bool:
    """Fold the events into every runner behind them; False if a checkpoint moved first."""
    behind = [(r, [e for e in events if e.position > (r._checkpoint or 0)]) for r in runners]
    behind = [(runner, mine) for runner, mine in behind if mine]
    try:
        # Every fold ends before this goes on (return_exceptions): none still changes documents.
        folds = await asyncio.gather(*(r._fold(e) for r, e in behind), return_exceptions=True)
        docs = [fold for fold in folds if isinstance(fold, DocumentBatch)]
        if len(docs) < len(folds):
            raise next(fold for fold in folds if isinstance(fold, BaseException))
        await store.commit_many(
            [
                (r._projection.name, r._checkpoint or 0, mine[-1].position, batch.changes)
                for (r, mine), batch in zip(behind, docs, strict=True)
            ]
        )
    except BaseException as error:
        for runner, _ in behind:  # none of their folds was committed
            runner._untrusted()
        if not isinstance(error, WrongExpectedVersion):
            raise
        log.info("projection.checkpoint_moved", projection=error.stream)
        return False
    for (runner, mine), batch in zip(behind, docs, strict=True):
        runner._committed(mine[-1].position, batch)
    return True
