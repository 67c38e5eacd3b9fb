"""The fold of a ticket's history: redelivered or late reports change nothing, unknown payloads
are ignored, a history starts with a submission, comments keep who said what."""

from __future__ import annotations

import pytest
from ferry_api.domain import (
    accept_report,
    approve,
    evolve,
    pass_tests,
    publish,
    reject,
    replay,
    request_host_syncs,
    retry,
    settle,
    submit,
)
from ferry_events.registry import Event, UnknownEvent
from ferry_events.schemas import (
    AppCreated,
    HostSyncRequested,
    PublishFailed,
    TicketApproved,
)

from .ticket_histories import (
    ALICE,
    APP,
    DIGEST,
    HOSTS,
    RITA,
    SOURCE,
    TID,
    TREE,
    fold,
    staged,
    sync_failed,
    synced,
    tagged,
    ticket_in,
)

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
