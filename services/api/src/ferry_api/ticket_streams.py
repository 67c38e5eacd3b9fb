"""The streams ticket commands read: a ticket's own (`ticket-<id>`, replayed), and its app's
(`app-<name>`: which ticket the staging workspace holds, which release numbers are taken).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ferry_events.envelope import StoredEvent
from ferry_events.schemas import StagingTaken, VersionAllocated

from ferry_api import tickets
from ferry_api.errors import Conflict, NotFound
from ferry_api.tickets import Ticket

if TYPE_CHECKING:
    from ferry_api.runtime import Store

PROCESS_CHECKPOINT = "process"  # the process manager's (process.py) position in the log
PROCESS_WAIT = 5.0  # seconds a command waits for the process manager to reach the log's end
APPEND_ATTEMPTS = 20  # re-reads of an app stream that other appends keep moving


def ticket_stream(ticket_id: str) -> str:
    return f"ticket-{ticket_id}"


def app_stream(app: str) -> str:
    return f"app-{app}"


@dataclass(frozen=True)
class Loaded:
    """A ticket as its stream leaves it, and the stream version it was read at."""

    ticket: Ticket
    version: int
    events: list[StoredEvent]


async def load_ticket(store: Store, ticket_id: str) -> Loaded:
    events = await store.read_stream(ticket_stream(ticket_id))
    if not events:
        raise NotFound(f"no ticket {ticket_id}")
    return replayed(events)


def replayed(events: list[StoredEvent]) -> Loaded:
    """A ticket from its whole stream, as read or as just appended."""
    ticket = tickets.replay(event.payload() for event in events)
    return Loaded(ticket, events[-1].version, events)


async def load_app(store: Store, app: str) -> dict[str, Any]:
    doc = await store.get("apps", app)
    if doc is None:
        raise NotFound(f"no app {app}")
    return doc


def staging_holder(app_events: list[StoredEvent]) -> tickets.StagingHolder | None:
    """(ticket, tree) that the app's staging workspace holds: its latest StagingTaken."""
    for event in reversed(app_events):
        payload = event.payload()
        if isinstance(payload, StagingTaken):
            return payload.ticket_id, payload.tree
    return None


def allocations(app_events: list[StoredEvent]) -> dict[int, str]:
    """Release version -> the ticket it was allocated to."""
    found: dict[int, str] = {}
    for event in app_events:
        payload = event.payload()
        if isinstance(payload, VersionAllocated):
            found[payload.version] = payload.ticket_id
    return found


async def process_reached(store: Store, position: int, waiting_for: str) -> None:
    """Wait until the process manager has reacted to the log up to `position`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PROCESS_WAIT
    while await store.checkpoint(PROCESS_CHECKPOINT) < position:
        if loop.time() > deadline:
            raise Conflict(f"{waiting_for} is still being recorded; try again in a moment")
        await asyncio.sleep(0.02)
