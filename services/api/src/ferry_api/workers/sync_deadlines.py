"""Host-sync deadlines: a host that has not reported FERRY_SYNC_TIMEOUT_SECONDS after its
HostSyncRequested gets a HostSyncFailed, so a publish to a host whose agent is down settles.

The failure is appended as an agent's report is (any expected version), so the process manager
settles the publish exactly as for a real failure, and a late real report of that attempt is
recorded and ignored by the fold. Its event id derives from the request's, so every API replica
and every restart appends it once (DuplicateEvent: already done).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from ferry_events.envelope import StoredEvent
from ferry_events.schemas import HostSyncFailed, HostSyncRequested

from ferry_api.commands.loading import load_ticket
from ferry_api.domain import Ticket
from ferry_api.runtime import Runtime
from ferry_api.workers.deadlines import Overdue, publishing_tickets, record_failure, scan_forever


async def run(runtime: Runtime) -> None:
    """Scan for overdue hosts for ever, a few times per deadline."""
    await scan_forever(runtime.settings.sync_timeout_seconds, lambda: expire_overdue(runtime))


async def expire_overdue(runtime: Runtime, now: datetime | None = None) -> int:
    """Append a HostSyncFailed for every overdue host of a publishing ticket; how many were new."""
    now = now or datetime.now(UTC)
    timeout = timedelta(seconds=runtime.settings.sync_timeout_seconds)
    appended = 0
    for ticket_id in await publishing_tickets(runtime, _has_a_syncing_host):
        loaded = await load_ticket(runtime.store, ticket_id)
        for late in overdue(loaded.ticket, loaded.events, now, timeout):
            appended += await record_failure(runtime, late, "host.missed_sync_deadline")
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
        found.append(Overdue(request, failure, "deadline"))
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


def _has_a_syncing_host(doc: dict[str, Any]) -> bool:
    return any(row["state"] == "syncing" for row in doc["hosts"].values())
