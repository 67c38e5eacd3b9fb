"""The "tickets" read model: one document per ticket, the fold of domain/history.py as JSON,
filterable by app, state and author; `seq` (the submit's log position) orders it newest first.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import structlog
from ferry_events.envelope import StoredEvent
from ferry_events.projection import DocumentBatch

from ferry_api.domain import Comment, HostProgress, Ticket, evolve
from ferry_api.domain.streams import TICKET_PREFIX

log = structlog.get_logger()

TICKETS = "tickets"
_TICKET_FIELDS = {f.name for f in dataclasses.fields(Ticket)}


def ticket_document(
    ticket: Ticket, *, seq: int, created_at: str, updated_at: str
) -> dict[str, Any]:
    """The ticket as JSON: every field of Ticket, plus when it was filed and last changed."""
    doc = dataclasses.asdict(ticket)
    doc["submitters"] = list(ticket.submitters)
    doc["comments"] = [dataclasses.asdict(comment) for comment in ticket.comments]
    doc["hosts"] = {host: dataclasses.asdict(row) for host, row in sorted(ticket.hosts.items())}
    return {**doc, "seq": seq, "created_at": created_at, "updated_at": updated_at}


def ticket_from_document(doc: dict[str, Any]) -> Ticket:
    """Inverse of ticket_document (fields added to Ticket later take their defaults)."""
    values = {name: value for name, value in doc.items() if name in _TICKET_FIELDS}
    values["submitters"] = tuple(values.get("submitters", ()))
    values["comments"] = tuple(Comment(**comment) for comment in values.get("comments", ()))
    values["hosts"] = {host: HostProgress(**row) for host, row in values.get("hosts", {}).items()}
    return Ticket(**values)


def when(at: datetime) -> str:
    return at.isoformat()


def next_document(doc: dict[str, Any] | None, event: StoredEvent) -> dict[str, Any] | None:
    """The ticket's document after `event`, or None if the event left the ticket as it was."""
    before = ticket_from_document(doc) if doc else None
    ticket = evolve(before, event.payload())
    at = when(event.recorded_at)
    if doc is None:
        return ticket_document(ticket, seq=event.position, created_at=at, updated_at=at)
    if ticket == before:
        return None
    return ticket_document(ticket, seq=doc["seq"], created_at=doc["created_at"], updated_at=at)


def stream_document(events: Sequence[StoredEvent]) -> dict[str, Any]:
    """The document the projection holds once it has applied the whole stream."""
    doc: dict[str, Any] | None = None
    for event in events:
        doc = next_document(doc, event) or doc
    if doc is None:
        raise ValueError("a ticket's stream has at least its ticket.submitted")
    return doc


class TicketsProjection:
    name = "tickets"
    collections: Sequence[str] = (TICKETS,)

    async def apply(self, docs: DocumentBatch, event: StoredEvent) -> None:
        if not event.stream.startswith(TICKET_PREFIX):
            return
        key = event.stream.removeprefix(TICKET_PREFIX)
        try:
            doc = next_document(await docs.get(TICKETS, key), event)
        except ValueError as error:  # a stream that does not start with ticket.submitted
            log.error("ticket.unreadable", ticket_id=key, error=str(error))
            return
        if doc is not None:
            docs.put(TICKETS, key, doc)
