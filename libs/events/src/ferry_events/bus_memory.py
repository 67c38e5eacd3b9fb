"""MemoryBus: the in-process Bus of the embedded mode, with RabbitMQ's semantics (topic routing,
mandatory, prefetch, ack after success, retry then dead-letter, the publisher's identity as the
sender) so tests prove one by the other.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Sequence

import structlog

from ferry_events.bus import (
    DEAD,
    EVENTS,
    HOLD_SECONDS,
    REPORTS,
    BusError,
    Handler,
    NotConfirmed,
    Unroutable,
    dead_letter_headers,
    dead_letter_queue,
)
from ferry_events.envelope import Message
from ferry_events.failure_policy import Hold, Verdict, describe, retry_delay, verdict
from ferry_events.memory_queue import Delivery, MemoryQueue, topic_matches

log = structlog.get_logger()

LOCAL_USER = "local"  # the identity of a MemoryBus nobody named


class MemoryBroker:
    """The exchanges, bindings and queues that MemoryBus connections share, like one broker."""

    def __init__(self) -> None:
        self._topic_exchanges = {EVENTS, REPORTS}
        self._bindings: dict[str, set[tuple[str, str]]] = {
            EVENTS: set(),
            REPORTS: set(),
            DEAD: set(),
        }
        self.queues: dict[str, MemoryQueue] = {}

    def declare_queue(self, queue: str, bindings: Sequence[str], exchange: str) -> None:
        if exchange not in self._bindings:
            raise BusError(f"no exchange {exchange!r}")
        dead = dead_letter_queue(queue)
        self.queues.setdefault(queue, MemoryQueue())
        self.queues.setdefault(dead, MemoryQueue())
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
            self.queues[queue].put(Delivery(message, exchange))
        return len(targets)


class MemoryConsumer:
    """Takes up to `prefetch` messages at a time from one queue and settles each one."""

    def __init__(
        self,
        broker: MemoryBroker,
        queue: str,
        handler: Handler,
        prefetch: int,
        max_attempts: int,
        user: str,
        hold_seconds: float = HOLD_SECONDS,
    ) -> None:
        self._broker = broker
        self._user = user  # dead letters go out as the consumer, as RabbitMqBus sends them
        self._queue_name = queue
        self._queue = broker.queues[queue]
        self._handler = handler
        self._max_attempts = max_attempts
        self._hold_seconds = hold_seconds
        self._stopping = asyncio.Event()  # wakes held messages: they go back to the queue
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
        self._stopping.set()
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

    async def _settle(self, delivery: Delivery) -> None:
        hold = Hold(self._hold_seconds, self._stopping)
        message = delivery.received()
        try:
            while True:
                try:
                    await self._handler(message)
                    return
                except Exception as exc:
                    if not await self._after_failure(delivery, exc, hold):
                        return
                    message = message.model_copy(update={"redelivered": True})
        except asyncio.CancelledError:
            self._queue.requeue(delivery)  # the connection dropped: unacked, it goes back
            raise

    async def _after_failure(self, delivery: Delivery, exc: Exception, hold: Hold) -> bool:
        """Settle a failed delivery; True: hand it to the handler again, still unacked."""
        reason, decided = describe(exc), verdict(exc)
        if decided is Verdict.UNDELIVERABLE:
            self._dead_letter(delivery, reason)
            return False
        if decided is Verdict.UNAVAILABLE:
            context = {"queue": self._queue_name, "message_id": delivery.message.message_id}
            if await hold.wait(error=reason, **context):
                return True
            self._queue.requeue(delivery)
            return False
        await self._retry_later(delivery, reason)
        return False

    async def _retry_later(self, delivery: Delivery, reason: str) -> None:
        """A bug's failure: back to the queue after a pause, dead on the max_attempts-th."""
        if delivery.attempt >= self._max_attempts:
            self._dead_letter(delivery, reason)
            return
        log.warning(
            "handler failed, will retry",
            queue=self._queue_name,
            message_id=delivery.message.message_id,
            attempt=delivery.attempt,
            error=reason,
        )
        await asyncio.sleep(retry_delay(delivery.attempt))
        self._queue.requeue(delivery)

    def _dead_letter(self, delivery: Delivery, reason: str) -> None:
        message = delivery.message
        log.error(
            "handler gave up, message dead-lettered",
            queue=self._queue_name,
            message_id=message.message_id,
            error=reason,
        )
        dead = dead_letter_queue(self._queue_name)
        origin = dead_letter_headers(
            reason,
            queue=self._queue_name,
            exchange=delivery.exchange,
            routing_key=message.routing_key,
            sender=message.sender,
        )
        headers = {**message.headers, **origin}
        update = {"routing_key": dead, "headers": headers, "sender": self._user}
        self._broker.route(DEAD, message.model_copy(update=update))


class MemoryBus:
    """One connection to a MemoryBroker (its own by default), publishing as `user`."""

    def __init__(self, broker: MemoryBroker | None = None, *, user: str = LOCAL_USER) -> None:
        self._broker = broker or MemoryBroker()
        self._user = user
        self._consumers: weakref.WeakSet[MemoryConsumer] = weakref.WeakSet()
        self._handles: list[MemoryBus] = []

    @property
    def user(self) -> str:
        return self._user

    @property
    def broker(self) -> MemoryBroker:
        return self._broker

    def as_user(self, user: str) -> MemoryBus:
        """Another connection to the same broker, publishing as `user` (the embedded mode's
        agents, each as itself). Closing this bus closes it too."""
        if not user:
            raise ValueError("a bus user needs a name")
        handle = MemoryBus(self._broker, user=user)
        self._handles.append(handle)
        return handle

    async def declare_queue(
        self, queue: str, bindings: Sequence[str], exchange: str = EVENTS
    ) -> None:
        self._broker.declare_queue(queue, bindings, exchange)

    async def publish(
        self, exchange: str, messages: Sequence[Message], *, mandatory: bool = True
    ) -> None:
        for message in messages:
            # Through JSON, as on the wire: a body RabbitMQ could not carry fails here too.
            wire = message.model_dump_json(exclude={"redelivered", "sender"})
            sent = Message.model_validate_json(wire).model_copy(update={"sender": self._user})
            if not self._broker.route(exchange, sent) and mandatory:
                raise Unroutable(f"{exchange} {message.routing_key!r}: no queue is bound")

    async def consume(
        self,
        queue: str,
        handler: Handler,
        *,
        prefetch: int = 16,
        max_attempts: int = 5,
        hold_seconds: float = HOLD_SECONDS,
    ) -> MemoryConsumer:
        if queue not in self._broker.queues:
            raise BusError(f"no queue {queue!r}")
        consumer = MemoryConsumer(
            self._broker, queue, handler, prefetch, max_attempts, self._user, hold_seconds
        )
        self._consumers.add(consumer)
        return consumer

    async def close(self) -> None:
        for handle in self._handles:
            await handle.close()
        for consumer in list(self._consumers):
            await consumer.abort()
