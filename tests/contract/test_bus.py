"""The Bus contract: every test runs against MemoryBus and RabbitMqBus (the bus_url fixture), so
the embedded mode behaves like the distributed one.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Protocol

import aio_pika
import pytest
from aiormq.exceptions import ChannelPreconditionFailed
from ferry_events.bus import (
    DEAD,
    ERROR_HEADER,
    EVENTS,
    EXCHANGE_HEADER,
    QUEUE_HEADER,
    REPORTS,
    ROUTING_KEY_HEADER,
    SENDER_HEADER,
    Bus,
    BusError,
    NotConfirmed,
    Unavailable,
    Undeliverable,
    Unroutable,
    dead_letter_queue,
)
from ferry_events.bus_memory import MemoryBroker, MemoryBus
from ferry_events.bus_rabbitmq import RabbitMqBus
from ferry_events.envelope import Message
from ferry_events.store import StoreError

SENTINEL = "test.sentinel"  # published last: a queue that yields it first held nothing before it


class OpenBus(Protocol):
    async def __call__(self, *, as_another_user: bool = False) -> Bus: ...


@pytest.fixture
def broker_users(bus_url: str) -> Iterator[Callable[[], str]]:
    """Makes users of the test's vhost with full permissions: `name:password@` for a URL."""
    made: list[str] = []

    def make() -> str:
        name, password = f"ferry-test-{uuid.uuid4().hex[:8]}", secrets.token_urlsafe(16)
        vhost = bus_url.rsplit("/", 1)[1]
        rabbitmqctl("add_user", name, stdin=password)  # never on a command line
        made.append(name)
        rabbitmqctl("set_permissions", "-p", vhost, name, ".*", ".*", ".*")
        return f"{name}:{password}@"

    yield make
    for name in made:
        rabbitmqctl("delete_user", name)


@pytest.fixture
async def open_bus(bus_url: str, request: pytest.FixtureRequest) -> AsyncIterator[OpenBus]:
    """Opens connections to one broker: the test's vhost, or one shared MemoryBroker; as the
    default user (guest, `local`) or as a new user of their own."""
    broker = MemoryBroker()
    opened: list[Bus] = []

    async def connect(*, as_another_user: bool = False) -> Bus:
        name = f"ferry-test-{uuid.uuid4().hex[:8]}"
        if bus_url.startswith("memory://"):
            bus: Bus = MemoryBus(broker).as_user(name) if as_another_user else MemoryBus(broker)
        elif as_another_user:
            login = request.getfixturevalue("broker_users")()
            bus = await RabbitMqBus.connect(bus_url.replace("guest:guest@", login), name=name)
        else:
            bus = await RabbitMqBus.connect(bus_url, name=name)
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


def as_received(bus: Bus, *sent: Message) -> list[Message]:
    """What a consumer gets for messages `bus` published: the same, from the bus's user."""
    return [message.model_copy(update={"sender": bus.user}) for message in sent]


async def assert_queue_empty(bus: Bus, queue: str) -> None:
    await bus.publish(EVENTS, [message(SENTINEL)])
    [first] = await take(bus, queue, 1)
    assert first.routing_key == SENTINEL, f"{queue} still held {first}"


async def assert_no_dead_letter(bus: Bus, queue: str) -> None:
    dead = dead_letter_queue(queue)
    await bus.publish(DEAD, [message(dead)])  # a sentinel, straight into the dead-letter queue
    [first] = await take(bus, dead, 1)
    assert first.routing_key == dead, f"{queue} dead-lettered {first}"


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
    assert await take(bus, queue, 1) == as_received(bus, sent)


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
    assert await take(bus, queue, 1) == as_received(bus, kept)


async def test_non_mandatory_unroutable_message_is_dropped(bus: Bus, queue: str) -> None:
    await bus.declare_queue(queue, ["test.bound"])
    kept = message("test.bound")
    await bus.publish(EVENTS, [message("test.nobody_listens"), kept], mandatory=False)
    assert await take(bus, queue, 1) == as_received(bus, kept)


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
    assert [c.sender for c in calls] == [bus.user] * 3
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
    assert dead.sender == bus.user  # the consumer that gave up sent it there
    await assert_queue_empty(bus, queue)


