"""THE ticket decisions: (ticket, actor, input) -> the events to append, or a Refused.

Pure, no I/O. The caller (commands/tickets.py) appends the events to `ticket-<id>` with the
expected version it loaded, so a racing second action gets a Conflict from the store. Who may
take which action in which state is rules.py's table; `authorize` checks it first.
"""

from __future__ import annotations

from collections.abc import Sequence

from ferry_events.registry import Event
from ferry_events.schemas import (
    HostSyncRequested,
    PublishFailed,
    PublishRequested,
    PublishRetried,
    ReleaseTagRequested,
    Source,
    StagingRequested,
    TestsPassed,
    TicketApproved,
    TicketCancelled,
    TicketKind,
    TicketPublished,
    TicketRejected,
    TicketResubmitted,
    TicketReturned,
    TicketSubmitted,
)

from ferry_api.domain.history import evolve
from ferry_api.domain.rules import Actor, TicketConflict, TicketInvalid, authorize
from ferry_api.domain.state import Ticket
from ferry_api.domain.streams import StagingHolder

# --- people ----------------------------------------------------------------------------------


def submit(
    actor: Actor,
    *,
    ticket_id: str,
    app: str,
    kind: TicketKind,
    reason: str,
    ref: str | None = None,
    version: int | None = None,
    source: Source | None = None,
) -> list[Event]:
    """Anyone may submit a deploy (a ref, staged from `source`) or a rollback to a release."""
    _require_reason(reason, "a ticket")
    if kind == "rollback" and (ref is not None or version is None or version < 1):
        raise TicketInvalid("a rollback names the released version to return to, and no ref")
    if kind == "deploy" and (ref is None or version is not None or source is None):
        raise TicketInvalid("a deploy names the ref to stage, and no version")
    submitted = TicketSubmitted(
        ticket_id=ticket_id,
        app=app,
        kind=kind,
        reason=reason,
        author=actor.username,
        ref=ref,
        version=version,
    )
    if ref is None or source is None:
        return [submitted]
    return [submitted, StagingRequested(ticket_id=ticket_id, app=app, source=source, ref=ref)]


def return_ticket(ticket: Ticket, actor: Actor, comment: str = "") -> list[Event]:
    authorize(ticket, actor, "return")
    return [TicketReturned(ticket_id=ticket.id, by=actor.username, comment=comment)]


def resubmit(ticket: Ticket, actor: Actor, *, ref: str, reason: str, source: Source) -> list[Event]:
    """Stage a new tree; whoever resubmits becomes the author, and earlier approvals lapse."""
    _require_reason(reason, "a resubmit")
    authorize(ticket, actor, "resubmit")
    attempt = ticket.staging_attempt + 1
    return [
        TicketResubmitted(ticket_id=ticket.id, by=actor.username, ref=ref, reason=reason),
        StagingRequested(
            ticket_id=ticket.id, app=ticket.app, source=source, ref=ref, attempt=attempt
        ),
    ]


def pass_tests(ticket: Ticket, actor: Actor, staging: StagingHolder | None) -> list[Event]:
    """Record that the staged tree passed, only while the staging workspace still holds it."""
    authorize(ticket, actor, "pass-tests")
    tree = _still_staged(ticket, staging)
    return [TestsPassed(ticket_id=ticket.id, by=actor.username, tree=tree)]


def approve(ticket: Ticket, actor: Actor, comment: str = "") -> list[Event]:
    authorize(ticket, actor, "approve")
    return [TicketApproved(ticket_id=ticket.id, by=actor.username, comment=comment)]


def reject(ticket: Ticket, actor: Actor, reason: str) -> list[Event]:
    _require_reason(reason, "a rejection")
    authorize(ticket, actor, "reject")
    return [TicketRejected(ticket_id=ticket.id, by=actor.username, reason=reason)]


def publish(ticket: Ticket, actor: Actor, version: int | None = None) -> list[Event]:
    """Ship it: a deploy as the newly allocated `version`, a rollback as its target version."""
    authorize(ticket, actor, "publish")
    if ticket.kind == "rollback":
        if version not in (None, ticket.target_version):
            raise ValueError(
                f"a rollback publishes its target {ticket.target_version}, not {version}"
            )
        version = ticket.target_version
    if version is None:
        raise ValueError("a deploy publishes the version allocated for it; none given")
    requested = PublishRequested(
        ticket_id=ticket.id, app=ticket.app, by=actor.username, version=version
    )
    if ticket.kind == "rollback":
        return [requested]  # its release exists: the process manager fans out host syncs
    return [requested, _tag_request(ticket, version)]


