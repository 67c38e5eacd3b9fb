"""The process manager and report ingest with stand-in agents on the real bus: the whole flow from
submit to published, a failing host and its retry, a failing tag, a rollback, reports delivered
twice or too late or forged, reactions run again after a crash, and read models rebuilt from 0.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from api_client import Api
from ferry_api.readmodels.releases import ReleasesProjection
from ferry_api.readmodels.tickets import TicketsProjection
from ferry_api.workers import process, reports
from ferry_events.bus import REPORTS
from ferry_events.envelope import Message
from ferry_events.projection import ProjectionRunner
from ferry_events.schemas import (
    HostSyncRequested,
    ReleaseTagFailed,
    ReleaseTagRequested,
    StagingCompleted,
    StagingRequested,
    TicketApproved,
)
from stand_in_agents import WAIT, Ferry, stand_ins

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]

EVERYTHING = 1_000_000


@pytest.fixture
async def ferry(api: Api) -> AsyncIterator[Ferry]:
    async with stand_ins(api) as stack:
        await stack.add_app("shop", hosts=("web-1", "web-2", "web-3"))
        yield stack


async def releases(ferry: Ferry, app: str = "shop") -> dict[int, dict[str, Any]]:
    await settled(ferry)  # the read model follows the log a moment behind
    response = await ferry.get("dev", f"/apps/{app}/releases")
    assert response.status_code == 200, response.text
    return {release["version"]: release for release in response.json()["releases"]}


async def settled(ferry: Ferry) -> None:
    """Until the process manager and the read models have seen the whole log."""
    store = ferry.runtime.store
    async with asyncio.timeout(WAIT):
        while await store.checkpoint(process.CHECKPOINT) < await store.last_position():
            await asyncio.sleep(0.05)
    await ferry.runtime.projector.caught_up(await store.last_position())


async def recorded(ferry: Ferry, ticket: str, event_type: str, count: int = 1) -> None:
    """Until the ticket's stream holds `count` events of the type, and all has been reacted to."""
    async with asyncio.timeout(WAIT):
        while (await ferry.stream(f"ticket-{ticket}")).count(event_type) < count:
            await asyncio.sleep(0.05)
    await settled(ferry)


async def test_happy_path_from_submit_to_published(ferry: Ferry) -> None:
    ticket = await ferry.submit("dev", "shop", ref="v2.0")
    staging = await ferry.staging.command(ticket)
    assert isinstance(staging, StagingRequested) and staging.ref == "v2.0"
    tree = await ferry.stage(ticket)
    await ferry.act("dev", ticket, "pass-tests")
    await ferry.act("lead", ticket, "approve", comment="ship it")
    assert (await ferry.act("dev", ticket, "publish"))["state"] == "publishing"

    tag = await ferry.publisher.command(ticket)
    assert isinstance(tag, ReleaseTagRequested)
    assert (tag.version, tag.commit, tag.tree) == (1, f"commit-{ticket[:8]}-1", tree)
    assert (tag.author, tag.approver, tag.reason) == ("dev", "lead", "ship v2.0")
    tagged = await ferry.tag(ticket)

    for host in ("web-1", "web-2", "web-3"):
        sync = await ferry.hosts[host].command(ticket)
        assert isinstance(sync, HostSyncRequested)
        assert (sync.host, sync.version, sync.digest, sync.attempt) == (host, 1, tagged.digest, 1)
        await ferry.sync(ticket, host)
    done = await ferry.wait_state(ticket, "published")

    assert {host: row["state"] for host, row in done["hosts"].items()} == dict.fromkeys(
        ("web-1", "web-2", "web-3"), "completed"
    )
    assert (done["version"], done["digest"], done["allowed_actions"]) == (1, tagged.digest, [])
    assert await ferry.stream(f"ticket-{ticket}") == [
        "ticket.submitted",
        "ticket.staging_requested",
        "staging.completed",
        "ticket.tests_passed",
        "ticket.approved",
        "ticket.publish_requested",
        "release.tag_requested",
        "release.tagged",
        *["host.sync_requested"] * 3,
        *["host.sync_completed"] * 3,
        "ticket.published",
    ]
    assert await ferry.stream("app-shop") == [
        "app.created",
        "app.staging_taken",
        "app.version_allocated",
    ]
    release = (await releases(ferry))[1]
    assert {k: release[k] for k in ("commit", "tree", "digest", "ticket_id", "author")} == {
        "commit": tagged.commit,
        "tree": tree,
        "digest": tagged.digest,
        "ticket_id": ticket,
        "author": "dev",
    }
    assert release["approver"] == "lead" and release["tagged_at"] and release["published_at"]
    assert release["hosts"] == dict.fromkeys(("web-1", "web-2", "web-3"), "live")

    timeline = (await ferry.get("dev", f"/tickets/{ticket}/events")).json()["events"]
    approval = next(e for e in timeline if e["type"] == "ticket.approved")
    assert (approval["actor"], approval["data"]["comment"]) == ("lead", "ship it")
    # Who really said it: the broker user the stand-ins share (what they claim is ignored).
    assert {e["actor"] for e in timeline if e["type"] == "host.sync_completed"} == {"guest"}
    stats = reports.ingest_stats(ferry.runtime)
    assert stats.recorded == 5 and stats.duplicates == 0
    assert 0 < reports.ingest_lag_seconds(ferry.runtime) < WAIT


