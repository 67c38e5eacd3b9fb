"""The ticket state machine: every transition for every caller, every refusal, and the fold."""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from ferry_api.tickets import (
    ACTIONS,
    Action,
    Actor,
    Ticket,
    TicketConflict,
    TicketForbidden,
    TicketInvalid,
    accept_report,
    allowed_actions,
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
from ferry_events.registry import Event, UnknownEvent
from ferry_events.schemas import (
    AppCreated,
    HostSyncCompleted,
    HostSyncFailed,
    HostSyncRequested,
    PublishFailed,
    PublishRequested,
    PublishRetried,
    ReleaseTagFailed,
    ReleaseTagged,
    ReleaseTagRequested,
    Source,
    StagingCompleted,
    StagingFailed,
    StagingRequested,
    StagingStarted,
    TicketApproved,
    TicketPublished,
    TicketResubmitted,
    TicketSubmitted,
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


def _ticket_for(kind: str, state: str, caller: str) -> Ticket:
    return ticket_in(kind, state, author=CALLERS[caller] if caller in AUTHOR else ALICE)


# --- the whole table -------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "state", "caller", "action"), MATRIX)
def test_every_action_in_every_state_for_every_caller(
    kind: str, state: str, caller: str, action: Action
) -> None:
    rules = DEPLOY_RULES if kind == "deploy" else ROLLBACK_RULES
    ticket = _ticket_for(kind, state, caller)
    actor = CALLERS[caller]
    who = rules.get((state, action))
    if who is None:
        with pytest.raises(TicketConflict, match=f"state '{state}'|rollback cannot"):
            decide(action, ticket, actor)
    elif caller not in who:
        with pytest.raises(TicketForbidden):
            decide(action, ticket, actor)
    else:
        after = fold(ticket, decide(action, ticket, actor))
        assert after.state == NEXT_STATE[action]


@pytest.mark.parametrize(
    ("kind", "state", "caller"),
    sorted({(kind, state, caller) for kind, state, caller, _ in MATRIX}),
)
def test_allowed_actions_are_exactly_what_the_decisions_accept(
    kind: str, state: str, caller: str
) -> None:
    ticket = _ticket_for(kind, state, caller)
    actor = CALLERS[caller]
    accepted = []
    for action in ACTIONS:
        try:
            decide(action, ticket, actor)
        except (TicketConflict, TicketForbidden):
            continue
        accepted.append(action)
    assert allowed_actions(ticket, actor) == accepted


# --- refusals say why ------------------------------------------------------------------------


def test_a_wrong_state_is_a_conflict_naming_the_state_and_the_one_needed() -> None:
    with pytest.raises(TicketConflict) as refused:
        approve(ticket_in("deploy", "testing"), RITA)
    assert (
        refused.value.message == "ticket is in state 'testing'; approve needs 'awaiting_approval'"
    )
    assert (refused.value.status, refused.value.code) == (409, "conflict")


def test_the_state_is_checked_before_the_caller() -> None:
    # a developer who may never approve still learns first that the state rules it out
    with pytest.raises(TicketConflict):
        approve(ticket_in("deploy", "testing"), CALLERS["developer"])


def test_a_developer_may_not_approve() -> None:
    with pytest.raises(TicketForbidden, match="needs a lead or admin") as refused:
        approve(ticket_in("deploy", "awaiting_approval"), CALLERS["developer"])
    assert (refused.value.status, refused.value.code) == (403, "forbidden")


@pytest.mark.parametrize("role", ["lead", "admin"])
@pytest.mark.parametrize("decision", [approve, reject])
def test_four_eyes_an_author_who_is_a_lead_may_not_approve_or_reject(role, decision) -> None:
    author = Actor("alice", role)
    ticket = ticket_in("deploy", "awaiting_approval", author=author)
    with pytest.raises(TicketForbidden) as refused:
        decision(ticket, author, "mine")
    action = decision.__name__
    assert refused.value.message == (
        f"you submitted this ticket; another lead or admin must {action} it (four-eyes)"
    )


def test_four_eyes_a_lead_who_resubmitted_may_not_approve_but_another_lead_may() -> None:
    leo = CALLERS["lead"]
    ticket = ticket_in("deploy", "staging_failed")
    ticket = fold(ticket, resubmit(ticket, leo, ref="fix-1", reason="took it over", source=SOURCE))
    assert (ticket.author, ticket.submitters) == ("leo", ("alice", "leo"))
    ticket = fold(ticket, [staged(tree="tree2", attempt=2)])
    ticket = fold(ticket, pass_tests(ticket, ALICE, (TID, "tree2")))

    with pytest.raises(TicketForbidden, match=r"you resubmitted this ticket.*\(four-eyes\)"):
        approve(ticket, leo)
    with pytest.raises(TicketForbidden, match="you submitted this ticket"):
        approve(ticket, Actor("alice", "lead"))
    assert fold(ticket, approve(ticket, RITA)).approved_by == "rita"


def test_only_the_author_may_cancel_a_returned_ticket() -> None:
    with pytest.raises(TicketForbidden, match=r"only the ticket's author \(alice\) may cancel"):
        cancel(ticket_in("deploy", "returned"), CALLERS["lead"])


def test_a_rollback_cannot_be_resubmitted() -> None:
    ticket = ticket_in("rollback", "returned")
    with pytest.raises(TicketConflict, match="a rollback cannot be resubmitted"):
        resubmit(ticket, ALICE, ref="main", reason="again", source=SOURCE)


@pytest.mark.parametrize(
    ("kwargs", "why"),
    [
        ({"kind": "deploy", "reason": "x"}, "a deploy names the ref"),
        ({"kind": "deploy", "reason": "x", "ref": "main"}, "a deploy names the ref"),
        ({"kind": "deploy", "reason": "x", "ref": "main", "version": 3, "source": SOURCE}, "ref"),
        ({"kind": "rollback", "reason": "x"}, "a rollback names the released version"),
        ({"kind": "rollback", "reason": "x", "version": 0}, "released version"),
        ({"kind": "rollback", "reason": "x", "version": 3, "ref": "main"}, "and no ref"),
        ({"kind": "deploy", "reason": " ", "ref": "main", "source": SOURCE}, "needs a reason"),
    ],
)
def test_submit_refuses_incomplete_input(kwargs, why) -> None:
    with pytest.raises(TicketInvalid, match=why):
        submit(ALICE, ticket_id=TID, app=APP, **kwargs)


def test_reject_needs_a_reason() -> None:
    with pytest.raises(TicketInvalid, match="a rejection needs a reason"):
        reject(ticket_in("deploy", "awaiting_approval"), RITA, reason="")


# --- staging ---------------------------------------------------------------------------------


def test_submitting_a_deploy_asks_for_staging_of_its_ref() -> None:
    events = submit(
        ALICE, ticket_id=TID, app=APP, kind="deploy", reason="go", ref="v2", source=SOURCE
    )
    assert events == [
        TicketSubmitted(
            ticket_id=TID, app=APP, kind="deploy", reason="go", author="alice", ref="v2"
        ),
        StagingRequested(ticket_id=TID, app=APP, source=SOURCE, ref="v2", attempt=1),
    ]
    assert replay(events).state == "staging_pending"


def test_staging_completed_records_the_staged_tree() -> None:
    ticket = ticket_in("deploy", "testing")
    assert (ticket.staged_commit, ticket.staged_tree, ticket.source_revision) == (
        COMMIT,
        TREE,
        "r1",
    )


@pytest.mark.parametrize(
    ("holder", "why"),
    [
        (("t-2", "other"), "now holds ticket t-2, not this one"),
        ((TID, "older"), "holds tree older of this ticket, not the staged tree 7ree"),
        (None, "has no staged tree on record"),
    ],
)
def test_pass_tests_refuses_when_staging_no_longer_holds_the_tree(holder, why) -> None:
    with pytest.raises(TicketConflict, match=why):
        pass_tests(ticket_in("deploy", "testing"), ALICE, holder)


def test_pass_tests_records_the_tree_it_tested() -> None:
    ticket = ticket_in("deploy", "awaiting_approval")
    assert (ticket.tested_tree, ticket.tested_by) == (TREE, "alice")


def test_resubmit_clears_tests_and_approvals_and_stages_a_new_attempt() -> None:
    ticket = ticket_in("deploy", "awaiting_approval")
    ticket = fold(ticket, return_ticket(ticket, ALICE, comment="wrong config"))
    events = resubmit(ticket, ALICE, ref="fix-1", reason="config fixed", source=SOURCE)
    assert events[1] == StagingRequested(
        ticket_id=TID, app=APP, source=SOURCE, ref="fix-1", attempt=2
    )
    ticket = fold(ticket, events)
    assert ticket.state == "staging_pending"
    assert (ticket.ref, ticket.reason) == ("fix-1", "config fixed")
    assert (ticket.staged_tree, ticket.tested_tree, ticket.approved_by) == (None, None, None)
    with pytest.raises(TicketConflict):
        approve(ticket, RITA)


def test_a_new_tree_voids_an_approval_already_folded() -> None:
    approved = ticket_in("deploy", "approved")
    assert approved.approved_by == "rita"
    resubmitted = TicketResubmitted(ticket_id=TID, by="alice", ref="fix-2", reason="again")
    assert evolve(approved, resubmitted).approved_by is None


def test_a_staging_report_of_an_earlier_attempt_is_ignored() -> None:
    ticket = ticket_in("deploy", "staging_failed")
    ticket = fold(ticket, resubmit(ticket, ALICE, ref="fix-1", reason="again", source=SOURCE))
    late = staged(tree="old", attempt=1)
    assert accept_report(ticket, late) == []
    assert evolve(ticket, late) == ticket
    ticket = fold(ticket, accept_report(ticket, staged(tree="new", attempt=2)))
    assert (ticket.state, ticket.staged_tree) == ("testing", "new")


def test_a_staging_report_after_cancel_changes_nothing() -> None:
    ticket = ticket_in("deploy", "staging_failed")
    ticket = fold(ticket, cancel(ticket, ALICE))
    assert accept_report(ticket, staged()) == []


# --- publishing ------------------------------------------------------------------------------


def test_publishing_a_deploy_tags_exactly_the_tested_tree() -> None:
    ticket = ticket_in("deploy", "approved")
    events = publish(ticket, CALLERS["lead"], version=7)
    assert events == [
        PublishRequested(ticket_id=TID, app=APP, by="leo", version=7),
        ReleaseTagRequested(
            ticket_id=TID, app=APP, version=7, commit=COMMIT, tree=TREE, reason="ship it",
            author="alice", approver="rita",
        ),
    ]  # fmt: skip


def test_hosts_are_asked_to_sync_once_the_tag_exists_and_only_once() -> None:
    ticket = ticket_in("deploy", "approved")
    ticket = fold(ticket, publish(ticket, ALICE, version=7))
    assert request_host_syncs(ticket, HOSTS) == []  # no digest yet
    ticket = fold(ticket, [tagged()])
    requests = request_host_syncs(ticket, HOSTS)
    assert [(r.host, r.version, r.digest, r.attempt) for r in requests] == [
        ("web-1", 7, DIGEST, 1),
        ("web-2", 7, DIGEST, 1),
    ]
    ticket = fold(ticket, requests)
    assert {h: p.state for h, p in ticket.hosts.items()} == {"web-1": "syncing", "web-2": "syncing"}
    assert request_host_syncs(ticket, HOSTS) == []


def test_settle_waits_for_every_host() -> None:
    ticket = ticket_in("deploy", "publishing")
    ticket = fold(ticket, [synced("web-1")])
    assert settle(ticket, HOSTS) == []
    assert settle(ticket, [*HOSTS, "web-3"]) == []  # a host never asked is not settled
    ticket = fold(ticket, [synced("web-2")])
    assert settle(ticket, HOSTS) == [TicketPublished(ticket_id=TID, app=APP, version=7)]


def test_a_published_ticket_records_each_hosts_transfer() -> None:
    ticket = ticket_in("deploy", "published")
    row = ticket.hosts["web-1"]
    assert (row.state, row.version, row.files, row.bytes, row.seconds) == (
        "completed",
        7,
        3,
        1024,
        0.5,
    )
    assert settle(ticket, HOSTS) == []


def test_a_failed_host_fails_the_publish_and_retry_syncs_only_that_host() -> None:
    ticket = ticket_in("deploy", "publishing")
    ticket = fold(ticket, [synced("web-1"), sync_failed("web-2")])
    outcome = settle(ticket, HOSTS)
    assert outcome == [PublishFailed(ticket_id=TID, app=APP, version=7, failed_hosts=["web-2"])]
    ticket = fold(ticket, outcome)
    assert (ticket.state, ticket.hosts["web-2"].error) == ("publish_failed", "disk full")

    events = retry(ticket, ALICE)
    assert events == [
        PublishRetried(ticket_id=TID, by="alice", hosts=["web-2"]),
        HostSyncRequested(
            ticket_id=TID, app=APP, host="web-2", version=7, digest=DIGEST, attempt=2
        ),
    ]
    ticket = fold(ticket, events)
    assert ticket.state == "publishing"
    assert (ticket.hosts["web-1"].state, ticket.hosts["web-1"].attempt) == ("completed", 1)
    assert (ticket.hosts["web-2"].state, ticket.hosts["web-2"].attempt) == ("syncing", 2)

    ticket = fold(ticket, [synced("web-2", attempt=2)])
    assert settle(ticket, HOSTS) == [TicketPublished(ticket_id=TID, app=APP, version=7)]


def test_a_host_that_reports_another_digest_has_failed() -> None:
    ticket = ticket_in("deploy", "publishing")
    ticket = fold(ticket, [synced("web-1"), synced("web-2", digest="sha256:evil")])
    assert ticket.hosts["web-2"].state == "failed"
    assert "sha256:evil" in (ticket.hosts["web-2"].error or "")


def test_a_failed_tag_fails_the_publish_and_retry_tags_again() -> None:
    ticket = ticket_in("deploy", "approved")
    ticket = fold(ticket, publish(ticket, ALICE, version=7))
    ticket = fold(ticket, [ReleaseTagFailed(ticket_id=TID, app=APP, version=7, reason="no space")])
    assert (ticket.state, ticket.error) == ("publish_failed", "no space")
    events = retry(ticket, CALLERS["lead"])
    assert events[0] == PublishRetried(ticket_id=TID, by="leo", hosts=[])
    assert isinstance(events[1], ReleaseTagRequested) and events[1].version == 7
    assert fold(ticket, events).state == "publishing"


# --- redelivered reports are harmless --------------------------------------------------------


@pytest.mark.parametrize(
    "duplicate",
    [
        synced("web-1"),
        sync_failed("web-1"),
        tagged(),
        HostSyncRequested(ticket_id=TID, app=APP, host="web-1", version=7, digest=DIGEST),
    ],
    ids=["completed", "failed", "tagged", "sync requested"],
)
def test_a_redelivered_report_changes_nothing(duplicate: Event) -> None:
    ticket = ticket_in("deploy", "publishing")
    ticket = fold(ticket, [synced("web-1")])
    assert evolve(ticket, duplicate) == ticket
    assert accept_report(ticket, duplicate) == []


def test_reports_of_a_settled_attempt_are_ignored_after_retry() -> None:
    ticket = ticket_in("deploy", "publish_failed")
    ticket = fold(ticket, retry(ticket, ALICE))
    for late in (sync_failed("web-2", attempt=1), synced("web-2", attempt=1), synced("web-1")):
        assert evolve(ticket, late) == ticket
    assert ticket.hosts["web-2"].state == "syncing"


def test_replaying_a_history_with_every_report_twice_gives_the_same_ticket() -> None:
    history = [
        *submit(
            ALICE, ticket_id=TID, app=APP, kind="deploy", reason="go", ref="main", source=SOURCE
        ),
        staged(),
    ]
    ticket = replay(history)
    history += pass_tests(ticket, ALICE, (TID, TREE))
    ticket = replay(history)
    history += approve(ticket, RITA)
    ticket = replay(history)
    history += publish(ticket, ALICE, version=7)
    history.append(tagged())
    history += request_host_syncs(replay(history), HOSTS)
    reports = [synced("web-1"), sync_failed("web-2")]
    history += reports
    history += settle(replay(history), HOSTS)
    once = replay(history)
    twice = replay([event for event in history for _ in (1, 2)])
    assert once == twice
    assert once.state == "publish_failed"


def test_a_duplicate_outcome_after_settling_changes_nothing() -> None:
    ticket = ticket_in("deploy", "published")
    assert (
        evolve(ticket, PublishFailed(ticket_id=TID, app=APP, version=7, failed_hosts=["web-1"]))
        == ticket
    )


# --- rollback --------------------------------------------------------------------------------


def test_a_rollback_skips_staging_and_publishes_its_target_release() -> None:
    events = submit(ALICE, ticket_id=TID, app=APP, kind="rollback", reason="v7 broke", version=5)
    ticket = replay(events)
    assert (ticket.state, ticket.target_version, len(events)) == ("awaiting_approval", 5, 1)
    with pytest.raises(TicketForbidden):
        approve(ticket, Actor("alice", "lead"))
    ticket = fold(ticket, approve(ticket, RITA))

    published = publish(ticket, ALICE)
    assert published == [PublishRequested(ticket_id=TID, app=APP, by="alice", version=5)]
    with pytest.raises(ValueError, match="target 5"):
        publish(ticket, ALICE, version=9)
    ticket = fold(ticket, published)
    assert request_host_syncs(ticket, HOSTS) == []  # the process manager must name the digest
    requests = request_host_syncs(ticket, HOSTS, digest=OLD_DIGEST)
    assert {(r.host, r.version, r.digest) for r in requests} == {
        ("web-1", 5, OLD_DIGEST),
        ("web-2", 5, OLD_DIGEST),
    }
    ticket = fold(ticket, requests)
    ticket = fold(ticket, [synced(h, digest=OLD_DIGEST, version=5) for h in HOSTS])
    assert fold(ticket, settle(ticket, HOSTS)).state == "published"


# --- the fold --------------------------------------------------------------------------------


def test_evolve_ignores_unknown_payloads_and_other_tickets() -> None:
    ticket = ticket_in("deploy", "testing")
    unknown = UnknownEvent(type_name="ticket.frobbed", schema_version=1, data={"ticket_id": TID})
    app_event = AppCreated(name=APP, source=SOURCE, by="admin")
    other = TicketApproved(ticket_id="t-2", by="rita")
    for event in (unknown, app_event, other):
        assert evolve(ticket, event) == ticket


def test_a_history_must_start_with_a_submission() -> None:
    with pytest.raises(ValueError, match=r"starts with ticket\.submitted"):
        replay([staged()])
    with pytest.raises(ValueError, match=r"starts with ticket\.submitted"):
        replay([])


def test_comments_keep_who_said_what() -> None:
    ticket = ticket_in("deploy", "awaiting_approval")
    ticket = fold(ticket, reject(ticket, RITA, reason="missing migration"))
    assert ticket.state == "returned"
    assert [(c.by, c.action, c.text) for c in ticket.comments] == [
        ("rita", "reject", "missing migration")
    ]
