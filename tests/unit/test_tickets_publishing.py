"""Publishing a ticket: the tag of the tested tree, host syncs, settling, retries, rollbacks."""

from __future__ import annotations

import pytest
from ferry_api.domain import (
    Actor,
    TicketForbidden,
    approve,
    publish,
    replay,
    request_host_syncs,
    retry,
    settle,
    submit,
)
from ferry_events.schemas import (
    HostSyncRequested,
    PublishFailed,
    PublishRequested,
    PublishRetried,
    ReleaseTagFailed,
    ReleaseTagRequested,
    TicketPublished,
)

from .ticket_histories import (
    ALICE,
    APP,
    CALLERS,
    COMMIT,
    DIGEST,
    HOSTS,
    OLD_DIGEST,
    RITA,
    TID,
    TREE,
    fold,
    sync_failed,
    synced,
    tagged,
    ticket_in,
)

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