async def test_a_failed_host_is_retried_alone(ferry: Ferry) -> None:
    ticket = await ferry.to_state("publishing", "shop")
    await ferry.tag(ticket)
    await ferry.sync(ticket, "web-1")
    await ferry.sync(ticket, "web-2", ok=False)
    await recorded(ferry, ticket, "host.sync_failed")
    assert (await ferry.ticket(ticket))["state"] == "publishing"  # web-3 has not answered yet
    await ferry.sync(ticket, "web-3")
    failed = await ferry.wait_state(ticket, "publish_failed")
    assert failed["hosts"]["web-2"] == failed["hosts"]["web-2"] | {
        "state": "failed",
        "error": "disk full",
    }
    assert set(failed["allowed_actions"]) == {"retry"}

    retried = await ferry.act("lead", ticket, "retry")
    assert retried["state"] == "publishing"
    again = await ferry.hosts["web-2"].command(ticket, 2)
    assert isinstance(again, HostSyncRequested) and again.attempt == 2
    await ferry.sync(ticket, "web-2", count=2)
    done = await ferry.wait_state(ticket, "published")
    assert [row["attempt"] for row in done["hosts"].values()] == [1, 2, 1]
    for host in ("web-1", "web-3"):
        assert len(ferry.hosts[host].commands(ticket)) == 1
    assert (await releases(ferry))[1]["hosts"] == dict.fromkeys(("web-1", "web-2", "web-3"), "live")


async def test_a_failed_tag_fails_the_publish_and_retry_tags_again(ferry: Ferry) -> None:
    ticket = await ferry.to_state("publishing", "shop")
    tag = await ferry.publisher.command(ticket)
    assert isinstance(tag, ReleaseTagRequested)
    failure = ReleaseTagFailed(ticket_id=ticket, app="shop", version=tag.version, reason="no disk")
    await ferry.publisher.report(failure)
    failed = await ferry.wait_state(ticket, "publish_failed")
    assert failed["error"] == "no disk"
    await ferry.act("dev", ticket, "retry")
    retag = await ferry.publisher.command(ticket, 2)
    assert isinstance(retag, ReleaseTagRequested) and retag.version == tag.version
    await ferry.tag(ticket, count=2)
    for host in ("web-1", "web-2", "web-3"):
        await ferry.sync(ticket, host)
    await ferry.wait_state(ticket, "published")
    assert len([e for e in await ferry.stream("app-shop") if e == "app.version_allocated"]) == 1


