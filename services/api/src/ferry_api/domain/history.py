"""The fold (`evolve`, `replay`) that builds a Ticket from its events. Pure: no I/O.

Agent reports are folded only when they answer the current attempt in the current state, so a
redelivered, late or superseded report leaves the ticket as it was.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from ferry_events.registry import Event, UnknownEvent
from ferry_events.schemas import (
    HostSyncCompleted,
    HostSyncFailed,
    HostSyncRequested,
    PublishFailed,
    PublishRequested,
    PublishRetried,
    ReleaseTagFailed,
    ReleaseTagged,
    StagingCompleted,
    StagingFailed,
    StagingRequested,
    StagingStarted,
    TestsPassed,
    TicketApproved,
    TicketCancelled,
    TicketPublished,
    TicketRejected,
    TicketResubmitted,
    TicketReturned,
    TicketSubmitted,
)

from ferry_api.domain.state import Comment, HostProgress, Ticket


def replay(events: Iterable[Event | UnknownEvent]) -> Ticket:
    """The ticket as its whole history (starting with TicketSubmitted) leaves it."""
    ticket: Ticket | None = None
    for event in events:
        ticket = evolve(ticket, event)
    if ticket is None:
        raise ValueError("a ticket's history starts with ticket.submitted; got no events")
    return ticket


def evolve(ticket: Ticket | None, event: Event | UnknownEvent) -> Ticket:
    """Fold one payload in; payloads it does not know, or of other tickets, are ignored."""
    if ticket is None:
        if not isinstance(event, TicketSubmitted):
            raise ValueError(f"a ticket's history starts with ticket.submitted, not {event!r}")
        return _submitted(event)
    fold = _FOLDS.get(type(event)) if isinstance(event, Event) else None
    if fold is None or getattr(event, "ticket_id", None) != ticket.id:
        return ticket
    return fold(ticket, event)


def _submitted(event: TicketSubmitted) -> Ticket:
    return Ticket(
        id=event.ticket_id,
        app=event.app,
        kind=event.kind,
        state="staging_pending" if event.kind == "deploy" else "awaiting_approval",
        author=event.author,
        submitters=(event.author,),
        reason=event.reason,
        ref=event.ref,
        target_version=event.version,
    )


def _with_comment(ticket: Ticket, by: str, action: str, text: str) -> tuple[Comment, ...]:
    return (*ticket.comments, Comment(by, action, text)) if text else ticket.comments


def _resubmitted(ticket: Ticket, event: TicketResubmitted) -> Ticket:
    # A new tree: nothing tested or approved before may carry over to it.
    submitters = (
        ticket.submitters if event.by in ticket.submitters else (*ticket.submitters, event.by)
    )
    return replace(
        ticket,
        state="staging_pending",
        author=event.by,
        submitters=submitters,
        ref=event.ref,
        reason=event.reason,
        staged_commit=None,
        staged_tree=None,
        source_revision=None,
        tested_tree=None,
        tested_by=None,
        approved_by=None,
        error=None,
        comments=_with_comment(ticket, event.by, "resubmit", event.reason),
    )


def _staging_requested(ticket: Ticket, event: StagingRequested) -> Ticket:
    return replace(ticket, staging_attempt=max(ticket.staging_attempt, event.attempt))


def _staging_started(ticket: Ticket, event: StagingStarted) -> Ticket:
    # StagingStarted carries no attempt; a stale one at worst shows 'staging' a moment early.
    return replace(ticket, state="staging") if ticket.state == "staging_pending" else ticket


def _staging_current(ticket: Ticket, attempt: int) -> bool:
    return ticket.state in ("staging_pending", "staging") and attempt == ticket.staging_attempt


def _staging_completed(ticket: Ticket, event: StagingCompleted) -> Ticket:
    if not _staging_current(ticket, event.attempt):
        return ticket
    return replace(
        ticket,
        state="testing",
        staged_commit=event.commit,
        staged_tree=event.tree,
        source_revision=event.source_revision,
    )


def _staging_failed(ticket: Ticket, event: StagingFailed) -> Ticket:
    if not _staging_current(ticket, event.attempt):
        return ticket
    return replace(ticket, state="staging_failed", error=event.reason)


def _returned(ticket: Ticket, event: TicketReturned) -> Ticket:
    comments = _with_comment(ticket, event.by, "return", event.comment)
    return replace(ticket, state="returned", comments=comments)


def _tests_passed(ticket: Ticket, event: TestsPassed) -> Ticket:
    return replace(ticket, state="awaiting_approval", tested_tree=event.tree, tested_by=event.by)


def _approved(ticket: Ticket, event: TicketApproved) -> Ticket:
    comments = _with_comment(ticket, event.by, "approve", event.comment)
    return replace(ticket, state="approved", approved_by=event.by, comments=comments)


def _rejected(ticket: Ticket, event: TicketRejected) -> Ticket:
    comments = _with_comment(ticket, event.by, "reject", event.reason)
    return replace(ticket, state="returned", comments=comments)


def _cancelled(ticket: Ticket, event: TicketCancelled) -> Ticket:
    comments = _with_comment(ticket, event.by, "cancel", event.reason)
    return replace(ticket, state="cancelled", comments=comments)


def _publish_requested(ticket: Ticket, event: PublishRequested) -> Ticket:
    return replace(ticket, state="publishing", version=event.version, hosts={}, error=None)


def _tag_pending(ticket: Ticket, version: int) -> bool:
    return ticket.state == "publishing" and ticket.version == version and ticket.digest is None


def _release_tagged(ticket: Ticket, event: ReleaseTagged) -> Ticket:
    return replace(ticket, digest=event.digest) if _tag_pending(ticket, event.version) else ticket


def _release_tag_failed(ticket: Ticket, event: ReleaseTagFailed) -> Ticket:
    if not _tag_pending(ticket, event.version):
        return ticket
    return replace(ticket, state="publish_failed", error=event.reason)


def _host_sync_requested(ticket: Ticket, event: HostSyncRequested) -> Ticket:
    row = ticket.hosts.get(event.host)
    awaiting_request = row is None or (row.state, row.attempt) == ("pending", event.attempt)
    if ticket.state != "publishing" or not awaiting_request:
        return ticket  # a duplicate, or a request of an attempt already superseded
    syncing = HostProgress(state="syncing", version=event.version, attempt=event.attempt)
    digest = ticket.digest or event.digest  # a rollback learns its release's digest here
    return replace(ticket, hosts={**ticket.hosts, event.host: syncing}, digest=digest)


def _awaited(ticket: Ticket, host: str, version: int, attempt: int) -> HostProgress | None:
    """The host's row if this report answers the request it is waiting on, else None."""
    row = ticket.hosts.get(host)
    if ticket.state != "publishing" or row is None or row.state != "syncing":
        return None
    return row if (row.version, row.attempt) == (version, attempt) else None


