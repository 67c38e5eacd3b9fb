"""Tagging has a deadline, as host syncs have: a publish whose tag request gets no report within
FERRY_TAG_DEADLINE_SECONDS (the publisher is not running) fails with a clear reason instead of
staying `publishing` for ever; the failure is recorded once by the API (actor "ferry") however
many replicas decide it, a late tag changes nothing, and a retry asks the publisher again.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from api_client import Api, make_api_settings, serving_api
from ferry_api.bootstrap import running
from ferry_api.workers import tag_deadlines
from ferry_events.schemas import ReleaseTagFailed, ReleaseTagRequested
from stand_in_agents import Ferry, stand_ins

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]

DEADLINE = 2.0
SILENT = "no report from the publisher within 2 s of the tag request: is it running?"


@pytest.fixture
async def ferry(pg_url: str, amqp_url: str, tmp_path: Path) -> AsyncIterator[Ferry]:
    settings = make_api_settings(pg_url, amqp_url, tmp_path, tag_deadline_seconds=DEADLINE)
    async with serving_api(settings) as api, stand_ins(api) as stack:
        await stack.add_app("shop", hosts=("web-1",))
        yield stack


@pytest.fixture
async def patient_ferry(api_default: Api) -> AsyncIterator[Ferry]:
    async with stand_ins(api_default) as stack:
        await stack.add_app("shop", hosts=("web-1",))
        yield stack


@pytest.fixture
async def api_default(pg_url: str, amqp_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    """The default deadline: it never passes during a test on its own."""
    async with serving_api(make_api_settings(pg_url, amqp_url, tmp_path)) as api:
        yield api


async def test_a_tag_request_nobody_answers_fails_the_publish(ferry: Ferry) -> None:
    ticket = await ferry.to_state("publishing", "shop")  # the publisher never answers
    failed = await ferry.wait_state(ticket, "publish_failed")
    assert failed["error"] == SILENT
    stored = await ferry.runtime.store.read_stream(f"ticket-{ticket}")
    (failure,) = [e for e in stored if isinstance(e.payload(), ReleaseTagFailed)]
    request = next(e for e in stored if isinstance(e.payload(), ReleaseTagRequested))
    assert failure.metadata.actor == "ferry"
    assert failure.metadata.causation_id == str(request.event_id)
    assert failure.payload() == ReleaseTagFailed(
        ticket_id=ticket, app="shop", version=1, reason=SILENT
    )
    assert failure.recorded_at - request.recorded_at >= timedelta(seconds=DEADLINE)
    assert set(failed["allowed_actions"]) == {"retry"}

    # The publisher comes back and answers the old request: recorded, nothing moves.
    await ferry.tag(ticket)
    await asyncio.sleep(1.0)
    assert (await ferry.ticket(ticket))["state"] == "publish_failed"
    assert ferry.hosts["web-1"].commands(ticket) == []

    assert (await ferry.act("dev", ticket, "retry"))["state"] == "publishing"
    await ferry.tag(ticket, count=2)
    await ferry.sync(ticket, "web-1")
    await ferry.wait_state(ticket, "published")
    assert (await ferry.stream(f"ticket-{ticket}")).count("release.tag_failed") == 1


async def test_the_failure_is_recorded_once_by_every_replica(patient_ferry: Ferry) -> None:
    ferry = patient_ferry
    ticket = await ferry.to_state("publishing", "shop")
    await ferry.publisher.command(ticket)
    assert await tag_deadlines.expire_overdue(ferry.runtime) == 0  # 600 s are not over
    later = datetime.now(UTC) + timedelta(seconds=601)
    async with running(ferry.runtime.settings, start_workers=False) as replica:
        counts = await asyncio.gather(
            *(tag_deadlines.expire_overdue(rt, later) for rt in (ferry.runtime, replica) * 2)
        )
    assert sum(counts) == 1
    failed = await ferry.wait_state(ticket, "publish_failed")
    assert failed["error"] == (
        "no report from the publisher within 600 s of the tag request: is it running?"
    )
    assert await tag_deadlines.expire_overdue(ferry.runtime, later) == 0  # a restart


async def test_a_tagged_release_is_never_failed(ferry: Ferry) -> None:
    ticket = await ferry.to_state("published", "shop")
    await asyncio.sleep(DEADLINE * 1.5)
    assert await tag_deadlines.expire_overdue(ferry.runtime) == 0
    assert "release.tag_failed" not in await ferry.stream(f"ticket-{ticket}")
    assert (await ferry.ticket(ticket))["state"] == "published"
