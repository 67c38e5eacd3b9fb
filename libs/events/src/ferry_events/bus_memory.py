"""MemoryBus: the in-process Bus of the embedded mode, with RabbitMQ's semantics (topic routing,
mandatory, prefetch, ack after success, retry then dead-letter) so tests prove one by the other.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import structlog

from ferry_events.bus import (
    DEAD,
    ERROR_HEADER,
    EVENTS,
    REPORTS,
    BusError,
    Handler,
    NotConfirmed,
    Unroutable,
    dead_letter_queue,
)
from ferry_events.envelope import Message

log = structlog.get_logger()

RETRY_BACKOFF = 0.1  # seconds before the 2nd attempt, doubled for each further one
MAX_BACKOFF = 5.0


def retry_delay(attempt: int) -> float:
    return float(min(RETRY_BACKOFF * 2 ** (attempt - 1), MAX_BACKOFF))


def topic_matches(pattern: str, routing_key: str) -> bool:
    """AMQP topic matching: `*` is exactly one word, `#` is zero or more words."""
    return _words_match(pattern.split("."), routing_key.split("."))


def _words_match(pattern: list[str], words: list[str]) -> bool:
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(_words_match(rest, words[skip:]) for skip in range(len(words) + 1))
    return bool(words) and head in ("*", words[0]) and _words_match(rest, words[1:])


@dataclass(frozen=True)
class _Delivery:
    message: Message
    returns: int = 0  # times handed back unacked, like a quorum queue's x-delivery-count

    @property
    def attempt(self) -> int:
        return self.returns + 1

    def received(self) -> Message:
        if self.returns == 0:
            return self.message
        return self.message.model_copy(update={"redelivered": True})

    def returned(self) -> _Delivery:
        return _Delivery(self.message, self.returns + 1)


class _MemoryQueue:
    def __init__(self) -> None:
        self._ready: deque[_Delivery] = deque()
        self._nonempty = asyncio.Event()

    def put(self, delivery: _Delivery) -> None:
        self._ready.append(delivery)
        self._nonempty.set()

    def requeue(self, delivery: _Delivery) -> None:
        # A returned message goes first, as a quorum queue delivers returns before new ones.
        self._ready.appendleft(delivery.returned())
        self._nonempty.set()

    async def get(self) -> _Delivery:
        while not self._ready:
            self._nonempty.clear()
            await self._nonempty.wait()
        return self._ready.popleft()


class MemoryBroker:
    """The exchanges, bindings and queues that MemoryBus connections share, like one broker."""

    def __init__(self) -> None:
        self._topic_exchanges = {EVENTS, REPORTS}
        self._bindings: dict[str, set[tuple[str, str]]] = {
            EVENTS: set(),
            REPORTS: set(),
            DEAD: set(),
        }
        self.queues: dict[str, _MemoryQueue] = {}

    def declare_queue(self, queue: str, bindings: Sequence[str], exchange: str) -> None:
        if exchange not in self._bindings:
            raise BusError(f"no exchange {exchange!r}")
        dead = dead_letter_queue(queue)
        self.queues.setdefault(queue, _MemoryQueue())
        self.queues.setdefault(dead, _MemoryQueue())
        self._bindings[DEAD].add((dead, dead))
        self._bindings[exchange].update((pattern, queue) for pattern in bindings)

    def route(self, exchange: str, message: Message) -> int:
        """Put the message into every queue bound to its key; return how many got it."""
        if exchange not in self._bindings:
            raise NotConfirmed(f"no exchange {exchange!r}")
        key, topic = message.routing_key, exchange in self._topic_exchanges
        targets = {
            queue
            for pattern, queue in self._bindings[exchange]
            if (topic_matches(pattern, key) if topic else pattern == key)
        }
        for queue in targets:
            self.queues[queue].put(_Delivery(message))
        return len(targets)


class MemoryConsumer:
    """Takes up to `prefetch` messages at a time from one queue and settles each one."""

    def __init__(
        self, broker: MemoryBroker, queue: str, handler: Handler, prefetch: int, max_attempts: int
    ) -> None:
        self._broker = broker
        self._queue_name = queue
        self._queue = broker.queues[queue]
        self._handler = handler
        self._max_attempts = max_attempts
        self._slots = asyncio.Semaphore(prefetch)
        self._in_flight: set[asyncio.Task[None]] = set()
        self._taking = asyncio.create_task(self._take_messages())

    async def stop(self) -> None:
        await self._stop_taking()
        if self._in_flight:
            await asyncio.wait(set(self._in_flight))

    async def abort(self) -> None:
        """Drop the connection: in-flight handlers are cancelled, their messages returned."""
        await self._stop_taking()
        for task in self._in_flight:
            task.cancel()
        if self._in_flight:
            await asyncio.wait(set(self._in_flight))

    async def _stop_taking(self) -> None:
        self._taking.cancel()
        await asyncio.wait({self._taking})

    async def _take_messages(self) -> None:
        while True:
            await self._slots.acquire()
            try:
                delivery = await self._queue.get()
            except asyncio.CancelledError:
                self._slots.release()
                raise
            task = asyncio.create_task(self._settle(delivery))
            self._in_flight.add(task)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._slots.release()

    async def _settle(self, delivery: _Delivery) -> None:
        try:
            await self._handler(delivery.received())
        except asyncio.CancelledError:
            self._queue.requeue(delivery)
            raise
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            if delivery.attempt >= self._max_attempts:
                self._dead_letter(delivery.message, reason)
                return
            log.warning(
                "handler failed, will retry",
                queue=self._queue_name,
                message_id=delivery.message.message_id,
                attempt=delivery.attempt,
                error=reason,
            )
            try:
                await asyncio.sleep(retry_delay(delivery.attempt))
            finally:
                self._queue.requeue(delivery)

    def _dead_letter(self, message: Message, reason: str) -> None:
        log.error(
            "handler gave up, message dead-lettered",
            queue=self._queue_name,
            message_id=message.message_id,
            error=reason,
        )
        dead = dead_letter_queue(self._queue_name)
        headers = {**message.headers, ERROR_HEADER: reason}
        self._broker.route(
            DEAD, message.model_copy(update={"routing_key": dead, "headers": headers})
        )


class MemoryBus:
    """One connection to a MemoryBroker (its own by default)."""

    def __init__(self, broker: MemoryBroker | None = None) -> None:
        self._broker = broker or MemoryBroker()
        self._consumers: weakref.WeakSet[MemoryConsumer] = weakref.WeakSet()

    async def declare_queue(
        self, queue: str, bindings: Sequence[str], exchange: str = EVENTS
    ) -> None:
        self._broker.declare_queue(queue, bindings, exchange)

    async def publish(
        self, exchange: str, messages: Sequence[Message], *, mandatory: bool = True
    ) -> None:
        for message in messages:
            # Through JSON, as on the wire: a body RabbitMQ could not carry fails here too.
            sent = Message.model_validate_json(message.model_dump_json(exclude={"redelivered"}))
            if not self._broker.route(exchange, sent) and mandatory:
                raise Unroutable(f"{exchange} {message.routing_key!r}: no queue is bound")

    async def consume(
        self, queue: str, handler: Handler, *, prefetch: int = 16, max_attempts: int = 5
    ) -> MemoryConsumer:
        if queue not in self._broker.queues:
            raise BusError(f"no queue {queue!r}")
        consumer = MemoryConsumer(self._broker, queue, handler, prefetch, max_attempts)
        self._consumers.add(consumer)
        return consumer

    async def close(self) -> None:
        for consumer in list(self._consumers):
            await consumer.abort()
