"""The Bus contract: every test runs against MemoryBus and RabbitMqBus (the bus_url fixture), so
the embedded mode behaves like the distributed one.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from ferry_events.bus import (
    ERROR_HEADER,
    EVENTS,
    REPORTS,
    Bus,
    BusError,
    Unroutable,
    dead_letter_queue,
)
from ferry_events.bus_memory import MemoryBroker, MemoryBus
from ferry_events.bus_rabbitmq import RabbitMqBus
from ferry_events.envelope import Message

OpenBus = Callable[[], Awaitable[Bus]]
SENTINEL = "test.sentinel"  # published last: a queue that yields it first held nothing before it


@pytest.fixture
async def open_bus(bus_url: str) -> AsyncIterator[OpenBus]:
    """Opens connections to one broker: the test's vhost, or one shared MemoryBroker."""
    broker = MemoryBroker()
    opened: list[Bus] = []

    async def connect() -> Bus:
        if bus_url.startswith("memory://"):
            bus: Bus = MemoryBus(broker)
        else:
            bus = await RabbitMqBus.connect(bus_url, name=f"ferry-test-{uuid.uuid4().hex[:8]}")
        opened.append(bus)
        return bus

    yield connect
    for bus in opened:
        await bus.close()


@pytest.fixture
async def bus(open_bus: OpenBus) -> Bus:
    return await open_bus()


@pytest.fixture
def queue() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"


def message(routing_key: str, n: int = 0) -> Message:
    return Message(
        message_id=str(uuid.uuid4()), routing_key=routing_key, type="test.pinged", body={"n": n}
    )


async def take(bus: Bus, queue: str, count: int) -> list[Message]:
    """The first `count` messages the queue delivers (acked), in delivery order."""
    received: list[Message] = []
    enough = asyncio.Event()

    async def collect(msg: Message) -> None:
        received.append(msg)
        if len(received) >= count:
            enough.set()

    consumer = await bus.consume(queue, collect, prefetch=1)
    try:
        await asyncio.wait_for(enough.wait(), timeout=15)
    finally:
        await consumer.stop()
    return received[:count]


async def take_until_sentinel(bus: Bus, queue: str) -> list[str]:
    """Routing keys the queue delivers before the sentinel."""
    keys: list[str] = []
    seen_sentinel = asyncio.Event()

    async def collect(msg: Message) -> None:
        if msg.routing_key == SENTINEL:
            seen_sentinel.set()
        elif not seen_sentinel.is_set():
            keys.append(msg.routing_key)

    consumer = await bus.consume(queue, collect, prefetch=1)
    try:
        await asyncio.wait_for(seen_sentinel.wait(), timeout=15)
    finally:
        await consumer.stop()
    return keys


async def assert_queue_empty(bus: Bus, queue: str) -> None:
    await bus.publish(EVENTS, [message(SENTINEL)])
    [first] = await take(bus, queue, 1)
    assert first.routing_key == SENTINEL, f"{queue} still held {first}"


@pytest.mark.parametrize("exchange", [EVENTS, REPORTS])
async def test_round_trip_keeps_every_field(bus: Bus, queue: str, exchange: str) -> None:
    await bus.declare_queue(queue, ["ticket.#"], exchange)
    sent = Message(
        message_id=str(uuid.uuid4()),
        routing_key="ticket.submitted",
        type="ticket.submitted",
        body={
            "reason": "Grüße, 修复 ✓",
            "n": 3,
            "ratio": 1.5,
            "ok": True,
            "none": None,
            "hosts": ["web-1", {"name": "web-2"}],
            "nested": {"deep": {"er": []}},
        },
        headers={"stream": "ticket-1", "position": "42"},
    )
    await bus.publish(exchange, [sent])
    assert await take(bus, queue, 1) == [sent]


