"""A ticket's staging: what a submit asks for, the staged tree, pass-tests against the staging
workspace, resubmits and late staging reports."""

from __future__ import annotations

import pytest
from ferry_api.domain import (
    TicketConflict,
    accept_report,
    approve,
    cancel,
    evolve,
    pass_tests,
    replay,
    resubmit,
    return_ticket,
    submit,
)
from ferry_events.schemas import (
    StagingRequested,
    TicketResubmitted,
    TicketSubmitted,
)

from .ticket_histories import (
    ALICE,
    APP,
    COMMIT,
    RITA,
    SOURCE,
    TID,
    TREE,
    fold,
    staged,
    ticket_in,
)

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
