"""Every fact in the log names who really said it. With a broker user per agent (strict, the
default), the good path publishes to the hosts and each report's actor is its agent's user; a
report from anyone else (web-2 claiming web-1's sync, the staging agent dressing a host sync up
as a staging report, a message with no validated sender) leaves the ticket where it was and is
recorded as `report.rejected` with the real sender; a heartbeat for another host is dropped.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from broker_provisioning import Provisioned
from ferry_events.bus import REPORTS
from ferry_events.bus_rabbitmq import to_amqp
from ferry_events.envelope import Message, Metadata
from ferry_events.schemas import AgentHeartbeat, HostSyncCompleted
from strict_stack import Strict, strict_ferry, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]


async def rejections(ferry: Strict, count: int) -> list[dict[str, Any]]:
    async def recorded() -> list[dict[str, Any]] | None:
        found = await ferry.events("report.rejected")
        return found if len(found) >= count else None

    found: list[dict[str, Any]] = await wait_until(recorded, f"{count} rejected reports")
    return found


async def publish_without_sender(ferry: Strict, user: str, message: Message) -> None:
    """A plain AMQP client that sets no user_id: the broker checks nothing, vouches for no one."""
    unsigned = to_amqp(message, user_id=user)
    unsigned.user_id = None
    async with await aio_pika.connect(ferry.broker.url(user)) as connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange(REPORTS, ensure=False)
        await exchange.publish(unsigned, routing_key=message.routing_key)


async def test_the_good_path_in_strict_mode_names_each_agent_as_the_actor(
    provisioned: Provisioned, pg_url: str, tmp_path: Path
) -> None:
    async with strict_ferry(tmp_path, provisioned, pg_url) as ferry:
        ticket = await ferry.publish()
        users = ferry.broker.users
        for host in ("web-1", "web-2"):
            current = ferry.host_target(host) / "current"
            assert current.readlink() == Path("releases/1"), host
            assert (current / "index.html").read_text() == "<h1>shop, release one</h1>\n"
        timeline = (await ferry.call("dev", "GET", f"/tickets/{ticket}/events"))["events"]
        actors = {(e["type"], e["actor"]) for e in timeline if e["type"].split(".")[0] != "ticket"}
        assert actors >= {
            ("staging.completed", users.staging),
            ("release.tagged", users.publisher),
            ("host.sync_completed", users.host("web-1")),
            ("host.sync_completed", users.host("web-2")),
        }
        assert await ferry.events("report.rejected") == []
        assert await ferry.events("agent.command_refused") == []


async def test_a_report_from_anyone_but_its_agent_moves_nothing_and_is_recorded_as_rejected(
    provisioned: Provisioned, pg_url: str, tmp_path: Path
) -> None:
    async with strict_ferry(tmp_path, provisioned, pg_url) as ferry:
        users = ferry.broker.users
        await ferry.publish()
        await ferry.stop("web-1")  # web-1 will not answer: the second release waits for it
        ticket = await ferry.publish(until="publishing")
        await wait_until(lambda: web_2_done(ferry, ticket), "web-2 to sync release 2")
        before = await ferry.ticket(ticket)
        sync = await ferry.command(ticket, "host.sync_requested", host="web-1")
        claim = HostSyncCompleted(
            ticket_id=ticket, app="shop", host="web-1", version=2, digest=sync.data["digest"],
            files=1, bytes_transferred=1, seconds=0.1, attempt=sync.data["attempt"],
        )  # fmt: skip
        as_web_1 = Metadata(actor=users.host("web-1"))  # what it claims; never believed
        by_web_2 = Message.report(claim, as_web_1)
        await (await ferry.broker.bus(users.host("web-2"))).publish(REPORTS, [by_web_2])
        # The staging agent may publish staging.* only: a host sync dressed up as one.
        dressed = Message.report(claim, as_web_1).model_copy(
            update={"routing_key": "staging.completed"}
        )
        await (await ferry.broker.bus(users.staging)).publish(REPORTS, [dressed])
        nobody = Message.report(claim, as_web_1)
        await publish_without_sender(ferry, users.host("web-2"), nobody)

        rejected = await rejections(ferry, 3)
        by_sender = {e["data"]["sender"]: e for e in rejected}
        assert set(by_sender) == {users.host("web-2"), users.staging, None}
        for sender, event in by_sender.items():
            assert event["metadata"]["actor"] == (sender or "ferry")
            assert event["stream"] == "rejected-reports"
            data = event["data"]
            assert (data["claimed_type"], data["ticket_id"], data["host"]) == (
                "host.sync_completed", ticket, "web-1",
            )  # fmt: skip
        assert "only " + users.host("web-1") in by_sender[users.host("web-2")]["data"]["reason"]
        assert by_sender[None]["data"]["reason"].startswith("no sender")
        after = await ferry.ticket(ticket)
        assert (after["state"], after["stream_version"]) == ("publishing", before["stream_version"])
        assert after["hosts"]["web-1"]["state"] == "syncing"
        assert not (ferry.host_target("web-1") / "releases" / "2").exists()

        # The real web-1 comes back: its own report, in its own name, publishes the ticket.
        await ferry.start("web-1")
        await ferry.wait_state(ticket, "published")
        assert (ferry.host_target("web-1") / "current").readlink() == Path("releases/2")


async def web_2_done(ferry: Strict, ticket: str) -> bool:
    hosts = (await ferry.ticket(ticket))["hosts"]
    return bool(hosts.get("web-2", {}).get("state") == "completed")  # {} until fanned out


async def test_a_heartbeat_for_another_host_is_dropped(
    provisioned: Provisioned, pg_url: str, tmp_path: Path
) -> None:
    async with strict_ferry(tmp_path, provisioned, pg_url, agents=("web-2",)) as ferry:
        web_2 = await ferry.broker.bus(ferry.broker.users.host("web-2"))

        async def web_2_online() -> bool:
            hosts = {h["host"]: h for h in await ferry.call("dev", "GET", "/hosts")}
            return "web-2" in hosts and hosts["web-2"]["online"]

        await wait_until(web_2_online, "web-2's own heartbeat")
        beat = AgentHeartbeat(
            host="web-1", agent="ferry-rsync-agent", agent_version="6.6.6", apps={"shop": 99},
            sent_at=datetime.now(UTC).isoformat(),
        )  # fmt: skip
        for _ in range(3):
            await web_2.publish(REPORTS, [Message.report(beat)], mandatory=False)

        async def dropped() -> bool:
            headers = await ferry.api.user("admin", "admin")
            text = (await ferry.api.http.get("/metrics", headers=headers)).text
            return "ferry_heartbeats_dropped_total 3.0" in text

        await wait_until(dropped, "three dropped heartbeats")
        hosts = {h["host"]: h for h in await ferry.call("dev", "GET", "/hosts")}
        assert hosts["web-1"]["online"] is False, hosts.get("web-1")
        assert hosts["web-1"]["agent_version"] is None
        assert hosts["web-2"]["online"] is True
