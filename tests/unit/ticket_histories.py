"""Tickets built by their real history, for the ticket tests: every state reached by the
decisions and reports that lead there, and the callers and rules the tests check them against."""

from __future__ import annotations

from collections.abc import Iterable

from ferry_api.domain import (
    ACTIONS,
    Action,
    Actor,
    Ticket,
    approve,
    cancel,
    evolve,
    pass_tests,
    publish,
    reject,
    replay,
    request_host_syncs,
    resubmit,
    retry,
    return_ticket,
    settle,
    submit,
)
from ferry_events.registry import Event
from ferry_events.schemas import (
    HostSyncCompleted,
    HostSyncFailed,
    ReleaseTagged,
    Source,
    StagingCompleted,
    StagingFailed,
    StagingStarted,
)

TID, APP, HOSTS = "t-1", "shop", ["web-1", "web-2"]
SOURCE = Source(type="git", url="https://git.example.com/shop.git")
COMMIT, TREE, DIGEST, OLD_DIGEST = "c0ffee", "7ree", "sha256:new", "sha256:old"

ALICE = Actor("alice", "developer")  # submits every ticket below unless a test says otherwise
RITA = Actor("rita", "lead")  # the reviewer on the happy path, never a caller in the matrix

# Callers of the matrix. An "author" caller is alice herself, holding that role.
CALLERS = {
    "author (developer)": Actor("alice", "developer"),
    "author (lead)": Actor("alice", "lead"),
    "author (admin)": Actor("alice", "admin"),
    "developer": Actor("bob", "developer"),
    "lead": Actor("leo", "lead"),
    "admin": Actor("ada", "admin"),
}
AUTHOR = {"author (developer)", "author (lead)", "author (admin)"}
OTHER_LEAD = {"lead", "admin"}
AUTHOR_OR_LEAD = AUTHOR | OTHER_LEAD

# The "Ticket states" table of ARCHITECTURE.md, restated: (kind, state, action) -> who may.
DEPLOY_RULES: dict[tuple[str, Action], set[str]] = {
    ("staging_failed", "resubmit"): AUTHOR_OR_LEAD,  # a lead may take a ticket over
    ("staging_failed", "cancel"): AUTHOR,
    ("testing", "pass-tests"): AUTHOR_OR_LEAD,
    ("testing", "return"): AUTHOR_OR_LEAD,
    ("testing", "cancel"): AUTHOR_OR_LEAD,
    ("returned", "resubmit"): AUTHOR_OR_LEAD,
    ("returned", "cancel"): AUTHOR,
    ("awaiting_approval", "approve"): OTHER_LEAD,
    ("awaiting_approval", "reject"): OTHER_LEAD,
    ("awaiting_approval", "return"): AUTHOR,
    ("awaiting_approval", "cancel"): AUTHOR,
    ("approved", "publish"): AUTHOR_OR_LEAD,
    ("approved", "cancel"): AUTHOR_OR_LEAD,
    ("publish_failed", "retry"): AUTHOR_OR_LEAD,
}
ROLLBACK_RULES = {key: who for key, who in DEPLOY_RULES.items() if key[1] != "resubmit"}
DEPLOY_STATES = [
    "staging_pending", "staging", "staging_failed", "testing", "returned", "awaiting_approval",
    "approved", "publishing", "published", "publish_failed", "cancelled",
]  # fmt: skip
ROLLBACK_STATES = [
    "awaiting_approval", "returned", "approved", "publishing", "published", "publish_failed",
    "cancelled",
]  # fmt: skip
NEXT_STATE = {
    "return": "returned",
    "resubmit": "staging_pending",
    "pass-tests": "awaiting_approval",
    "approve": "approved",
    "reject": "returned",
    "publish": "publishing",
    "retry": "publishing",
    "cancel": "cancelled",
}


# --- building tickets by their real history --------------------------------------------------


def fold(ticket: Ticket, events: Iterable[Event]) -> Ticket:
    for event in events:
        ticket = evolve(ticket, event)
    return ticket


def staged(tree: str = TREE, attempt: int = 1) -> StagingCompleted:
    return StagingCompleted(
        ticket_id=TID, app=APP, commit=COMMIT, tree=tree, source_revision="r1", files=3,
        attempt=attempt,
    )  # fmt: skip


