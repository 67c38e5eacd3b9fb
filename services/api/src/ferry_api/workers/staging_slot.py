"""The staging slot: an app's staging workspace holds the tree of its latest StagingCompleted
(in log order, whichever ticket it was for), and StagingTaken on `app-<name>` says so, for
pass-tests to check.

Report ingest appends it right behind the StagingCompleted it records, so pass-tests need not
wait for anyone; the process manager appends the same event (the same id, derived from the
report's) for every StagingCompleted it follows, as the fallback for an ingest cut short in
between. Either finds it already there, or finds the StagingTaken of a later report, and then
appends nothing: an earlier staging never takes the slot back.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import structlog
from ferry_events.envelope import StoredEvent
from ferry_events.schemas import StagingCompleted, StagingTaken
from ferry_events.store import DuplicateEvent, WrongExpectedVersion

from ferry_api.domain.streams import SYSTEM_ACTOR, app_stream, ticket_stream
from ferry_api.runtime import APPEND_ATTEMPTS, Runtime

log = structlog.get_logger()


def staging_taken_id(completed_id: uuid.UUID) -> uuid.UUID:
    """The process manager's id for its "staging-taken" reaction, which this once was."""
    return uuid.uuid5(completed_id, "staging-taken/0")


async def take_staging(runtime: Runtime, completed: StoredEvent) -> None:
    """Append StagingTaken for a recorded StagingCompleted, unless it or a later one is in."""
    staged = completed.payload()
    assert isinstance(staged, StagingCompleted)
    taken = StagingTaken(app=staged.app, ticket_id=staged.ticket_id, tree=staged.tree)
    stream = app_stream(staged.app)
    for _ in range(APPEND_ATTEMPTS):
        events = await runtime.store.read_stream(stream)
        if await _taken_at_or_after(runtime, events, completed):
            return
        try:
            await runtime.append(
                stream,
                [taken],
                events[-1].version if events else 0,
                actor=SYSTEM_ACTOR,
                causation_id=str(completed.event_id),
                correlation_id=completed.metadata.correlation_id,
                event_ids=[staging_taken_id(completed.event_id)],
                wait=False,
            )
        except DuplicateEvent:
            return
        except WrongExpectedVersion:
            continue
        log.info("staging_slot.taken", app=staged.app, ticket_id=staged.ticket_id)
        return
    raise RuntimeError(f"app stream {stream} kept moving; StagingTaken not appended")


async def _taken_at_or_after(
    runtime: Runtime, app_events: Sequence[StoredEvent], completed: StoredEvent
) -> bool:
    """True if the stream has this report's StagingTaken, or one of a report recorded later."""
    mine = staging_taken_id(completed.event_id)
    for event in reversed(app_events):
        if event.position < completed.position:
            return False  # appended before the report: its cause is older still
        if event.event_id == mine:
            return True
        if event.type == StagingTaken.type_name and (
            await _cause_position(runtime, event) > completed.position
        ):
            return True
    return False


async def _cause_position(runtime: Runtime, taken: StoredEvent) -> int:
    """Where the StagingCompleted that a StagingTaken answers sits in the log (0: unknown)."""
    ticket_id = taken.data.get("ticket_id", "")
    for event in await runtime.store.read_stream(ticket_stream(ticket_id)):
        if str(event.event_id) == taken.metadata.causation_id:
            return event.position
    return 0
