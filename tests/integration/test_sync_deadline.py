"""Host-sync deadlines with the real API and stand-in agents: a host that never answers fails the
publish by name once FERRY_SYNC_TIMEOUT_SECONDS passed, its late report changes nothing, a retry
asks that host alone again, and the deadline's failure is appended once however often it is
decided (API replicas, restarts).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from api_client import Api, make_api_settings, serving_api
from ferry_api.bootstrap import running
from ferry_api.workers import process, sync_deadlines
from ferry_events.envelope import StoredEvent
from ferry_events.schemas import HostSyncFailed, HostSyncRequested, PublishFailed
from stand_in_agents import WAIT, Ferry, stand_ins

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]

DEADLINE = 2.0
SILENT = "no report from web-3 within 2 s: is its agent running?"


@pytest.fixture
async def ferry(pg_url: str, amqp_url: str, tmp_path: Path) -> AsyncIterator[Ferry]:
    settings = make_api_settings(pg_url, amqp_url, tmp_path, sync_timeout_seconds=DEADLINE)
    async with serving_api(settings) as api, stand_ins(api) as stack:
        await stack.add_app("shop", hosts=("web-1", "web-2", "web-3"))
        yield stack


@pytest.fixture
async def patient_ferry(api: Api) -> AsyncIterator[Ferry]:
    """The default deadline (300 s): the worker never fires during a test on its own."""
    async with stand_ins(api) as stack:
        await stack.add_app("shop", hosts=("web-1", "web-2", "web-3"))
        yield stack


async def events(ferry: Ferry, ticket: str) -> list[StoredEvent]:
    return await ferry.runtime.store.read_stream(f"ticket-{ticket}")


async def recorded(ferry: Ferry, ticket: str, event_type: str, count: int) -> None:
    """Until the stream holds `count` events of the type and the process manager saw them all."""
    store = ferry.runtime.store
    async with asyncio.timeout(WAIT):
        while (await ferry.stream(f"ticket-{ticket}")).count(event_type) < count:
            await asyncio.sleep(0.05)
        while await store.checkpoint(process.CHECKPOINT) < await store.last_position():
            await asyncio.sleep(0.05)
    await ferry.runtime.projector.caught_up(await store.last_position())


async def web3_silent(ferry: Ferry) -> str:
    """A publish that web-1 and web-2 complete and web-3 never answers."""
    ticket = await ferry.to_state("publishing", "shop")
    await ferry.tag(ticket)
    await ferry.sync(ticket, "web-1")
    await ferry.sync(ticket, "web-2")
    await ferry.hosts["web-3"].command(ticket)  # asked, and silent
    return ticket


async def test_a_silent_host_fails_the_publish_and_its_late_report_changes_nothing(
    ferry: Ferry,
) -> None:
    ticket = await web3_silent(ferry)
    failed = await ferry.wait_state(ticket, "publish_failed")
    rows = failed["hosts"]
    assert {host: row["state"] for host, row in rows.items()} == {
        "web-1": "completed",
        "web-2": "completed",
        "web-3": "failed",
    }
    assert rows["web-3"]["error"] == SILENT
    outcome = [e.payload() for e in await events(ferry, ticket)]
    assert [p.failed_hosts for p in outcome if isinstance(p, PublishFailed)] == [["web-3"]]
    request = next(p for p in outcome if isinstance(p, HostSyncRequested) and p.host == "web-3")
    (deadline,) = [p for p in outcome if isinstance(p, HostSyncFailed)]
    assert (deadline.attempt, deadline.version) == (request.attempt, request.version) == (1, 1)

    # The agent comes back and answers the old request: recorded, and nothing moves.
    await ferry.sync(ticket, "web-3")
    await recorded(ferry, ticket, "host.sync_completed", 3)
    still = await ferry.ticket(ticket)
    assert still["state"] == "publish_failed"
    assert still["hosts"]["web-3"] == rows["web-3"]
    assert set(still["allowed_actions"]) == {"retry"}

    assert (await ferry.act("dev", ticket, "retry"))["state"] == "publishing"
    again = await ferry.hosts["web-3"].command(ticket, 2)
    assert isinstance(again, HostSyncRequested) and again.attempt == 2
    for host in ("web-1", "web-2"):
        assert len(ferry.hosts[host].commands(ticket)) == 1
    # Back from downtime, the agent answers both queued requests, the old one first.
    await ferry.sync(ticket, "web-3", count=1)
    await ferry.sync(ticket, "web-3", count=2)
    done = await ferry.wait_state(ticket, "published")
    assert done["hosts"]["web-3"] == done["hosts"]["web-3"] | {
        "state": "completed",
        "attempt": 2,
        "error": None,
    }
    assert (await ferry.stream(f"ticket-{ticket}")).count("host.sync_failed") == 1


async def test_a_host_that_answers_in_time_is_never_failed(ferry: Ferry) -> None:
    ticket = await ferry.to_state("published", "shop")
    await asyncio.sleep(DEADLINE * 1.5)  # past every request's deadline
    assert await sync_deadlines.expire_overdue(ferry.runtime) == 0
    assert "host.sync_failed" not in await ferry.stream(f"ticket-{ticket}")
    assert (await ferry.ticket(ticket))["state"] == "published"


async def test_the_deadline_failure_is_appended_once_by_every_replica(
    patient_ferry: Ferry,
) -> None:
    ferry = patient_ferry
    ticket = await web3_silent(ferry)
    await recorded(ferry, ticket, "host.sync_completed", 2)
    assert await sync_deadlines.expire_overdue(ferry.runtime) == 0  # 300 s are not over
    assert (await ferry.ticket(ticket))["state"] == "publishing"

    later = datetime.now(UTC) + timedelta(seconds=301)
    # A second API process on the same database decides at the same moment.
    async with running(ferry.runtime.settings, start_workers=False) as replica:
        counts = await asyncio.gather(
            *(sync_deadlines.expire_overdue(rt, later) for rt in (ferry.runtime, replica) * 2)
        )
    assert sum(counts) == 1
    failed = await ferry.wait_state(ticket, "publish_failed")
    assert failed["hosts"]["web-3"]["error"] == (
        "no report from web-3 within 300 s: is its agent running?"
    )
    assert await sync_deadlines.expire_overdue(ferry.runtime, later) == 0  # a restart
    assert (await ferry.stream(f"ticket-{ticket}")).count("host.sync_failed") == 1
