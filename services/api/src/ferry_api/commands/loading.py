"""What a command decides on: a ticket replayed from its stream (`ticket-<id>`), with the stream
version it was read at, and an app's configuration."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ferry_events.envelope import StoredEvent

from ferry_api import domain
from ferry_api.domain.errors import NotFound
from ferry_api.domain.streams import ticket_stream
from ferry_api.readmodels.apps import APPS
from ferry_api.runtime import Store


@dataclass(frozen=True)
class Loaded:
    """A ticket as its stream leaves it, and the stream version it was read at."""

    ticket: domain.Ticket
    version: int
    events: list[StoredEvent]


async def load_ticket(store: Store, ticket_id: str) -> Loaded:
    events = await store.read_stream(ticket_stream(ticket_id))
    if not events:
        raise NotFound(f"no ticket {ticket_id}")
    return replayed(events)


def replayed(events: list[StoredEvent]) -> Loaded:
    """A ticket from its whole stream, as read or as just appended."""
    ticket = domain.replay(event.payload() for event in events)
    return Loaded(ticket, events[-1].version, events)


async def load_app(store: Store, app: str) -> dict[str, Any]:
    doc = await store.get(APPS, app)
    if doc is None:
        raise NotFound(f"no app {app}")
    return doc