async def test_topic_bindings_route_only_matching_keys(bus: Bus) -> None:
    patterns = {
        "web1": "host.sync_requested.web-1",
        "web2": "host.sync_requested.web-2",
        "one_word": "host.*.web-1",
        "zero_or_more": "host.#",
        "hash_inside": "host.#.web-1",
    }
    keys = [
        "host.sync_requested.web-1",
        "host.sync_requested.web-2",
        "host",
        "host.web-1",
        "host.sync_requested.web-1.extra",
        "hostile.sync_requested.web-1",
    ]
    expected = {
        "web1": ["host.sync_requested.web-1"],
        "web2": ["host.sync_requested.web-2"],
        "one_word": ["host.sync_requested.web-1"],
        "zero_or_more": keys[:5],
        "hash_inside": ["host.sync_requested.web-1", "host.web-1"],
    }
    prefix = uuid.uuid4().hex[:8]
    for name, pattern in patterns.items():
        await bus.declare_queue(f"{prefix}-{name}", [pattern, SENTINEL])
    await bus.publish(EVENTS, [message(key) for key in keys], mandatory=False)
    await bus.publish(EVENTS, [message(SENTINEL)])
    routed = {name: await take_until_sentinel(bus, f"{prefix}-{name}") for name in patterns}
    assert routed == expected


async def test_mandatory_message_without_queue_raises_unroutable(bus: Bus, queue: str) -> None:
    await bus.declare_queue(queue, ["test.bound"])
    with pytest.raises(Unroutable):
        await bus.publish(EVENTS, [message("test.nobody_listens")])
    kept = message("test.bound")
    await bus.publish(EVENTS, [kept])  # the bus is still usable
    assert await take(bus, queue, 1) == [kept]


async def test_non_mandatory_unroutable_message_is_dropped(bus: Bus, queue: str) -> None:
    await bus.declare_queue(queue, ["test.bound"])
    kept = message("test.bound")
    await bus.publish(EVENTS, [message("test.nobody_listens"), kept], mandatory=False)
    assert await take(bus, queue, 1) == [kept]


async def test_consuming_an_undeclared_queue_raises(bus: Bus, queue: str) -> None:
    async def ignore(msg: Message) -> None:
        pass

    with pytest.raises(BusError):
        await bus.consume(queue, ignore)


async def test_handler_failing_twice_gets_the_message_three_times(bus: Bus, queue: str) -> None:
    await bus.declare_queue(queue, ["test.#"])
    sent = message("test.flaky")
    await bus.publish(EVENTS, [sent])
    calls: list[Message] = []
    third = asyncio.Event()

    async def flaky(msg: Message) -> None:
        calls.append(msg)
        if len(calls) <= 2:
            raise RuntimeError("not yet")
        third.set()

    consumer = await bus.consume(queue, flaky, max_attempts=5)
    await asyncio.wait_for(third.wait(), timeout=15)
    await consumer.stop()
    assert [c.message_id for c in calls] == [sent.message_id] * 3
    assert [c.redelivered for c in calls] == [False, True, True]
    await assert_queue_empty(bus, queue)


async def test_handler_always_failing_dead_letters_with_reason(bus: Bus, queue: str) -> None:
    await bus.declare_queue(queue, ["test.#"])
    sent = message("test.poison")
    await bus.publish(EVENTS, [sent])
    attempts: list[Message] = []

    async def broken(msg: Message) -> None:
        attempts.append(msg)
        raise ValueError("disk full")

    consumer = await bus.consume(queue, broken, max_attempts=3)
    [dead] = await take(bus, dead_letter_queue(queue), 1)
    await consumer.stop()
    assert len(attempts) == 3
    assert (dead.message_id, dead.type, dead.body) == (sent.message_id, sent.type, sent.body)
    assert dead.headers[ERROR_HEADER] == "ValueError: disk full"
    await assert_queue_empty(bus, queue)


async def test_handler_cut_off_mid_flight_gets_it_redelivered(
    open_bus: OpenBus, queue: str
) -> None:
    first, second = await open_bus(), await open_bus()
    await first.declare_queue(queue, ["test.#"])
    sent = message("test.interrupted")
    await first.publish(EVENTS, [sent])
    started = asyncio.Event()

    async def hangs(msg: Message) -> None:
        started.set()
        await asyncio.Event().wait()

    await first.consume(queue, hangs)
    await asyncio.wait_for(started.wait(), timeout=15)
    await first.close()
    [again] = await take(second, queue, 1)
    assert again.message_id == sent.message_id
    assert again.redelivered


