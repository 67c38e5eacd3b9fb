"""Dead letters on both buses (MemoryBus and the real RabbitMQ): a message a consumer gave up on
is listed with its reason, shown, replayed where it was going (as its first sender), and then
handled by the fixed consumer; on RabbitMQ also what the broker itself dead-lettered, and a
replay the broker refuses, which leaves the letter where it was.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import aio_pika
import pytest
from ferry_events.bus import EVENTS, REPORTS, Bus, Undeliverable
from ferry_events.bus_memory import MemoryBroker, MemoryBus
from ferry_events.bus_rabbitmq import RabbitMqBus
from ferry_events.dead_letters import DeadLetterError, DeadLetters, MemoryDeadLetters, find
from ferry_events.dead_letters_rabbitmq import RabbitMqDeadLetters
from ferry_events.envelope import Message
from ferry_events.rabbitmq_topology import DELIVERY_LIMIT

Login = Callable[..., str]
RABBITMQ_ONLY = pytest.mark.parametrize("bus_url", ["rabbitmq"], indirect=True)


def rabbitmqctl(*args: str, stdin: str = "") -> str:
    done = subprocess.run(
        ["rabbitmqctl", "-q", *args],
        check=True,
        capture_output=True,
        timeout=60,
        input=stdin.encode(),
    )
    return done.stdout.decode()


@pytest.fixture
def login(bus_url: str) -> Iterator[Login]:
    """Makes users of the test's vhost (full permissions, `tags` if given): a URL's
    `name:password@`; and the name, for MemoryBus."""
    made: list[str] = []

    def make(*tags: str) -> str:
        name, password = f"ferry-test-{uuid.uuid4().hex[:8]}", secrets.token_urlsafe(16)
        if bus_url.startswith("memory://"):
            return name
        rabbitmqctl("add_user", name, stdin=password)  # never on a command line
        made.append(name)
        rabbitmqctl("set_permissions", "-p", bus_url.rsplit("/", 1)[1], name, ".*", ".*", ".*")
        if tags:
            rabbitmqctl("set_user_tags", name, *tags)
        return f"{name}:{password}@"

    yield make
    for name in made:
        rabbitmqctl("delete_user", name)


class Broker:
    """Buses and a dead-letter tool on one broker: the test's vhost, or one MemoryBroker."""

    def __init__(self, url: str) -> None:
        self.url, self.memory = url, MemoryBroker()
        self.opened: list[Bus | DeadLetters] = []

    async def bus(self, login: str = "") -> Bus:
        if self.url.startswith("memory://"):
            bus: Bus = MemoryBus(self.memory).as_user(login) if login else MemoryBus(self.memory)
        else:
            bus = await RabbitMqBus.connect(self._as(login))
        self.opened.append(bus)
        return bus

    async def dead_letters(self, login: str = "") -> DeadLetters:
        if self.url.startswith("memory://"):
            letters: DeadLetters = MemoryDeadLetters(MemoryBus(self.memory).as_user(login or "op"))
        else:
            letters = await RabbitMqDeadLetters.connect(self._as(login))
        self.opened.append(letters)
        return letters

    def _as(self, login: str) -> str:
        return self.url.replace("guest:guest@", login) if login else self.url


@pytest.fixture
async def broker(bus_url: str) -> AsyncIterator[Broker]:
    opened = Broker(bus_url)
    yield opened
    for each in reversed(opened.opened):
        await each.close()


@pytest.fixture
def queue() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"


def report(n: int = 0) -> Message:
    return Message(
        message_id=str(uuid.uuid4()),
        routing_key="host.sync_completed",
        type="host.sync_completed",
        body={"n": n, "note": "Grüße"},
        headers={"sent_at": "2024-01-01T00:00:00+00:00"},
    )


class Consumer:
    """A handler that refuses every message until it is fixed, then takes them."""

    def __init__(self) -> None:
        self.fixed = False
        self.handled: asyncio.Queue[Message] = asyncio.Queue()

    async def handle(self, message: Message) -> None:
        if not self.fixed:
            raise Undeliverable(f"unknown report {message.body['n']}")
        await self.handled.put(message)


