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

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from ferry_events.envelope import StoredEvent
from ferry_events.schemas import ReleaseTagFailed, ReleaseTagRequested

from ferry_api.commands.loading import load_ticket
from ferry_api.domain import Ticket
from ferry_api.runtime import Runtime
from ferry_api.workers.deadlines import Overdue, publishing_tickets, record_failure, scan_forever


async def run(runtime: Runtime) -> None:
    """Scan for overdue tag requests for ever, a few times per deadline."""
    await scan_forever(runtime.settings.tag_deadline_seconds, lambda: expire_overdue(runtime))


async def expire_overdue(runtime: Runtime, now: datetime | None = None) -> int:
    """Append a ReleaseTagFailed for every overdue tag request; how many were new."""
    now = now or datetime.now(UTC)
    timeout = timedelta(seconds=runtime.settings.tag_deadline_seconds)
    appended = 0
    for ticket_id in await publishing_tickets(runtime, lambda doc: doc.get("digest") is None):
        loaded = await load_ticket(runtime.store, ticket_id)
        late = overdue(loaded.ticket, loaded.events, now, timeout)
        if late is not None:
            appended += await record_failure(runtime, late, "publisher.missed_tag_deadline")
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
    return Overdue(request, failure, "tag-deadline")


def _current_request(events: Sequence[StoredEvent], version: int) -> StoredEvent | None:
    """The latest tag request of the version: a retry's replaces the one that failed."""
    for event in reversed(events):
        payload = event.payload()
        if isinstance(payload, ReleaseTagRequested) and payload.version == version:
            return event
    return None