async def test_stop_lets_in_flight_handler_finish_and_ack(bus: Bus, queue: str) -> None:
    await bus.declare_queue(queue, ["test.#"])
    sent = message("test.slow")
    await bus.publish(EVENTS, [sent])
    started, release = asyncio.Event(), asyncio.Event()
    handled: list[Message] = []

    async def slow(msg: Message) -> None:
        started.set()
        await release.wait()
        handled.append(msg)

    consumer = await bus.consume(queue, slow)
    await asyncio.wait_for(started.wait(), timeout=15)
    stopping = asyncio.create_task(consumer.stop())
    await asyncio.sleep(0.2)
    assert not stopping.done(), "stop() returned while a handler was still running"
    release.set()
    await asyncio.wait_for(stopping, timeout=15)
    assert handled == [sent]
    await assert_queue_empty(bus, queue)


async def test_prefetch_bounds_concurrent_handlers(bus: Bus, queue: str) -> None:
    await bus.declare_queue(queue, ["test.#"])
    await bus.publish(EVENTS, [message("test.busy", n) for n in range(6)])
    running, peak, handled = 0, 0, 0
    all_done = asyncio.Event()

    async def busy(msg: Message) -> None:
        nonlocal running, peak, handled
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.2)
        running -= 1
        handled += 1
        if handled == 6:
            all_done.set()

    consumer = await bus.consume(queue, busy, prefetch=2)
    await asyncio.wait_for(all_done.wait(), timeout=15)
    await consumer.stop()
    assert peak == 2


async def test_single_consumer_sees_publication_order(bus: Bus, queue: str) -> None:
    await bus.declare_queue(queue, ["test.#"])
    await bus.publish(EVENTS, [message("test.ordered", n) for n in range(350)])
    await bus.publish(EVENTS, [message("test.ordered", n) for n in range(350, 400)])
    received = await take(bus, queue, 400)
    assert [msg.body["n"] for msg in received] == list(range(400))


def rabbitmqctl(*args: str) -> str:
    done = subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)
    return done.stdout.decode()


def connection_pids(name: str) -> list[str]:
    """Broker-side ids of the connections with this client-provided name."""
    rows = rabbitmqctl("list_connections", "--no-table-headers", "pid", "client_properties")
    return [row.split("\t")[0] for row in rows.splitlines() if f'"connection_name","{name}"' in row]


async def test_rabbitmq_queue_outlives_the_connection(amqp_url: str, queue: str) -> None:
    vhost = amqp_url.rsplit("/", 1)[1]
    publisher = await RabbitMqBus.connect(amqp_url)
    await publisher.declare_queue(queue, ["test.#"])
    sent = message("test.kept")
    await publisher.publish(EVENTS, [sent])
    await publisher.close()

    queues = json.loads(
        rabbitmqctl("list_queues", "-p", vhost, "name", "type", "durable", "--formatter", "json")
    )
    assert {"name": queue, "type": "quorum", "durable": True} in queues
    consumer = await RabbitMqBus.connect(amqp_url)
    try:
        assert await take(consumer, queue, 1) == [sent]
    finally:
        await consumer.close()


async def test_rabbitmq_consumer_resumes_after_connection_is_closed(
    amqp_url: str, queue: str
) -> None:
    name = f"ferry-test-{queue}"
    bus = await RabbitMqBus.connect(amqp_url, name=name, reconnect_interval=0.5)
    try:
        await bus.declare_queue(queue, ["test.#"])
        received: list[Message] = []

        async def collect(msg: Message) -> None:
            received.append(msg)

        await bus.consume(queue, collect)
        [before] = connection_pids(name)
        rabbitmqctl("close_connection", before, "test: simulated network loss")

        sent = message("test.after_reconnect")
        async with asyncio.timeout(30):
            while True:
                try:
                    await bus.publish(EVENTS, [sent])
                    break
                except BusError:
                    await asyncio.sleep(0.2)
            while sent not in received:
                await asyncio.sleep(0.05)
        [after] = connection_pids(name)
        assert after != before
    finally:
        await bus.close()
