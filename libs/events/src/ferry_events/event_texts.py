"""The exact texts a store keeps and hashes for new events, and the walk of a whole log in
batches: the parts both stores share, so both produce the same chain."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any

import pydantic_core
from pydantic import TypeAdapter

from ferry_events.chain import canonical_json
from ferry_events.envelope import Metadata, NewEvent, StoredEvent

_STORED_EVENTS = TypeAdapter(list[StoredEvent])
COLUMNS = (
    "position, stream, version, event_id, type, schema_version, data, metadata, recorded_at, hash"
)


def data_texts(events: Sequence[NewEvent]) -> list[str]:
    return [canonical_json(event.data) for event in events]


def metadata_texts(events: Sequence[NewEvent]) -> list[str]:
    """Canonical metadata of each event, dumped once per distinct object (a batch shares one)."""
    texts: dict[int, str] = {}
    for event in events:
        if id(event.metadata) not in texts:
            dumped = event.metadata.model_dump(mode="json", exclude_none=True)
            texts[id(event.metadata)] = canonical_json(dumped)
    return [texts[id(event.metadata)] for event in events]


def stored_events(rows: Iterable[Iterable[Any]]) -> list[StoredEvent]:
    """Rows of COLUMNS, data and metadata as JSON text, to StoredEvents. Reading the log is the
    hot path of every rebuild: JSON is parsed by pydantic-core, each distinct metadata text once
    per batch (a batch written together shares one), and the batch is validated in one call."""
    metadata: dict[str, Metadata] = {}
    fields = []
    for position, stream, version, event_id, type_, schema_version, data, meta, at, hash_ in rows:
        if meta not in metadata:
            metadata[meta] = Metadata.model_validate_json(meta)
        fields.append(
            {
                "position": position,
                "stream": stream,
                "version": version,
                "event_id": event_id,
                "type": type_,
                "schema_version": schema_version,
                "data": pydantic_core.from_json(data),
                "metadata": metadata[meta],
                "recorded_at": at,
                "hash": hash_,
            }
        )
    return _STORED_EVENTS.validate_python(fields)


async def all_batches(
    read_all: Callable[[int, int], Awaitable[list[StoredEvent]]], size: int = 1000
) -> AsyncIterator[list[StoredEvent]]:
    """Every stored event in global order, `size` at a time (what verify() walks)."""
    after = 0
    while events := await read_all(after, size):
        yield events
        after = events[-1].position
