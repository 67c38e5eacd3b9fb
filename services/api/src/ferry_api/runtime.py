"""The one place that wires the API's adapters and background workers (cosmicpython's bootstrap).

`running(settings)` opens the store and the bus, starts the workers (relay, read models, process
manager, report ingest, heartbeats, host-sync deadlines) as tasks, and closes everything on exit.
Routes reach it through deps.RuntimeDep; nothing is created at import time.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import structlog
from ferry_events.backends import open_bus, open_store
from ferry_events.bus import Bus
from ferry_events.envelope import Metadata, NewEvent, StoredEvent
from ferry_events.registry import Event

from ferry_api.app_config import declare_known_host_queues
from ferry_api.heartbeats import declare_heartbeat_queue
from ferry_api.metrics import Metrics
from ferry_api.settings import Settings
from ferry_api.views import Views

if TYPE_CHECKING:
    from ferry_events.store_postgres import PostgresEventStore
    from ferry_events.store_sqlite import SqliteEventStore

    Store = PostgresEventStore | SqliteEventStore

log = structlog.get_logger()

Worker = Callable[["Runtime"], Awaitable[None]]


@dataclass
class Runtime:
    settings: Settings
    store: Store
    bus: Bus
    views: Views
    metrics: Metrics = field(default_factory=Metrics)
    started_at: float = field(default_factory=time.time)

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
            await self.views.caught_up(stored[-1].position)
        return stored


def workers() -> list[Worker]:
    """The background work of an API process, in one explicit list."""
    from ferry_events.relay import Relay

    from ferry_api import heartbeats, process, reports, sync_deadlines, webhooks

    async def relay(rt: Runtime) -> None:
        await Relay(rt.store, rt.bus).run()

    async def views(rt: Runtime) -> None:
        await rt.views.run()

    return [
        relay,
        views,
        process.run,
        reports.run,
        heartbeats.run,
        sync_deadlines.run,
        webhooks.run,
    ]


async def declare_queues(runtime: Runtime) -> None:
    """Queues that must exist before anyone publishes: agents' heartbeats, hosts' commands."""
    await declare_heartbeat_queue(runtime)
    await declare_known_host_queues(runtime)


@contextlib.asynccontextmanager
async def running(settings: Settings, *, start_workers: bool = True) -> AsyncIterator[Runtime]:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = await open_store(settings.store_url())
    if settings.migrate_on_start:
        await store.migrate()
    bus = await open_bus(settings.broker_url)
    runtime = Runtime(settings, store, bus, Views(store))
    tasks: list[asyncio.Task[None]] = []
    try:
        if start_workers:
            await declare_queues(runtime)
            tasks = [asyncio.create_task(_supervised(w, runtime)) for w in workers()]
        yield runtime
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await bus.close()
        await store.close()


async def _supervised(worker: Worker, runtime: Runtime) -> None:
    """Restart a crashed worker after a pause: one bad event must not stop the API's work."""
    name = getattr(worker, "__module__", "") + "." + getattr(worker, "__name__", "worker")
    while True:
        try:
            await worker(runtime)
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("worker crashed; restarting in 1 s", worker=name)
            await asyncio.sleep(1)
