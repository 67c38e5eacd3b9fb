"""Tag deadlines, as sync_deadlines.py has for hosts: a publish whose ReleaseTagRequested got no
report within FERRY_TAG_DEADLINE_SECONDS (the publisher is down, or its queue is stuck) gets a
ReleaseTagFailed, so the ticket settles in publish_failed with a reason instead of `publishing`
for ever, and the author may retry.

The failure is appended as the publisher's report would be (any expected version; actor "ferry"),
so the fold treats it as a real one: a late ReleaseTagged of that request is recorded and changes
nothing, and a retry asks for the tag again. Its event id derives from the request's, so every API
replica and every restart appends it once (DuplicateEvent: already done).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from ferry_events.envelope import Metadata, NewEvent, StoredEvent
from ferry_events.schemas import ReleaseTagFailed, ReleaseTagRequested
from ferry_events.store import DuplicateEvent

from ferry_api.commands.loading import load_ticket
from ferry_api.domain import Ticket
from ferry_api.domain.streams import SYSTEM_ACTOR, ticket_stream
from ferry_api.readmodels.tickets import TICKETS
from ferry_api.runtime import Runtime

log = structlog.get_logger()

PAGE = 100
LONGEST_PAUSE = 5.0  # seconds between scans at most, whatever the deadline


@dataclass(frozen=True)
class Overdue:
    """A tag request past its deadline, and the failure that answers it."""

    request: StoredEvent
    failure: ReleaseTagFailed

    @property
    def event_id(self) -> uuid.UUID:
        return uuid.uuid5(self.request.event_id, "tag-deadline")


async def run(runtime: Runtime) -> None:
    """Scan for overdue tag requests for ever, a few times per deadline."""
    pause = min(max(runtime.settings.tag_deadline_seconds / 4, 0.2), LONGEST_PAUSE)
    while True:
        await expire_overdue(runtime)
        await asyncio.sleep(pause)


async def expire_overdue(runtime: Runtime, now: datetime | None = None) -> int:
    """Append a ReleaseTagFailed for every overdue tag request; how many were new."""
    now = now or datetime.now(UTC)
    timeout = timedelta(seconds=runtime.settings.tag_deadline_seconds)
    appended = 0
    for ticket_id in await _awaiting_a_tag(runtime):
        loaded = await load_ticket(runtime.store, ticket_id)
        late = overdue(loaded.ticket, loaded.events, now, timeout)
        if late is not None:
            appended += await _append_failure(runtime, late)
    return appended


def overdue(
    ticket: Ticket, events: Sequence[StoredEvent], now: datetime, timeout: timedelta
) -> Overdue | None:
    """The ticket's current tag request if it is still unanswered `timeout` after it was made."""
    if ticket.state != "publishing" or ticket.digest is not None or ticket.version is None:
        return None
    request = _current_request(events, ticket.version)
    if request is None or now - request.recorded_at < timeout:
        return None  # a rollback asks for no tag: its release exists
    seconds = f"{timeout.total_seconds():g}"
    failure = ReleaseTagFailed(
        ticket_id=ticket.id,
        app=ticket.app,
        version=ticket.version,
        reason=f"no report from the publisher within {seconds} s of the tag request: "
        "is it running?",
    )
    return Overdue(request, failure)


def _current_request(events: Sequence[StoredEvent], version: int) -> StoredEvent | None:
    """The latest tag request of the version: a retry's replaces the one that failed."""
    for event in reversed(events):
        payload = event.payload()
        if isinstance(payload, ReleaseTagRequested) and payload.version == version:
            return event
    return None


async def _awaiting_a_tag(runtime: Runtime) -> list[str]:
    """Tickets the read model shows publishing without a digest yet (the stream decides)."""
    found: list[str] = []
    offset = 0
    while True:
        docs = await runtime.store.find(
            TICKETS, {"state": "publishing"}, order_by="seq", limit=PAGE, offset=offset
        )
        found += [doc["id"] for doc in docs if doc.get("digest") is None]
        if len(docs) < PAGE:
            return found
        offset += PAGE


async def _append_failure(runtime: Runtime, late: Overdue) -> int:
    failure = late.failure
    bound = log.bind(ticket_id=failure.ticket_id, app=failure.app, version=failure.version)
    metadata = Metadata(
        actor=SYSTEM_ACTOR,
        causation_id=str(late.request.event_id),
        correlation_id=late.request.metadata.correlation_id,
    )
    try:
        await runtime.store.append(
            ticket_stream(failure.ticket_id), [NewEvent.of(failure, metadata, late.event_id)], None
        )
    except DuplicateEvent:
        bound.info("tag deadline already recorded")
        return 0
    bound.warning("publisher missed its tag deadline", reason=failure.reason)
    return 1
