"""The hash chain over the global log, computed identically by every store.

link(n) = sha256(bytes(link(n-1)) || canonical(event n)); the first link follows 32 zero bytes.
Postgres computes the link inside its append function from the same canonical text; this module
is the reference and what verify() uses.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime
from typing import Any

from ferry_events.envelope import StoredEvent
from ferry_events.store import ChainReport

GENESIS = "0" * 64
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"  # Postgres: to_char(.., 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')


def canonical_json(value: Any) -> str:
    """Stable JSON: sorted keys, no spaces, UTF-8 kept. Stores keep exactly this text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def format_time(at: datetime) -> str:
    return at.astimezone(UTC).strftime(TIME_FORMAT)


def canonical_event(
    event_id: str,
    stream: str,
    version: int,
    type_: str,
    schema_version: int,
    recorded_at: str,
    data_json: str,
    metadata_json: str,
) -> str:
    return "\n".join(
        [
            event_id,
            stream,
            str(version),
            type_,
            str(schema_version),
            recorded_at,
            data_json,
            metadata_json,
        ]
    )


def link(previous: str, canonical: str) -> str:
    return hashlib.sha256(bytes.fromhex(previous) + canonical.encode()).hexdigest()


def expected_hash(previous: str, event: StoredEvent) -> str:
    return link(
        previous,
        canonical_event(
            str(event.event_id),
            event.stream,
            event.version,
            event.type,
            event.schema_version,
            format_time(event.recorded_at),
            canonical_json(event.data),
            canonical_json(event.metadata.model_dump(mode="json", exclude_none=True)),
        ),
    )


async def walk(batches: AsyncIterator[Iterable[StoredEvent]]) -> ChainReport:
    """Check density of positions and every link; name the first event that breaks either."""
    previous, expected_position, count = GENESIS, 1, 0
    async for batch in batches:
        for event in batch:
            if event.position != expected_position:
                problem = (
                    f"position {expected_position} is missing (deleted)"
                    if event.position > expected_position
                    else "position out of order"
                )
                return ChainReport(False, count, expected_position, str(event.event_id), problem)
            if expected_hash(previous, event) != event.hash:
                problem = "content or order differs from what was appended (modified or reordered)"
                return ChainReport(False, count, event.position, str(event.event_id), problem)
            previous, expected_position, count = event.hash, expected_position + 1, count + 1
    return ChainReport(True, count)
