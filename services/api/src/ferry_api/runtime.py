"""What the commands, workers and routes work with: the Runtime, a small bundle of the API's
ports (settings, the store, the bus, the read models' projector, metrics, the command signer).
It imports no worker; bootstrap.py builds it and starts the workers.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from ferry_events.bus import Bus
from ferry_events.envelope import Metadata, NewEvent, StoredEvent
from ferry_events.projection import LogWithReadModels
from ferry_events.registry import Event
from ferry_events.signing import CommandSigner

from ferry_api.metrics import IngestStats, Metrics
from ferry_api.readmodels.projector import Projector
from ferry_api.settings import Settings

Store = LogWithReadModels
"""The event log with its read models (documents, checkpoints): both store backends are one."""

APPEND_ATTEMPTS = 20  # re-reads of a stream that other appends keep moving


@dataclass
class Runtime:
    settings: Settings
    store: Store
    bus: Bus
    projector: Projector
    metrics: Metrics = field(default_factory=Metrics)
    ingest: IngestStats = field(default_factory=IngestStats)
    started_at: float = field(default_factory=time.time)
    signer: CommandSigner | None = None  # the relay signs every command with it

    async def append(
        self,
        stream: str,
        events: Sequence[Event],
        expected_version: int | None,
        *,
        actor: str | None = None,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        event_ids: Sequence[uuid.UUID] | None = None,
        wait: bool = True,
    ) -> list[StoredEvent]:
        """Append payloads with who/why metadata; by default wait until the read models
        have seen them, so the caller reads its own writes."""
        metadata = Metadata(actor=actor, correlation_id=correlation_id, causation_id=causation_id)
        ids = list(event_ids) if event_ids else [uuid.uuid4() for _ in events]
        stored = await self.store.append(
            stream,
            [NewEvent.of(e, metadata, i) for e, i in zip(events, ids, strict=True)],
            expected_version,
        )
        if wait and stored:
            await self.projector.caught_up(stored[-1].position)
        return stored