def synced(host: str, attempt: int = 1, digest: str = DIGEST, version: int = 7) -> Event:
    return HostSyncCompleted(
        ticket_id=TID, app=APP, host=host, version=version, digest=digest, files=3,
        bytes_transferred=1024, seconds=0.5, attempt=attempt,
    )  # fmt: skip


def sync_failed(host: str, attempt: int = 1, version: int = 7) -> Event:
    return HostSyncFailed(
        ticket_id=TID, app=APP, host=host, version=version, reason="disk full", attempt=attempt
    )


def tagged(version: int = 7) -> Event:
    return ReleaseTagged(
        ticket_id=TID, app=APP, version=version, commit=COMMIT, tree=TREE, digest=DIGEST,
        files=3, bytes=1024,
    )  # fmt: skip


def deploy_ticket(state: str, author: Actor = ALICE) -> Ticket:
    """A deploy ticket brought to `state` by the decisions and reports that lead there."""
    t = replay(
        submit(
            author, ticket_id=TID, app=APP, kind="deploy", reason="ship it", ref="main",
            source=SOURCE,
        )
    )  # fmt: skip
    if state != "staging_pending":
        t = evolve(t, StagingStarted(ticket_id=TID, app=APP))
    if state in ("staging_pending", "staging"):
        return t
    if state == "staging_failed":
        return evolve(t, StagingFailed(ticket_id=TID, app=APP, reason="no such ref"))
    t = evolve(t, staged())
    if state in ("returned", "cancelled", "testing"):
        return _leave_review(t, state, author)
    t = fold(t, pass_tests(t, author, (TID, TREE)))
    if state == "awaiting_approval":
        return t
    t = fold(t, approve(t, RITA))
    if state == "approved":
        return t
    t = fold(t, publish(t, author, version=7))
    t = fold(t, [tagged()])
    return _finish_publish(fold(t, request_host_syncs(t, HOSTS)), state)


def rollback_ticket(state: str, author: Actor = ALICE) -> Ticket:
    t = replay(
        submit(author, ticket_id=TID, app=APP, kind="rollback", reason="bad release", version=7)
    )
    if state in ("returned", "cancelled", "awaiting_approval"):
        return _leave_review(t, state, author)
    t = fold(t, approve(t, RITA))
    if state == "approved":
        return t
    t = fold(t, publish(t, author))
    return _finish_publish(fold(t, request_host_syncs(t, HOSTS, digest=DIGEST)), state)


def _leave_review(t: Ticket, state: str, author: Actor) -> Ticket:
    if state == "returned":
        return fold(t, return_ticket(t, author, comment="wrong branch"))
    if state == "cancelled":
        return fold(t, cancel(t, author, reason="not needed"))
    return t


def _finish_publish(t: Ticket, state: str) -> Ticket:
    if state == "publishing":
        return t
    last = synced("web-2") if state == "published" else sync_failed("web-2")
    t = fold(t, [synced("web-1"), last])
    return fold(t, settle(t, HOSTS))


def ticket_in(kind: str, state: str, author: Actor = ALICE) -> Ticket:
    ticket = (deploy_ticket if kind == "deploy" else rollback_ticket)(state, author)
    assert ticket.state == state
    return ticket


def decide(action: Action, ticket: Ticket, actor: Actor) -> list[Event]:
    """Call the decision for `action` with valid input."""
    holder = (ticket.id, ticket.staged_tree) if ticket.staged_tree else None
    match action:
        case "return":
            return return_ticket(ticket, actor, comment="please fix")
        case "resubmit":
            return resubmit(ticket, actor, ref="fix-1", reason="fixed it", source=SOURCE)
        case "pass-tests":
            return pass_tests(ticket, actor, holder)
        case "approve":
            return approve(ticket, actor, comment="ok")
        case "reject":
            return reject(ticket, actor, reason="not like this")
        case "publish":
            return publish(ticket, actor, version=8 if ticket.kind == "deploy" else None)
        case "retry":
            return retry(ticket, actor)
        case "cancel":
            return cancel(ticket, actor, reason="no longer needed")


MATRIX = [
    (kind, state, caller, action)
    for kind, states in (("deploy", DEPLOY_STATES), ("rollback", ROLLBACK_STATES))
    for state in states
    for caller in CALLERS
    for action in ACTIONS
]


def ticket_for(kind: str, state: str, caller: str) -> Ticket:
    return ticket_in(kind, state, author=CALLERS[caller] if caller in AUTHOR else ALICE)
