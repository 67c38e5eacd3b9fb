"""Least privilege on the real broker: every user provisioned by deploy/broker/setup.py can do
its part's work and nothing else; a report's sender is the broker-checked login, never a claim.
"""

from __future__ import annotations

import asyncio
import stat
import subprocess
import uuid
from collections.abc import Awaitable, Callable

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel
from aiormq.exceptions import ChannelAccessRefused, ChannelPreconditionFailed
from broker_provisioning import HOSTS, Provisioned
from ferry_events.bus import EVENTS, REPORTS, Bus, BusError, Refused
from ferry_events.envelope import Message
from ferry_events.topology import (
    HEARTBEATS_QUEUE,
    PUBLISHER_QUEUE,
    REPORTS_QUEUE,
    STAGING_QUEUE,
    api_queues,
    host_commands,
    host_queue,
)

RawAction = Callable[[AbstractChannel], Awaitable[object]]


def message(key: str) -> Message:
    return Message(message_id=str(uuid.uuid4()), routing_key=key, type=key, body={"k": key})


async def take(bus: Bus, queue: str, count: int) -> list[Message]:
    """The first `count` messages the queue delivers, taken (acked) by one consumer."""
    received: list[Message] = []
    enough = asyncio.Event()

    async def keep(msg: Message) -> None:
        received.append(msg)
        if len(received) >= count:
            enough.set()

    consumer = await bus.consume(queue, keep, prefetch=1)
    try:
        await asyncio.wait_for(enough.wait(), timeout=15)
    finally:
        await consumer.stop()
    return received[:count]


async def take_one(bus: Bus, queue: str) -> Message:
    [taken] = await take(bus, queue, 1)
    return taken


async def broker_refuses(
    url: str, action: RawAction, error: type[Exception] = ChannelAccessRefused
) -> None:
    """A plain AMQP client (no Bus in the way) logged in as the URL's user is refused."""
    async with await aio_pika.connect(url) as connection:
        channel = await connection.channel()
        with pytest.raises(error):
            await action(channel)


async def publish_raw(channel: AbstractChannel, exchange: str, key: str, user_id: str) -> None:
    target = await channel.get_exchange(exchange, ensure=False)
    await target.publish(aio_pika.Message(b"{}", message_id="raw", user_id=user_id), key)


async def bind_raw(channel: AbstractChannel, queue: str, key: str) -> None:
    await (await channel.get_queue(queue)).bind(EVENTS, routing_key=key)


async def test_each_agent_takes_its_commands_and_reports_as_itself(
    provisioned: Provisioned,
) -> None:
    users = provisioned.users
    api = await provisioned.bus(users.api)
    agents = {
        STAGING_QUEUE: (await provisioned.bus(users.staging), "ticket.staging_requested"),
        PUBLISHER_QUEUE: (await provisioned.bus(users.publisher), "release.tag_requested"),
        host_queue("web-1"): (await provisioned.bus(users.host("web-1")), host_commands("web-1")),
    }
    reports = {STAGING_QUEUE: "staging.completed", PUBLISHER_QUEUE: "release.tagged"}
    for queue, (agent, key) in agents.items():
        await agent.declare_queue(queue, [key])  # refused, so: the provisioned queue
        await api.publish(EVENTS, [message(key)])  # the relay
        assert (await take_one(agent, queue)).routing_key == key
        await agent.publish(REPORTS, [message(reports.get(queue, "host.sync_completed"))])
        await agent.publish(REPORTS, [message("agent.heartbeat")])
    taken = await take(api, REPORTS_QUEUE, len(agents))
    assert {(m.routing_key, m.sender) for m in taken} == {
        ("staging.completed", users.staging),
        ("release.tagged", users.publisher),
        ("host.sync_completed", users.host("web-1")),
    }
    beats = await take(api, HEARTBEATS_QUEUE, len(agents))
    assert sorted(m.sender or "" for m in beats) == sorted(a.user for a, _ in agents.values())


async def test_a_host_agent_cannot_take_another_hosts_commands(provisioned: Provisioned) -> None:
    users = provisioned.users
    api, web1 = await provisioned.bus(users.api), await provisioned.bus(users.host("web-1"))
    command = message(host_commands("web-2"))
    await api.publish(EVENTS, [command])
    with pytest.raises(Refused):
        await web1.consume(host_queue("web-2"), lambda msg: asyncio.sleep(0))
    url = provisioned.url(users.host("web-1"))
    await broker_refuses(url, lambda ch: _get(ch, host_queue("web-2")))
    await broker_refuses(url, lambda ch: _purge(ch, host_queue("web-2")))
    web2 = await provisioned.bus(users.host("web-2"))
    assert (await take_one(web2, host_queue("web-2"))).message_id == command.message_id


async def test_a_host_agent_cannot_send_commands(provisioned: Provisioned) -> None:
    users = provisioned.users
    web1, web2 = (
        await provisioned.bus(users.host("web-1")),
        await provisioned.bus(users.host("web-2")),
    )
    for key in (host_commands("web-2"), host_commands("web-1"), "ticket.staging_requested"):
        with pytest.raises(Refused):
            await web1.publish(EVENTS, [message(key)])
    # Still connected and useful after the refusals: its own report goes through.
    await web1.publish(REPORTS, [message("host.sync_completed")])
    api = await provisioned.bus(users.api)
    assert (await take_one(api, REPORTS_QUEUE)).sender == users.host("web-1")
    await api.publish(EVENTS, [genuine := message(host_commands("web-2"))])
    assert (await take_one(web2, host_queue("web-2"))).message_id == genuine.message_id


