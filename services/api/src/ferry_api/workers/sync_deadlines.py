"""Host-sync deadlines: a host that has not reported FERRY_SYNC_TIMEOUT_SECONDS after its
HostSyncRequested gets a HostSyncFailed, so a publish to a host whose agent is down settles.

The failure is appended as an agent's report is (any expected version), so the process manager
settles the publish exactly as for a real failure, and a late real report of that attempt is
recorded and ignored by the fold. Its event id derives from the request's, so every API replica
and every restart appends it once (DuplicateEvent: already done).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from ferry_events.envelope import Metadata, NewEvent, StoredEvent
from ferry_events.schemas import HostSyncFailed, HostSyncRequested
from ferry_events.store import DuplicateEvent

from ferry_api.commands.loading import load_ticket
from ferry_api.domain import Ticket
from ferry_api.domain.streams import SYSTEM_ACTOR, ticket_stream
from ferry_api.readmodels.tickets import TICKETS
from ferry_api.runtime import Runtime

log = structlog.get_logger()

ACTOR = SYSTEM_ACTOR
PAGE = 100
LONGEST_PAUSE = 5.0  # seconds between scans at most, whatever the deadline


@dataclass(frozen=True)
class Overdue:
    """A host's pending sync request, past its deadline, and the failure that answers it."""

    request: StoredEvent
    failure: HostSyncFailed

    @property
    def event_id(self) -> uuid.UUID:
        return uuid.uuid5(self.request.event_id, "deadline")


async def run(runtime: Runtime) -> None:
    """Scan for overdue hosts for ever, a few times per deadline."""
    pause = min(max(runtime.settings.sync_timeout_seconds / 4, 0.2), LONGEST_PAUSE)
    while True:
        await expire_overdue(runtime)
        await asyncio.sleep(pause)


async def expire_overdue(runtime: Runtime, now: datetime | None = None) -> int:
    """Append a HostSyncFailed for every overdue host of a publishing ticket; how many were new."""
    now = now or datetime.now(UTC)
    timeout = timedelta(seconds=runtime.settings.sync_timeout_seconds)
    appended = 0
    for ticket_id in await _publishing_with_syncing_hosts(runtime):
        loaded = await load_ticket(runtime.store, ticket_id)
        for late in overdue(loaded.ticket, loaded.events, now, timeout):
            appended += await _append_failure(runtime, late)
    return appended


def overdue(
    ticket: Ticket, events: Sequence[StoredEvent], now: datetime, timeout: timedelta
) -> list[Overdue]:
    """Hosts still syncing whose current request was recorded `timeout` or longer before now."""
    if ticket.state != "publishing":
        return []
    found: list[Overdue] = []
    for host, row in sorted(ticket.hosts.items()):
        if row.state != "syncing":
            continue
        request = _request_of(events, host, row.attempt)
        if request is None or now - request.recorded_at < timeout:
            continue
        seconds = f"{timeout.total_seconds():g}"
        failure = HostSyncFailed(
            ticket_id=ticket.id,
            app=ticket.app,
            host=host,
            version=row.version,
            reason=f"no report from {host} within {seconds} s: is its agent running?",
            attempt=row.attempt,
        )
        found.append(Overdue(request, failure))
    return found


def _request_of(events: Sequence[StoredEvent], host: str, attempt: int) -> StoredEvent | None:
    """The request the host's row follows: the first of its (host, attempt), as the fold took it."""
    for event in events:
        payload = event.payload()
        if (
            isinstance(payload, HostSyncRequested)
            and payload.host == host
            and payload.attempt == attempt
        ):
            return event
    return None


async def _publishing_with_syncing_hosts(runtime: Runtime) -> list[str]:
    """Tickets the read model shows publishing with a host still syncing (the stream decides)."""
    found: list[str] = []
    offset = 0
    while True:
        docs = await runtime.store.find(
            TICKETS, {"state": "publishing"}, order_by="seq", limit=PAGE, offset=offset
        )
        found += [
            doc["id"]
            for doc in docs
            if any(row["state"] == "syncing" for row in doc["hosts"].values())
        ]
        if len(docs) < PAGE:
            return found
        offset += PAGE


async def _append_failure(runtime: Runtime, late: Overdue) -> int:
    failure = late.failure
    bound = log.bind(
        ticket_id=failure.ticket_id,
        app=failure.app,
        host=failure.host,
        version=failure.version,
        attempt=failure.attempt,
    )
    metadata = Metadata(
        actor=ACTOR,
        causation_id=str(late.request.event_id),
        correlation_id=late.request.metadata.correlation_id,
    )
    try:
        await runtime.store.append(
            ticket_stream(failure.ticket_id), [NewEvent.of(failure, metadata, late.event_id)], None
        )
    except DuplicateEvent:
        bound.info("sync deadline already recorded")
        return 0
    bound.warning("host missed its sync deadline", reason=failure.reason)
    return 1
