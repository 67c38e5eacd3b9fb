"""Names in the log, defined once: a ticket's stream, an app's, a user's; the process manager's
checkpoint. And what an app's stream says: which ticket's tree the staging workspace holds,
which release numbers are taken. Pure: it reads events it is given.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from ferry_events.envelope import StoredEvent
from ferry_events.registry import Event
from ferry_events.schemas import StagingCompleted, StagingTaken, VersionAllocated

TICKET_PREFIX = "ticket-"
PROCESS_CHECKPOINT = "process"  # the process manager's position in the log
SYSTEM_ACTOR = "ferry"  # the system, in the audit log's "who"
# Facts about the trust boundary, each on a stream of its own and never on a ticket's, so that
# a forged command or report cannot move the ticket it names (workers/report_senders.py).
REFUSED_COMMANDS = "refused-commands"  # agent.command_refused: what agents would not obey
REJECTED_REPORTS = "rejected-reports"  # report.rejected: reports from a sender who may not say them

StagingHolder = tuple[str, str]
"""(ticket_id, tree) that an app's staging workspace holds."""

E = TypeVar("E", bound=Event)


def ticket_stream(ticket_id: str) -> str:
    return f"{TICKET_PREFIX}{ticket_id}"


def app_stream(app: str) -> str:
    return f"app-{app}"


def user_stream(username: str) -> str:
    return f"user-{username}"


def staging_holder(
    app_events: Sequence[StoredEvent], ticket_events: Sequence[StoredEvent] = ()
) -> StagingHolder | None:
    """(ticket, tree) the app's staging workspace holds: its latest StagingTaken; or, if the
    ticket's own latest StagingCompleted was recorded after that, the ticket's (report ingest
    appends its StagingTaken right behind it, so no other staging came in between)."""
    taken = _latest(app_events, StagingTaken)
    completed = _latest(ticket_events, StagingCompleted)
    if completed is not None and (taken is None or completed[0].position > taken[0].position):
        return completed[1].ticket_id, completed[1].tree
    return None if taken is None else (taken[1].ticket_id, taken[1].tree)


def allocations(app_events: Sequence[StoredEvent]) -> dict[int, str]:
    """Release version -> the ticket it was allocated to."""
    found: dict[int, str] = {}
    for event in app_events:
        payload = event.payload()
        if isinstance(payload, VersionAllocated):
            found[payload.version] = payload.ticket_id
    return found


def _latest(events: Sequence[StoredEvent], kind: type[E]) -> tuple[StoredEvent, E] | None:
    for event in reversed(events):
        payload = event.payload()
        if isinstance(payload, kind):
            return event, payload
    return None