async def test_a_host_agent_cannot_read_other_events(provisioned: Provisioned) -> None:
    user = provisioned.users.host("web-1")
    web1, url = await provisioned.bus(user), provisioned.url(user)
    await broker_refuses(url, lambda ch: bind_raw(ch, host_queue("web-1"), "#"))
    await broker_refuses(url, lambda ch: bind_raw(ch, host_queue("web-1"), host_commands("web-2")))
    await broker_refuses(url, lambda ch: ch.declare_queue("snoop", exclusive=True))
    await broker_refuses(url, lambda ch: ch.declare_queue("", exclusive=True))  # server-named
    for queue in (REPORTS_QUEUE, HEARTBEATS_QUEUE, STAGING_QUEUE, PUBLISHER_QUEUE):
        with pytest.raises(Refused):
            await web1.consume(queue, lambda msg: asyncio.sleep(0))
    with pytest.raises(BusError, match=r"'snoop' does not exist .*deploy/broker/setup\.py"):
        await web1.declare_queue("snoop", ["#"])


async def test_a_host_agent_cannot_report_as_anyone_else(provisioned: Provisioned) -> None:
    users = provisioned.users
    web1, api = await provisioned.bus(users.host("web-1")), await provisioned.bus(users.api)
    url = provisioned.url(users.host("web-1"))
    for other in (users.host("web-2"), users.staging, users.api):
        await broker_refuses(
            url,
            lambda ch, other=other: publish_raw(ch, REPORTS, "host.sync_completed", other),
            ChannelPreconditionFailed,
        )
    for foreign in ("staging.completed", "release.tagged", "ticket.approved"):
        with pytest.raises(Refused):
            await web1.publish(REPORTS, [message(foreign)])
    claimed = message("host.sync_failed").model_copy(update={"sender": users.host("web-2")})
    await web1.publish(REPORTS, [claimed])
    taken = await take_one(api, REPORTS_QUEUE)
    assert (taken.message_id, taken.sender) == (claimed.message_id, users.host("web-1"))


@pytest.mark.parametrize("role", ["staging", "publisher"])
async def test_staging_agent_and_publisher_are_confined_likewise(
    provisioned: Provisioned, role: str
) -> None:
    users = provisioned.users
    if role == "staging":
        user, queue, own_report, other = users.staging, STAGING_QUEUE, "staging.failed", "release"
    else:
        user, queue, own_report, other = (
            users.publisher,
            PUBLISHER_QUEUE,
            "release.tagged",
            "staging",
        )
    agent, url = await provisioned.bus(user), provisioned.url(user)
    others = [PUBLISHER_QUEUE if role == "staging" else STAGING_QUEUE, host_queue("web-1")]
    for queue in [*others, REPORTS_QUEUE]:
        with pytest.raises(Refused):
            await agent.consume(queue, lambda msg: asyncio.sleep(0))
    for key in ("release.tag_requested", "ticket.staging_requested", host_commands("web-1")):
        with pytest.raises(Refused):
            await agent.publish(EVENTS, [message(key)])
    for foreign in ("host.sync_completed", f"{other}.completed", f"{other}.tagged"):
        with pytest.raises(Refused):
            await agent.publish(REPORTS, [message(foreign)])
    await broker_refuses(url, lambda ch: bind_raw(ch, queue, "#"))
    await broker_refuses(
        url, lambda ch: publish_raw(ch, REPORTS, own_report, users.api), ChannelPreconditionFailed
    )
    await agent.publish(REPORTS, [message(own_report)])
    api = await provisioned.bus(users.api)
    assert (await take_one(api, REPORTS_QUEUE)).sender == user


async def test_the_api_user_does_what_the_api_does_and_no_more(provisioned: Provisioned) -> None:
    users = provisioned.users
    api = await provisioned.bus(users.api)
    for spec in api_queues():  # at every start, as today
        await api.declare_queue(spec.name, spec.bindings, spec.exchange)
    # An app gains host web-3: the API declares its queue before setup.py made its user.
    await api.declare_queue(host_queue("web-3"), [host_commands("web-3")])
    await api.publish(EVENTS, [message("ticket.submitted")], mandatory=False)  # every event
    await api.publish(EVENTS, [message(host_commands("web-3"))])  # a command: mandatory
    provisioned.setup(*HOSTS, "web-3")
    web3 = await provisioned.bus(users.host("web-3"))
    assert (await take_one(web3, host_queue("web-3"))).sender == users.api
    with pytest.raises(Refused):
        await api.publish(REPORTS, [message("host.sync_completed")])  # no report of its own


def test_setup_is_idempotent_and_never_shows_a_password(provisioned: Provisioned) -> None:
    before = {p.name: p.read_text() for p in provisioned.password_dir.iterdir()}
    again = provisioned.setup(*HOSTS)
    after = {p.name: p.read_text() for p in provisioned.password_dir.iterdir()}
    assert after == before  # nothing regenerated
    for path in provisioned.password_dir.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.read_text().strip() not in again.stdout + again.stderr
    assert stat.S_IMODE(provisioned.password_dir.stat().st_mode) == 0o700


def test_setup_refuses_a_host_name_that_is_no_host_name(provisioned: Provisioned) -> None:
    with pytest.raises(subprocess.CalledProcessError) as refused:
        provisioned.setup("web-1", "web-1$|.*")
    assert "not a host name" in refused.value.stderr


async def _get(channel: AbstractChannel, queue: str) -> object:
    return await (await channel.get_queue(queue)).get(fail=False)


async def _purge(channel: AbstractChannel, queue: str) -> object:
    return await (await channel.get_queue(queue)).purge()