async def test_an_undeliverable_message_is_dead_lettered_at_once_saying_where_it_went(
    open_bus: OpenBus, queue: str
) -> None:
    consumer, agent = await open_bus(), await open_bus(as_another_user=True)
    await consumer.declare_queue(queue, ["host.#"], REPORTS)
    sent = message("host.sync_completed")
    await agent.publish(REPORTS, [sent])
    attempts: list[Message] = []

    async def refuses(msg: Message) -> None:
        attempts.append(msg)
        raise Undeliverable("no such report type")

    handle = await consumer.consume(queue, refuses, max_attempts=5)
    [dead] = await take(consumer, dead_letter_queue(queue), 1)
    await handle.stop()
    assert len(attempts) == 1
    assert (dead.message_id, dead.body) == (sent.message_id, sent.body)
    assert dead.headers[ERROR_HEADER] == "Undeliverable: no such report type"
    where = (dead.headers[QUEUE_HEADER], dead.headers[EXCHANGE_HEADER])
    assert where == (queue, REPORTS)
    assert dead.headers[ROUTING_KEY_HEADER] == "host.sync_completed"
    assert dead.headers[SENDER_HEADER] == agent.user  # the dead letter itself is the consumer's


def store_down() -> Exception:
    """What a store append raises when the database went away under it."""
    try:
        raise ConnectionResetError("connection reset by peer")
    except ConnectionResetError as lost:
        error = StoreError("append to 'ticket-1' unconfirmed")
        error.__cause__ = lost
        return error


OUTAGES = {
    "unavailable": lambda: Unavailable("the store does not answer"),
    "refused": lambda: ConnectionRefusedError(111, "Connection refused"),
    "store_down": store_down,
    "broker_down": lambda: NotConfirmed("ferry.reports: lost"),
}


@pytest.mark.parametrize("outage", OUTAGES.values(), ids=OUTAGES.keys())
async def test_an_outage_holds_the_message_past_max_attempts_and_never_dead_letters_it(
    bus: Bus, queue: str, outage: Callable[[], Exception]
) -> None:
    await bus.declare_queue(queue, ["test.#"])
    sent = message("test.held")
    await bus.publish(EVENTS, [sent])
    calls: list[Message] = []
    handled = asyncio.Event()

    async def during_an_outage(msg: Message) -> None:
        calls.append(msg)
        if len(calls) <= 4:
            raise outage()
        handled.set()

    consumer = await bus.consume(queue, during_an_outage, max_attempts=2)
    await asyncio.wait_for(handled.wait(), timeout=15)
    await consumer.stop()
    assert [c.message_id for c in calls] == [sent.message_id] * 5
    assert [c.redelivered for c in calls] == [False, True, True, True, True]
    await assert_queue_empty(bus, queue)
    await assert_no_dead_letter(bus, queue)


async def test_a_message_held_past_hold_seconds_goes_back_and_comes_again(
    bus: Bus, queue: str
) -> None:
    await bus.declare_queue(queue, ["test.#"])
    sent = message("test.held_long")
    await bus.publish(EVENTS, [sent])
    calls: list[Message] = []
    handled = asyncio.Event()
    store_back_at = asyncio.get_running_loop().time() + 1.5

    async def until_the_store_is_back(msg: Message) -> None:
        calls.append(msg)
        if asyncio.get_running_loop().time() < store_back_at:
            raise Unavailable("the store does not answer")
        handled.set()

    consumer = await bus.consume(queue, until_the_store_is_back, max_attempts=1, hold_seconds=0.3)
    await asyncio.wait_for(handled.wait(), timeout=15)
    await consumer.stop()
    assert {c.message_id for c in calls} == {sent.message_id}
    assert len(calls) >= 4  # held, given back after 0.3 s, taken again, ...
    await assert_no_dead_letter(bus, queue)


async def test_stop_gives_a_held_message_back_at_once(open_bus: OpenBus, queue: str) -> None:
    bus = await open_bus()
    await bus.declare_queue(queue, ["test.#"])
    sent = message("test.held_at_stop")
    await bus.publish(EVENTS, [sent])
    held = asyncio.Event()

    async def store_is_down(msg: Message) -> None:
        held.set()
        raise Unavailable("the store does not answer")

    consumer = await bus.consume(queue, store_is_down)
    await asyncio.wait_for(held.wait(), timeout=15)
    await asyncio.sleep(0.5)  # into a longer backoff
    await asyncio.wait_for(consumer.stop(), timeout=2)
    [again] = await take(await open_bus(), queue, 1)
    assert again.message_id == sent.message_id


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
    assert handled == as_received(bus, sent)
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