async def test_a_rollback_skips_staging_and_syncs_the_old_release(ferry: Ferry) -> None:
    first = await ferry.to_state("published", "shop")
    second = await ferry.to_state("published", "shop")
    assert (await releases(ferry))[2]["hosts"] == dict.fromkeys(("web-1", "web-2", "web-3"), "live")

    response = await ferry.post(
        "dev", "/tickets", {"app": "shop", "kind": "rollback", "version": 1, "reason": "v2 broke"}
    )
    assert response.status_code == 201, response.text
    rollback = response.json()
    assert (rollback["state"], rollback["target_version"]) == ("awaiting_approval", 1)
    await ferry.act("lead", rollback["id"], "approve")
    await ferry.act("dev", rollback["id"], "publish")
    digest = (await releases(ferry))[1]["digest"]
    for host in ("web-1", "web-2", "web-3"):
        sync = await ferry.hosts[host].command(rollback["id"])
        assert isinstance(sync, HostSyncRequested) and (sync.version, sync.digest) == (1, digest)
        await ferry.sync(rollback["id"], host)
    done = await ferry.wait_state(rollback["id"], "published")
    assert done["version"] == 1

    assert ferry.staging.commands(rollback["id"]) == []
    assert ferry.publisher.commands(rollback["id"]) == []
    allocated = [e for e in await ferry.stream("app-shop") if e == "app.version_allocated"]
    assert len(allocated) == 2
    after = await releases(ferry)
    assert after[1]["hosts"] == dict.fromkeys(("web-1", "web-2", "web-3"), "live")
    assert after[2]["hosts"] == {}
    assert (after[1]["ticket_id"], after[2]["ticket_id"]) == (first, second)


async def test_a_report_delivered_twice_is_recorded_once(ferry: Ferry) -> None:
    ticket = await ferry.submit("dev", "shop")
    await ferry.staging.command(ticket)
    staged = StagingCompleted(
        ticket_id=ticket, app="shop", commit="c1", tree="t1", source_revision="r1", files=1
    )
    message = Message.report(staged)
    await ferry.bus.publish(REPORTS, [message])
    await ferry.wait_state(ticket, "testing")
    await ferry.bus.publish(REPORTS, [message, message])
    async with asyncio.timeout(WAIT):
        while reports.ingest_stats(ferry.runtime).duplicates < 2:
            await asyncio.sleep(0.05)
    await settled(ferry)
    events = await ferry.stream(f"ticket-{ticket}")
    assert events.count("staging.completed") == 1
    assert (await ferry.stream("app-shop")).count("app.staging_taken") == 1
    stored = await ferry.runtime.store.read_stream(f"ticket-{ticket}")
    assert str(stored[-1].event_id) == message.message_id