def retry(ticket: Ticket, actor: Actor) -> list[Event]:
    """Publish again to the hosts that failed only (or tag again if tagging failed)."""
    authorize(ticket, actor, "retry")
    if ticket.digest is None:
        assert ticket.version is not None  # publish_failed follows a publish
        return [
            PublishRetried(ticket_id=ticket.id, by=actor.username, hosts=[]),
            _tag_request(ticket, ticket.version),
        ]
    failed = sorted(host for host, row in ticket.hosts.items() if row.state == "failed")
    syncs = [_sync_request(ticket, host, ticket.hosts[host].attempt + 1) for host in failed]
    return [PublishRetried(ticket_id=ticket.id, by=actor.username, hosts=failed), *syncs]


def cancel(ticket: Ticket, actor: Actor, reason: str = "") -> list[Event]:
    authorize(ticket, actor, "cancel")
    return [TicketCancelled(ticket_id=ticket.id, by=actor.username, reason=reason)]


# --- the system (agent reports and the process manager) --------------------------------------


def accept_report(ticket: Ticket, report: Event) -> list[Event]:
    """[report] if it moves the ticket on; [] if it is a duplicate, late, or of an old attempt."""
    return [report] if evolve(ticket, report) != ticket else []


def request_host_syncs(
    ticket: Ticket, hosts: Sequence[str], digest: str | None = None
) -> list[Event]:
    """Ask every host of the publish not yet asked to sync; `digest` is for a rollback's release."""
    digest = ticket.digest or digest
    if ticket.state != "publishing" or digest is None:
        return []  # not tagged yet, or already settled
    return [_sync_request(ticket, host, 1, digest) for host in hosts if host not in ticket.hosts]


def settle(ticket: Ticket, hosts: Sequence[str]) -> list[Event]:
    """TicketPublished once every host completed; PublishFailed once all settled and some failed."""
    if ticket.state != "publishing" or ticket.version is None or not hosts:
        return []
    rows = [ticket.hosts.get(host) for host in hosts]
    if any(row is None or row.state in ("pending", "syncing") for row in rows):
        return []
    failed = sorted(host for host in hosts if ticket.hosts[host].state == "failed")
    if failed:
        return [
            PublishFailed(
                ticket_id=ticket.id, app=ticket.app, version=ticket.version, failed_hosts=failed
            )
        ]
    return [TicketPublished(ticket_id=ticket.id, app=ticket.app, version=ticket.version)]


# --- the small print -------------------------------------------------------------------------


def _require_reason(text: str, what: str) -> None:
    if not text.strip():
        raise TicketInvalid(f"{what} needs a reason")


def _still_staged(ticket: Ticket, staging: StagingHolder | None) -> str:
    tree = ticket.staged_tree
    assert tree is not None  # testing follows StagingCompleted
    again = "return and resubmit this ticket to stage it again"
    if staging is None:
        raise TicketConflict(f"app '{ticket.app}' has no staged tree on record; {again}")
    holder, held_tree = staging
    if holder != ticket.id:
        raise TicketConflict(
            f"the staging workspace of app '{ticket.app}' now holds ticket {holder}, "
            f"not this one; {again}"
        )
    if held_tree != tree:
        raise TicketConflict(
            f"the staging workspace holds tree {held_tree} of this ticket, not the staged "
            f"tree {tree}; {again}"
        )
    return tree


def _tag_request(ticket: Ticket, version: int) -> ReleaseTagRequested:
    assert ticket.staged_commit and ticket.tested_tree and ticket.approved_by
    return ReleaseTagRequested(
        ticket_id=ticket.id,
        app=ticket.app,
        version=version,
        commit=ticket.staged_commit,
        tree=ticket.tested_tree,
        reason=ticket.reason,
        author=ticket.author,
        approver=ticket.approved_by,
    )


def _sync_request(
    ticket: Ticket, host: str, attempt: int, digest: str | None = None
) -> HostSyncRequested:
    digest = digest or ticket.digest
    assert ticket.version is not None and digest is not None
    return HostSyncRequested(
        ticket_id=ticket.id,
        app=ticket.app,
        host=host,
        version=ticket.version,
        digest=digest,
        attempt=attempt,
    )