async def test_consumer_sees_the_publishers_identity(open_bus: OpenBus, queue: str) -> None:
    consumer, agent = await open_bus(), await open_bus(as_another_user=True)
    assert agent.user != consumer.user
    await consumer.declare_queue(queue, ["host.#"], REPORTS)
    from_agent, from_consumer = message("host.sync_completed", 1), message("host.sync_failed", 2)
    await agent.publish(REPORTS, [from_agent])
    await consumer.publish(REPORTS, [from_consumer])
    received = await take(consumer, queue, 2)
    assert [(m.message_id, m.sender) for m in received] == [
        (from_agent.message_id, agent.user),
        (from_consumer.message_id, consumer.user),
    ]


async def test_a_publishers_claimed_sender_is_replaced_by_its_identity(
    open_bus: OpenBus, queue: str
) -> None:
    consumer, agent = await open_bus(), await open_bus(as_another_user=True)
    await consumer.declare_queue(queue, ["host.#"], REPORTS)
    forged = message("host.sync_completed").model_copy(update={"sender": consumer.user})
    await agent.publish(REPORTS, [forged])
    [received] = await take(consumer, queue, 1)
    assert received.message_id == forged.message_id
    assert received.sender == agent.user


async def test_memory_bus_handles_share_the_broker_and_close_with_their_root(queue: str) -> None:
    root = MemoryBus()
    agent = root.as_user("ferry-host-web-1")
    assert (root.user, agent.user) == ("local", "ferry-host-web-1")
    await root.declare_queue(queue, ["test.#"])
    sent = message("test.interrupted")
    await root.publish(EVENTS, [sent])
    started = asyncio.Event()

    async def hangs(msg: Message) -> None:
        started.set()
        await asyncio.Event().wait()

    await agent.consume(queue, hangs)
    await asyncio.wait_for(started.wait(), timeout=15)
    await root.close()  # the embedded mode's shutdown: the agents' consumers stop with it
    [again] = await take(root.as_user("ferry-api"), queue, 1)
    assert (again.message_id, again.redelivered, again.sender) == (sent.message_id, True, "local")


def rabbitmqctl(*args: str, stdin: str = "") -> str:
    done = subprocess.run(
        ["rabbitmqctl", "-q", *args],
        check=True,
        capture_output=True,
        timeout=60,
        input=stdin.encode(),
    )
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
        assert await take(consumer, queue, 1) == as_received(publisher, sent)
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
            while as_received(bus, sent)[0] not in received:
                await asyncio.sleep(0.05)
        [after] = connection_pids(name)
        assert after != before
    finally:
        await bus.close()


async def test_rabbitmq_broker_refuses_a_user_id_that_is_not_the_login(
    amqp_url: str, queue: str
) -> None:
    """The Bus API cannot send one (it always sets its own login); a raw client cannot either."""
    bus = await RabbitMqBus.connect(amqp_url)
    try:
        await bus.declare_queue(queue, ["host.#", SENTINEL], REPORTS)
        async with await aio_pika.connect(amqp_url) as raw:
            channel = await raw.channel()
            reports = await channel.get_exchange(REPORTS)
            forged = aio_pika.Message(b"{}", message_id="forged", user_id="ferry-host-web-2")
            with pytest.raises(ChannelPreconditionFailed, match="user_id"):
                await reports.publish(forged, routing_key="host.sync_completed")
        await bus.publish(REPORTS, [message(SENTINEL)])
        [first] = await take(bus, queue, 1)
        assert first.routing_key == SENTINEL, f"the broker let {first} through"
    finally:
        await bus.close()


async def test_rabbitmq_dead_letters_an_unreadable_message_at_once(
    amqp_url: str, queue: str
) -> None:
    bus = await RabbitMqBus.connect(amqp_url)
    try:
        await bus.declare_queue(queue, ["test.#"])
        called: list[Message] = []

        async def never(msg: Message) -> None:
            called.append(msg)

        consumer = await bus.consume(queue, never, max_attempts=5)
        async with await aio_pika.connect(amqp_url) as raw:
            channel = await raw.channel()
            events = await channel.get_exchange(EVENTS)
            garbled = aio_pika.Message(b"{not json", message_id="garbled-1", user_id="guest")
            await events.publish(garbled, routing_key="test.garbled")
            dead_queue = await channel.get_queue(dead_letter_queue(queue))
            async with asyncio.timeout(15):
                while (dead := await dead_queue.get(fail=False)) is None:
                    await asyncio.sleep(0.1)
            await dead.ack()
        await consumer.stop()
    finally:
        await bus.close()
    assert called == []
    assert (dead.message_id, dead.body) == ("garbled-1", b"{not json")
    assert str(dead.headers[ERROR_HEADER]).startswith("unreadable message: JSONDecodeError")
