"""The relay against the real stores and the real RabbitMQ: global order, routing, blocked
commands, a broker restart (of a private node), a SIGKILLed relay, and two relays of which only
one publishes."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from ferry_events import Message, NewEvent
from ferry_events.backends import open_bus, open_store
from ferry_events.bus import Bus, Handler
from ferry_events.inbox import FileInbox, MemoryInbox, idempotent
from ferry_events.projection import LogWithReadModels
from ferry_events.registry import Event
from ferry_events.relay import Backoff, Relay
from ferry_events.schemas import HostSyncRequested, TicketApproved, TicketSubmitted
from private_rabbitmq import PlainNode, private_tcp_node

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]

RUN_RELAY = Path(__file__).with_name("run_relay.py")


def fast_retry() -> Backoff:
    return Backoff(first=0.1, cap=1.0)


class Received:
    """What a consumer got: every delivery, and the effects an idempotent handler had."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.effects: Counter[str] = Counter()

    async def record(self, message: Message) -> None:
        self.messages.append(message)

    async def take_effect(self, message: Message) -> None:
        self.effects[message.message_id] += 1

    def positions(self) -> list[int]:
        return [int(message.headers["position"]) for message in self.messages]

    def distinct(self) -> int:
        return len({message.message_id for message in self.messages})


@pytest.fixture
async def store(pg_url: str) -> AsyncIterator[LogWithReadModels]:
    opened = await open_store(pg_url)
    await opened.migrate()
    yield opened
    await opened.close()


@pytest.fixture
async def bus(amqp_url: str) -> AsyncIterator[Bus]:
    opened = await open_bus(amqp_url)
    yield opened
    await opened.close()


def submitted(ticket: int) -> Event:
    return TicketSubmitted(
        ticket_id=f"t{ticket}", app="shop", kind="deploy", reason="r", author="dev"
    )


def sync_requested(ticket: int, host: str) -> Event:
    return HostSyncRequested(ticket_id=f"t{ticket}", app="shop", host=host, version=1, digest="d")


async def append(store: LogWithReadModels, stream: str, *events: Event) -> None:
    await store.append(stream, [NewEvent.of(event) for event in events], expected_version=None)


async def append_tickets(store: LogWithReadModels, tickets: range, per_ticket: int = 1) -> None:
    for ticket in tickets:
        approvals = [TicketApproved(ticket_id=f"t{ticket}", by="lead")] * (per_ticket - 1)
        await append(store, f"ticket-{ticket}", submitted(ticket), *approvals)


