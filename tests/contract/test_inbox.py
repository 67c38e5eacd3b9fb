"""Idempotent consumers: a redelivered or duplicated message has its effect once."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from ferry_events.backends import open_bus
from ferry_events.bus import EVENTS, Bus
from ferry_events.envelope import Message
from ferry_events.inbox import FileInbox, Inbox, MemoryInbox, idempotent


@pytest.fixture(params=["memory", "file"])
def inbox(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Inbox]:
    if request.param == "memory":
        yield MemoryInbox()
        return
    file_inbox = FileInbox(tmp_path / "inbox.ids")
    yield file_inbox
    file_inbox.close()


@pytest.fixture
async def bus(bus_url: str) -> AsyncIterator[Bus]:
    opened = await open_bus(bus_url)
    yield opened
    await opened.close()


def message(n: int = 0) -> Message:
    return Message(
        message_id=str(uuid.uuid4()), routing_key="test.applied", type="test.applied", body={"n": n}
    )


async def test_redelivered_and_duplicated_message_has_one_effect(bus: Bus, inbox: Inbox) -> None:
    queue = f"test-{uuid.uuid4().hex[:8]}"
    await bus.declare_queue(queue, ["test.#"])
    effects: list[str] = []

    async def apply(msg: Message) -> None:
        effects.append(msg.message_id)

    once = idempotent(apply, inbox)
    deliveries: list[Message] = []
    three = asyncio.Event()

    async def ack_lost_the_first_time(msg: Message) -> None:
        deliveries.append(msg)
        nth = len(deliveries)
        await once(msg)
        if nth == 1:
            raise ConnectionError("ack lost")  # handled, yet the broker will deliver it again
        if nth == 3:
            three.set()

    sent = message()
    await bus.publish(EVENTS, [sent, sent])  # the relay publishes at least once
    consumer = await bus.consume(queue, ack_lost_the_first_time, max_attempts=5)
    await asyncio.wait_for(three.wait(), timeout=15)
    await consumer.stop()
    assert [d.message_id for d in deliveries] == [sent.message_id] * 3
    assert any(d.redelivered for d in deliveries)
    assert effects == [sent.message_id]


async def test_failure_is_not_remembered(inbox: Inbox) -> None:
    effects: list[str] = []
    failures = 1

    async def apply(msg: Message) -> None:
        nonlocal failures
        if failures:
            failures -= 1
            raise RuntimeError("rsync timed out")
        effects.append(msg.message_id)

    once = idempotent(apply, inbox)
    sent = message()
    with pytest.raises(RuntimeError):
        await once(sent)
    assert not await inbox.seen(sent.message_id)
    await once(sent.model_copy(update={"redelivered": True}))
    await once(sent.model_copy(update={"redelivered": True}))
    assert effects == [sent.message_id]
    assert await inbox.seen(sent.message_id)


async def test_concurrent_copies_have_one_effect(inbox: Inbox) -> None:
    effects: list[str] = []

    async def apply(msg: Message) -> None:
        await asyncio.sleep(0.05)
        effects.append(msg.message_id)

    once = idempotent(apply, inbox)
    sent = message()
    await asyncio.gather(once(sent), once(sent), once(sent))
    assert effects == [sent.message_id]


async def test_file_inbox_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "inbox.ids"
    first = FileInbox(path)
    await first.remember("handled-before-restart")
    first.close()
    reopened = FileInbox(path)
    try:
        assert await reopened.seen("handled-before-restart")
        assert not await reopened.seen("never-handled")
    finally:
        reopened.close()


async def test_memory_inbox_forgets_the_oldest_beyond_capacity() -> None:
    inbox = MemoryInbox(capacity=3)
    for n in range(4):
        await inbox.remember(f"id-{n}")
    assert [await inbox.seen(f"id-{n}") for n in range(4)] == [False, True, True, True]


async def test_file_inbox_keeps_the_newest_beyond_capacity_and_stays_small(
    tmp_path: Path,
) -> None:
    path = tmp_path / "inbox.ids"
    inbox = FileInbox(path, capacity=10)
    for n in range(1000):
        await inbox.remember(f"id-{n}")
    assert not await inbox.seen("id-0") and await inbox.seen("id-999")
    inbox.close()
    assert len(path.read_text().split()) <= 20  # compacted as it grows

    reopened = FileInbox(path, capacity=10)
    try:
        assert [await reopened.seen(f"id-{n}") for n in (989, 990, 999)] == [False, True, True]
    finally:
        reopened.close()