async def dead_lettered(bus: Bus, queue: str, sender: Bus, *sent: Message) -> Consumer:
    consumer = Consumer()
    await bus.declare_queue(queue, ["host.#"], REPORTS)
    await bus.consume(queue, consumer.handle)
    await sender.publish(REPORTS, list(sent))
    return consumer


async def listed(letters: DeadLetters, queue: str, count: int) -> list[str]:
    """Message ids of the queue's dead letters, once there are `count` of them."""
    async with asyncio.timeout(15):
        while len(found := await letters.list_letters([queue])) < count:
            await asyncio.sleep(0.1)
    return [letter.message_id for letter in found]


async def test_a_dead_letter_is_listed_shown_replayed_and_then_handled(
    broker: Broker, queue: str, login: Login
) -> None:
    bus, agent = await broker.bus(), await broker.bus(login())
    first, second = report(1), report(2)
    consumer = await dead_lettered(bus, queue, agent, first, second)
    letters = await broker.dead_letters(login("impersonator"))

    assert await listed(letters, queue, 2) == [first.message_id, second.message_id]
    assert await listed(letters, queue, 2) == [first.message_id, second.message_id]  # kept
    [shown] = find(await letters.list_letters([queue]), first.message_id)
    assert (shown.queue, shown.reason) == (queue, "Undeliverable: unknown report 1")
    assert (shown.exchange, shown.routing_key, shown.type) == (
        REPORTS,
        first.routing_key,
        first.type,
    )
    assert shown.sender == agent.user and shown.dead_at
    assert json.loads(shown.body) == first.body and shown.headers == first.headers

    consumer.fixed = True
    assert [r.message_id for r in await letters.replay([queue], first.message_id)] == [
        first.message_id
    ]
    again = await asyncio.wait_for(consumer.handled.get(), 15)
    assert (again.message_id, again.body, again.headers) == (
        first.message_id,
        first.body,
        first.headers,
    )
    assert again.sender == agent.user  # the agent's report still, not the operator's
    assert await listed(letters, queue, 1) == [second.message_id]
    assert [r.message_id for r in await letters.replay([queue], None)] == [second.message_id]
    assert (await asyncio.wait_for(consumer.handled.get(), 15)).message_id == second.message_id
    assert await letters.list_letters([queue]) == []
    with pytest.raises(DeadLetterError, match="no dead letter"):
        find(await letters.list_letters([queue]), first.message_id)


@RABBITMQ_ONLY
async def test_rabbitmq_refuses_a_replay_as_someone_else_and_the_letter_stays(
    bus_url: str, queue: str, login: Login
) -> None:
    broker = Broker(bus_url)
    try:
        bus, agent = await broker.bus(), await broker.bus(login())
        sent = report()
        consumer = await dead_lettered(bus, queue, agent, sent)
        operator = login()  # no impersonator tag: it may publish only as itself
        letters = await broker.dead_letters(operator)
        await listed(letters, queue, 1)
        with pytest.raises(DeadLetterError, match="impersonator"):
            await letters.replay([queue], sent.message_id)
        assert await listed(letters, queue, 1) == [sent.message_id]

        consumer.fixed = True
        await letters.replay([queue], sent.message_id, as_sender=False)
        again = await asyncio.wait_for(consumer.handled.get(), 15)
        assert (again.message_id, again.sender) == (sent.message_id, operator.split(":")[0])
    finally:
        for each in reversed(broker.opened):
            await each.close()