def _host_sync_completed(ticket: Ticket, event: HostSyncCompleted) -> Ticket:
    row = _awaited(ticket, event.host, event.version, event.attempt)
    if row is None:
        return ticket
    if event.digest != ticket.digest:
        error = f"host reported digest {event.digest}, expected {ticket.digest}"
        done = replace(row, state="failed", error=error)
    else:
        done = replace(
            row,
            state="completed",
            files=event.files,
            bytes=event.bytes_transferred,
            seconds=event.seconds,
            error=None,
        )
    return replace(ticket, hosts={**ticket.hosts, event.host: done})


def _host_sync_failed(ticket: Ticket, event: HostSyncFailed) -> Ticket:
    row = _awaited(ticket, event.host, event.version, event.attempt)
    if row is None:
        return ticket
    failed = replace(row, state="failed", error=event.reason)
    return replace(ticket, hosts={**ticket.hosts, event.host: failed})


def _published(ticket: Ticket, event: TicketPublished) -> Ticket:
    return replace(ticket, state="published") if ticket.state == "publishing" else ticket


def _publish_failed(ticket: Ticket, event: PublishFailed) -> Ticket:
    return replace(ticket, state="publish_failed") if ticket.state == "publishing" else ticket


def _publish_retried(ticket: Ticket, event: PublishRetried) -> Ticket:
    if ticket.state != "publish_failed":
        return ticket
    hosts = dict(ticket.hosts)
    for host in event.hosts:
        if host in hosts:
            hosts[host] = replace(hosts[host], state="pending", attempt=hosts[host].attempt + 1)
    return replace(ticket, state="publishing", hosts=hosts, error=None)


_FOLDS: dict[type[Event], Callable[[Ticket, Any], Ticket]] = {
    TicketResubmitted: _resubmitted,
    StagingRequested: _staging_requested,
    StagingStarted: _staging_started,
    StagingCompleted: _staging_completed,
    StagingFailed: _staging_failed,
    TicketReturned: _returned,
    TestsPassed: _tests_passed,
    TicketApproved: _approved,
    TicketRejected: _rejected,
    TicketCancelled: _cancelled,
    PublishRequested: _publish_requested,
    ReleaseTagged: _release_tagged,
    ReleaseTagFailed: _release_tag_failed,
    HostSyncRequested: _host_sync_requested,
    HostSyncCompleted: _host_sync_completed,
    HostSyncFailed: _host_sync_failed,
    TicketPublished: _published,
    PublishFailed: _publish_failed,
    PublishRetried: _publish_retried,
}