async def eventually(check: Callable[[], bool | Awaitable[bool]], timeout: float = 60.0) -> None:
    async with asyncio.timeout(timeout):
        while True:
            result = check()
            if result if isinstance(result, bool) else await result:
                return
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def running(relay: Relay) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(relay.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.contextmanager
def relay_process(pg_url: str, amqp_url: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as stderr:
        process = subprocess.Popen(
            [sys.executable, str(RUN_RELAY), pg_url, amqp_url], stderr=stderr
        )
    try:
        yield process
    finally:
        process.kill()
        process.wait()


async def test_relay_delivers_every_event_in_global_order(store_url: str, bus: Bus) -> None:
    store = await open_store(store_url)
    await store.migrate()
    received = Received()
    await bus.declare_queue("audit", ["#"])
    await bus.consume("audit", received.record)
    await append_tickets(store, range(300), per_ticket=3)
    await append(store, "ticket-7", sync_requested(7, "web-1"), sync_requested(7, "web-2"))
    relay = Relay(store, bus)
    try:
        async with running(relay):
            await eventually(lambda: len(received.messages) >= 902)
            await append_tickets(store, range(300, 400))  # live, after the catch-up
            await eventually(lambda: len(received.messages) >= 1002)
            await eventually(lambda: _checkpoint_is(store, "relay", 1002))
            assert await relay.lag() == 0
        stored = await store.read_all(0, 2000)
    finally:
        await store.close()

    assert received.positions() == list(range(1, 1003))
    assert [m.message_id for m in received.messages] == [str(e.event_id) for e in stored]
    assert [m.stored_event() for m in received.messages] == stored
    assert {m.routing_key for m in received.messages} == {
        "ticket.submitted",
        "ticket.approved",
        "host.sync_requested.web-1",
        "host.sync_requested.web-2",
    }
    assert received.messages[900].routing_key == "host.sync_requested.web-1"


async def test_an_unroutable_command_blocks_the_relay_until_its_queue_exists(
    store: LogWithReadModels, bus: Bus
) -> None:
    tickets, agent = Received(), Received()
    await bus.declare_queue("tickets", ["ticket.#"])
    await bus.consume("tickets", tickets.record)
    await append_tickets(store, range(3))
    await append(
        store, "ticket-0", sync_requested(0, "web-1"), TicketApproved(ticket_id="t0", by="lead")
    )
    relay = Relay(store, bus, backoff=fast_retry())
    async with running(relay):
        await eventually(lambda: len(tickets.messages) == 3)
        await asyncio.sleep(3)  # several retries of the command
        assert tickets.positions() == [1, 2, 3]  # nothing after it, nothing twice
        assert await store.checkpoint("relay") == 3
        assert await relay.lag() == 2

        await bus.declare_queue("agent-web-1", ["host.sync_requested.web-1"])
        await bus.consume("agent-web-1", agent.record)
        await eventually(lambda: len(tickets.messages) == 4)
        await eventually(lambda: _checkpoint_is(store, "relay", 5))

    assert [m.routing_key for m in agent.messages] == ["host.sync_requested.web-1"]
    assert agent.positions() == [4]
    assert tickets.positions() == [1, 2, 3, 5]


async def test_relay_killed_mid_batch_delivers_everything_after_restart(
    store: LogWithReadModels, pg_url: str, amqp_url: str, bus: Bus, tmp_path: Path
) -> None:
    received = Received()
    inbox = FileInbox(tmp_path / "inbox.ids")
    await bus.declare_queue("audit", ["#"])
    await bus.consume("audit", _recording(received, idempotent(received.take_effect, inbox)))
    await append_tickets(store, range(600), per_ticket=25)
    total = await store.last_position()

    with relay_process(pg_url, amqp_url, tmp_path / "relay.log") as relay:
        await eventually(lambda: len(received.messages) >= 2200)
        relay.send_signal(signal.SIGKILL)
        relay.wait()
    killed_at = await store.checkpoint("relay")
    assert killed_at < total, "the relay finished before it could be killed"
    # Only what the broker confirmed was checkpointed: all of it is in the queue.
    await eventually(lambda: received.distinct() >= killed_at)

    with relay_process(pg_url, amqp_url, tmp_path / "relay.log"):
        await eventually(lambda: received.distinct() == total, timeout=120)
        await eventually(lambda: _checkpoint_is(store, "relay", total))
    inbox.close()

    assert len(received.effects) == total
    assert set(received.effects.values()) == {1}  # redelivered or republished: one effect each


async def test_only_one_of_two_relays_publishes_and_the_other_takes_over(
    store: LogWithReadModels, pg_url: str, amqp_url: str, bus: Bus
) -> None:
    received = Received()
    await bus.declare_queue("audit", ["#"])
    await bus.consume("audit", received.record)
    other_store, other_bus = await open_store(pg_url), await open_bus(amqp_url)
    leader = Relay(other_store, other_bus, standby_seconds=0.2)
    standby = Relay(store, bus, standby_seconds=0.2)
    try:
        async with running(leader) as leader_task:
            await eventually(lambda: leader.active)
            async with running(standby):
                await asyncio.sleep(1)  # several attempts to take the lock
                await append_tickets(store, range(500))
                await eventually(lambda: _checkpoint_is(store, "relay", 500))
                assert not standby.active
                await eventually(lambda: len(received.messages) >= 500)
                assert received.positions() == list(range(1, 501))  # published once, not twice

                leader_task.cancel()  # the active relay stops
                await eventually(lambda: standby.active, timeout=10)
                await append_tickets(store, range(500, 600))
                await eventually(lambda: _checkpoint_is(store, "relay", 600))
                await eventually(lambda: len(received.messages) >= 600)
    finally:
        await other_bus.close()
        await other_store.close()

    assert (leader.published, standby.published) == (500, 100)
    assert received.positions() == list(range(1, 601))


@pytest.fixture
def private_broker() -> Iterator[PlainNode]:
    """A RabbitMQ node of this test's own: restarting it disturbs nobody else."""
    with private_tcp_node() as node:
        yield node


@pytest.mark.timeout(240)
async def test_relay_survives_a_broker_restart(
    store: LogWithReadModels, private_broker: PlainNode
) -> None:
    """Restarts a private RabbitMQ node (stop_app, start_app), never the shared one."""
    received = Received()
    bus = await open_bus(private_broker.amqp_url())
    await bus.declare_queue("audit", ["#"])
    await bus.consume(
        "audit", _recording(received, idempotent(received.take_effect, MemoryInbox()))
    )
    relay_bus = await open_bus(private_broker.amqp_url())
    appending = asyncio.create_task(_append_slowly(store, range(600), pause=0.02))
    try:
        relay = Relay(store, relay_bus, backoff=fast_retry())
        async with running(relay):
            await eventually(lambda: len(received.messages) >= 100)
            try:
                await asyncio.to_thread(private_broker.ctl, "stop_app")
                await asyncio.sleep(4)
                assert await relay.lag() > 50  # appends went on; nothing could be confirmed
            finally:
                await asyncio.to_thread(private_broker.ctl, "start_app")
                await asyncio.to_thread(private_broker.ctl, "await_startup")
            await appending
            await eventually(lambda: received.distinct() == 600, timeout=120)
    finally:
        appending.cancel()
        await relay_bus.close()
        await bus.close()

    assert set(received.effects.values()) == {1} and len(received.effects) == 600
    assert await store.checkpoint("relay") == 600


def _recording(received: Received, then: Handler) -> Handler:
    async def handle(message: Message) -> None:
        await received.record(message)
        await then(message)

    return handle


async def _append_slowly(store: LogWithReadModels, tickets: range, pause: float) -> None:
    for ticket in tickets:
        await append(store, f"ticket-{ticket}", submitted(ticket))
        await asyncio.sleep(pause)


async def _checkpoint_is(store: LogWithReadModels, name: str, position: int) -> bool:
    return await store.checkpoint(name) == position