@RABBITMQ_ONLY
async def test_rabbitmq_lists_and_replays_what_the_broker_dead_lettered(
    bus_url: str, queue: str
) -> None:
    """Past the queue's delivery limit RabbitMQ dead-letters by itself (x-death, no reason of
    ours): a consumer that crashed on it every time, say."""
    broker = Broker(bus_url)
    try:
        bus = await broker.bus()
        await bus.declare_queue(queue, ["test.#"])
        sent = report().model_copy(update={"routing_key": "test.crashing"})
        await bus.publish(EVENTS, [sent])
        async with await aio_pika.connect(bus_url) as raw:
            channel = await raw.channel()
            work = await channel.get_queue(queue)
            for _ in range(DELIVERY_LIMIT + 1):  # as a consumer's crash would return it
                incoming = await work.get(fail=False, timeout=5)
                if incoming is None:
                    break
                await incoming.nack(requeue=True)
        letters = await broker.dead_letters()
        [letter] = await asyncio.wait_for(_one(letters, queue), 15)
        assert (letter.message_id, letter.reason) == (sent.message_id, "broker: delivery_limit")
        assert (letter.exchange, letter.routing_key, letter.sender) == (
            EVENTS,
            "test.crashing",
            "guest",
        )

        handled: asyncio.Queue[Message] = asyncio.Queue()
        await bus.consume(queue, handled.put)
        await letters.replay([queue], None)
        again = await asyncio.wait_for(handled.get(), 15)
        assert (again.message_id, again.body) == (sent.message_id, sent.body)
    finally:
        for each in reversed(broker.opened):
            await each.close()


async def _one(letters: DeadLetters, queue: str) -> list[object]:
    while not (found := await letters.list_letters([queue])):
        await asyncio.sleep(0.1)
    return list(found)


async def ferry_api(amqp_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The operator's command, as a process of its own."""
    env = {**os.environ, "FERRY_BROKER_URL": amqp_url}
    env.pop("FERRY_DATABASE_URL", None)
    command = [str(Path(sys.executable).parent / "ferry-api"), "dead-letters", *args]
    return await asyncio.to_thread(
        subprocess.run, command, env=env, capture_output=True, text=True, timeout=60
    )


@RABBITMQ_ONLY
async def test_the_operator_lists_shows_and_replays_with_ferry_api(
    bus_url: str, queue: str
) -> None:
    broker = Broker(bus_url)
    try:
        bus = await broker.bus()
        sent = report(7)
        consumer = await dead_lettered(bus, queue, bus, sent)
        await listed(await broker.dead_letters(), queue, 1)

        listing = await ferry_api(bus_url, "list", "--queue", queue)
        assert listing.returncode == 0, listing.stderr
        [row] = listing.stdout.splitlines()
        assert row.split("\t")[:3] == [queue, sent.message_id, sent.type]
        assert row.endswith("\tUndeliverable: unknown report 7")
        shown = await ferry_api(bus_url, "show", sent.message_id, "--queue", queue, "--json")
        letter = json.loads(shown.stdout)
        assert (letter["reason"], letter["body"]) == ("Undeliverable: unknown report 7", sent.body)

        consumer.fixed = True
        replay = await ferry_api(bus_url, "replay", sent.message_id, "--queue", queue)
        assert replay.returncode == 0, replay.stderr
        assert replay.stdout.startswith(f"replayed {sent.message_id} to {REPORTS}")
        assert (await asyncio.wait_for(consumer.handled.get(), 15)).message_id == sent.message_id
        assert (await ferry_api(bus_url, "list", "--queue", queue)).stdout == ""
        gone = await ferry_api(bus_url, "show", sent.message_id, "--queue", queue)
        assert gone.returncode == 1 and "no dead letter" in gone.stderr
    finally:
        for each in reversed(broker.opened):
            await each.close()


@RABBITMQ_ONLY
async def test_rabbitmq_a_user_that_may_not_read_dead_letters_is_told_so(
    bus_url: str, queue: str, login: Login
) -> None:
    broker = Broker(bus_url)
    try:
        bus = await broker.bus()
        await dead_lettered(bus, queue, bus, report())
        await listed(await broker.dead_letters(), queue, 1)
        api_like = login()  # then as the API's grant: read on its work queues only
        name, vhost = api_like.split(":")[0], bus_url.rsplit("/", 1)[1]
        rabbitmqctl("set_permissions", "-p", vhost, name, ".*", ".*", f"^{queue}$")
        letters = await broker.dead_letters(api_like)
        with pytest.raises(DeadLetterError, match=f"may not read '{queue}.dead'"):
            await letters.list_letters([queue])
        assert len(await (await broker.dead_letters()).list_letters([queue])) == 1
    finally:
        for each in reversed(broker.opened):
            await each.close()
