"""Scratch read models: the API's projections folded from the log into memory, for audits
(rebuild to compare with the live read models, or replay up to a moment)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from typing import Any

from ferry_events.envelope import StoredEvent
from ferry_events.projection import DocumentBatch, KnownDocs, Projection
from ferry_events.store import DocKey, EventStore

from ferry_api.readmodels import all_projections

Doc = dict[str, Any]
BATCH = 1000


class ScratchModels:
    """Documents in a dict, keyed like the store's documents table; nothing is ever cached
    by the projections here, so every read is a fresh JSON copy."""

    def __init__(self) -> None:
        self.docs: dict[DocKey, Doc] = {}

    async def get(self, collection: str, key: str) -> Doc | None:
        doc = self.docs.get((collection, key))
        return None if doc is None else json.loads(json.dumps(doc))

    def commit(self, changes: Mapping[DocKey, Doc | None]) -> None:
        for key, doc in changes.items():
            if doc is None:
                self.docs.pop(key, None)
            else:
                self.docs[key] = json.loads(json.dumps(doc))

    def collection(self, name: str) -> list[tuple[str, Doc]]:
        """(key, document) of a collection, ordered by key bytewise as the stores order it."""
        rows = [(key, doc) for (coll, key), doc in self.docs.items() if coll == name]
        return sorted(rows, key=lambda row: row[0].encode())


async def log_batches(
    store: EventStore, until: int, after: int = 0, batch: int = BATCH
) -> AsyncIterator[list[StoredEvent]]:
    """The log from `after` up to position `until`, in batches."""
    while after < until:
        events = [e for e in await store.read_all(after=after, limit=batch) if e.position <= until]
        if not events:
            return
        yield events
        after = events[-1].position


async def fold(
    batches: AsyncIterator[Iterable[StoredEvent]],
    limits: Mapping[str, int],
    on_batch: Callable[[int], None] | None = None,
) -> tuple[ScratchModels, list[Projection]]:
    """Apply the projections to the events; each projection only up to its limit position."""
    models = ScratchModels()
    projections = [p for p in all_projections() if p.name in limits]
    async for events in batches:
        chunk = list(events)
        for projection in projections:
            mine = [e for e in chunk if e.position <= limits[projection.name]]
            if mine:
                await _apply(models, projection, mine)
        if on_batch is not None and chunk:
            on_batch(chunk[-1].position)
    return models, projections


async def _apply(
    models: ScratchModels, projection: Projection, events: Sequence[StoredEvent]
) -> None:
    known = KnownDocs(0)
    # DocumentBatch only calls get() on its read models.
    docs = DocumentBatch(models, known)  # type: ignore[arg-type]
    for event in events:
        await projection.apply(docs, event)
    models.commit(docs.changes)
