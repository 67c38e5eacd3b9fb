"""The ticket's rules: every action in every state for every caller, what the API answers for
each refusal, and the message saying why."""

from __future__ import annotations

import pytest
from ferry_api.domain import (
    ACTIONS,
    TRANSITIONS,
    Action,
    Actor,
    TicketConflict,
    TicketForbidden,
    TicketInvalid,
    allowed_actions,
    approve,
    cancel,
    pass_tests,
    reject,
    resubmit,
    submit,
)
from ferry_api.http.errors import status_of

from .ticket_histories import (
    ALICE,
    APP,
    CALLERS,
    DEPLOY_RULES,
    MATRIX,
    NEXT_STATE,
    RITA,
    ROLLBACK_RULES,
    SOURCE,
    TID,
    decide,
    fold,
    staged,
    ticket_for,
    ticket_in,
)

# --- the whole table -------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "state", "caller", "action"), MATRIX)
def test_every_action_in_every_state_for_every_caller(
    kind: str, state: str, caller: str, action: Action
) -> None:
    rules = DEPLOY_RULES if kind == "deploy" else ROLLBACK_RULES
    ticket = ticket_for(kind, state, caller)
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
    ticket = ticket_for(kind, state, caller)
    actor = CALLERS[caller]
    accepted = []
    for action in ACTIONS:
        try:
            decide(action, ticket, actor)
        except (TicketConflict, TicketForbidden):
            continue
        accepted.append(action)
    assert allowed_actions(ticket, actor) == accepted


def test_the_table_says_where_each_action_leads() -> None:
    for (state, action), (_, leads_to) in TRANSITIONS.items():
        kind = "rollback" if state in ("awaiting_approval", "approved") else "deploy"
        ticket = ticket_in(kind, state)
        actor = RITA if action in ("approve", "reject") else ALICE
        assert fold(ticket, decide(action, ticket, actor)).state == leads_to, (state, action)
        assert leads_to == NEXT_STATE[action]


# --- refusals say why ------------------------------------------------------------------------


def test_a_wrong_state_is_a_conflict_naming_the_state_and_the_one_needed() -> None:
    with pytest.raises(TicketConflict) as refused:
        approve(ticket_in("deploy", "testing"), RITA)
    assert (
        refused.value.message == "ticket is in state 'testing'; approve needs 'awaiting_approval'"
    )
    assert status_of(refused.value) == (409, "conflict")


def test_the_state_is_checked_before_the_caller() -> None:
    # a developer who may never approve still learns first that the state rules it out
    with pytest.raises(TicketConflict):
        approve(ticket_in("deploy", "testing"), CALLERS["developer"])


def test_a_developer_may_not_approve() -> None:
    with pytest.raises(TicketForbidden, match="needs a lead or admin") as refused:
        approve(ticket_in("deploy", "awaiting_approval"), CALLERS["developer"])
    assert status_of(refused.value) == (403, "forbidden")


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
