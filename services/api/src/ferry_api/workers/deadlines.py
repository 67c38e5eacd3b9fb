"""What the deadline workers share (sync_deadlines.py for hosts, tag_deadlines.py for the
publisher): the scan loop, the publishing tickets to look at, and recording the failure that
answers an overdue request exactly once across replicas and restarts."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog
from ferry_events.envelope import Metadata, NewEvent, StoredEvent
from ferry_events.registry import Event
from ferry_events.store import DuplicateEvent

from ferry_api.domain.streams import SYSTEM_ACTOR, ticket_stream
from ferry_api.readmodels.tickets import TICKETS
from ferry_api.runtime import Runtime

log = structlog.get_logger()

PAGE = 100
LONGEST_PAUSE = 5.0  # seconds between scans at most, whatever the deadline
LOGGED = ("ticket_id", "app", "host", "version", "attempt")


@dataclass(frozen=True)
class Overdue:
    """A request past its deadline, and the failure that answers it. The failure's id derives
    from the request's (and the kind of deadline), so it is appended once whoever finds it."""

    request: StoredEvent
    failure: Event
    kind: str  # "deadline" (host syncs) or "tag-deadline": part of the failure's id

    @property
    def event_id(self) -> uuid.UUID:
        return uuid.uuid5(self.request.event_id, self.kind)


async def scan_forever(deadline_seconds: float, scan: Callable[[], Awaitable[int]]) -> None:
    """Scan a few times per deadline, for ever."""
    pause = min(max(deadline_seconds / 4, 0.2), LONGEST_PAUSE)
    while True:
        await scan()
        await asyncio.sleep(pause)


async def publishing_tickets(runtime: Runtime, keep: Callable[[dict[str, Any]], bool]) -> list[str]:
    """Ids of the tickets the read model shows publishing that `keep` (the stream decides)."""
    found: list[str] = []
    offset = 0
    while True:
        docs = await runtime.store.find(
            TICKETS, {"state": "publishing"}, order_by="seq", limit=PAGE, offset=offset
        )
        found += [doc["id"] for doc in docs if keep(doc)]
        if len(docs) < PAGE:
            return found
        offset += PAGE


async def record_failure(runtime: Runtime, late: Overdue, missed: str) -> int:
    """Append the failure as its agent's report would be (any expected version, actor "ferry");
    1 if it is new, 0 if a replica or an earlier run recorded it already."""
    failure = late.failure
    fields = failure.model_dump()
    bound = log.bind(**{name: fields[name] for name in LOGGED if name in fields})
    metadata = Metadata(
        actor=SYSTEM_ACTOR,
        causation_id=str(late.request.event_id),
        correlation_id=late.request.metadata.correlation_id,
    )
    stream = ticket_stream(fields["ticket_id"])
    try:
        await runtime.store.append(stream, [NewEvent.of(failure, metadata, late.event_id)], None)
    except DuplicateEvent:
        bound.info(f"{late.kind}.already_recorded")
        return 0
    bound.warning(missed, reason=fields.get("reason"))
    return 1