async def test_late_unknown_and_forged_reports(ferry: Ferry) -> None:
    ticket = await ferry.submit("dev", "shop")
    await ferry.staging.command(ticket)
    staged = StagingCompleted(
        ticket_id=ticket, app="shop", commit="c", tree="t", source_revision="r", files=1
    )
    await ferry.staging.report(staged)
    await ferry.wait_state(ticket, "testing")

    # Late: a report for a ticket cancelled meanwhile is recorded and changes nothing, but the
    # staging workspace is known to hold that tree now, so no other ticket passes tests on it.
    cancelled = await ferry.to_state("testing", "shop", author="dev2")
    await ferry.act("dev2", cancelled, "cancel", reason="wrong branch")
    before = await ferry.ticket(cancelled)
    await ferry.staging.report(staged.model_copy(update={"ticket_id": cancelled, "tree": "t9"}))
    await recorded(ferry, cancelled, "staging.completed", 2)
    assert (await ferry.stream(f"ticket-{cancelled}")).count("staging.completed") == 2
    after = await ferry.ticket(cancelled)
    assert (after["state"], after["staged_tree"]) == ("cancelled", before["staged_tree"])
    assert after["updated_at"] == before["updated_at"]
    holder = (await ferry.runtime.store.read_stream("app-shop"))[-1]
    assert (holder.type, holder.data["ticket_id"], holder.data["tree"]) == (
        "app.staging_taken",
        cancelled,
        "t9",
    )
    refusal = await ferry.post("dev", f"/tickets/{ticket}/pass-tests")
    assert refusal.status_code == 409 and cancelled in refusal.json()["message"]

    # Unknown ticket, or another app's: not recorded. A forged approval: dead-lettered.
    stats = reports.ingest_stats(ferry.runtime)
    ignored = stats.ignored
    await ferry.staging.report(staged.model_copy(update={"ticket_id": "no-such-ticket"}))
    await ferry.staging.report(staged.model_copy(update={"app": "blog"}))
    forged = Message.report(TicketApproved(ticket_id=ticket, by="lead")).model_copy(
        update={"routing_key": "staging.completed"}
    )
    await ferry.bus.publish(REPORTS, [forged])
    dead: asyncio.Queue[Message] = asyncio.Queue()
    await ferry.bus.consume(reports.QUEUE + ".dead", dead.put)
    assert (await asyncio.wait_for(dead.get(), WAIT)).message_id == forged.message_id
    async with asyncio.timeout(WAIT):
        while stats.ignored < ignored + 2:
            await asyncio.sleep(0.05)
    assert "ticket.approved" not in await ferry.stream(f"ticket-{ticket}")
    assert await ferry.runtime.store.stream_version("ticket-no-such-ticket") == 0

    # The consumer is still there: the ticket goes on.
    await ferry.act("dev", ticket, "return")
    await ferry.act("dev", ticket, "resubmit")
    await ferry.stage(ticket, attempt=2)


async def test_reactions_run_again_after_a_crash_append_nothing(ferry: Ferry) -> None:
    await ferry.to_state("published", "shop")
    await ferry.to_state("publish_failed", "shop")
    await ferry.to_state("testing", "shop")
    await settled(ferry)
    store = ferry.runtime.store
    end = await store.last_position()
    for event in await store.read_all(after=0, limit=EVERYTHING):
        await process.react(ferry.runtime, event)
    assert await store.last_position() == end


async def snapshot(ferry: Ferry) -> dict[str, list[dict[str, Any]]]:
    store = ferry.runtime.store
    collections = [*TicketsProjection.collections, *ReleasesProjection.collections]
    return {name: await store.find(name, limit=EVERYTHING) for name in collections}


async def test_read_models_rebuild_from_zero_to_the_same_state(ferry: Ferry) -> None:
    first = await ferry.to_state("published", "shop")
    failed = await ferry.to_state("publish_failed", "shop")
    await ferry.act("dev", failed, "retry")
    await ferry.sync(failed, "web-1", count=2, ok=False)
    await ferry.wait_state(failed, "publish_failed")
    rollback = await ferry.post(
        "dev", "/tickets", {"app": "shop", "kind": "rollback", "version": 1, "reason": "back"}
    )
    await ferry.act("lead", rollback.json()["id"], "reject", reason="not now")
    returned = await ferry.to_state("returned", "shop", author="dev2")
    await ferry.act("dev2", returned, "cancel")
    await settled(ferry)
    before = await snapshot(ferry)
    assert len(before["tickets"]) == 4 and len(before["releases"]) == 2
    assert before["releases"][0]["hosts"] == {"web-1": "live"}
    assert before["releases"][1]["hosts"] == {"web-1": "failed", "web-2": "live", "web-3": "live"}

    for projection in (TicketsProjection(), ReleasesProjection()):
        applied = await ProjectionRunner(ferry.runtime.store, projection).rebuild()
        assert applied == await ferry.runtime.store.last_position()
    assert await snapshot(ferry) == before
    detail = await ferry.ticket(first)
    listed = (await ferry.get("dev", "/tickets", state="published")).json()["tickets"]
    assert [ticket["id"] for ticket in listed] == [first]
    assert {k: v for k, v in detail.items() if k in listed[0]} == listed[0]
