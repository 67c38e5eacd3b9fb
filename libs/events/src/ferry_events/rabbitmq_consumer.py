"""RabbitMqConsumer: one queue's consumer for RabbitMqBus: ack after the handler returns; on an
exception dead-letter, hold or retry it as failure_policy decides (the rules: bus.Bus.consume).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue, AbstractRobustChannel
from aio_pika.exceptions import AMQPError
from aiormq.exceptions import ChannelInvalidStateError

from ferry_events.bus import BusError, Handler
from ferry_events.envelope import Message
from ferry_events.failure_policy import Hold, Verdict, describe, retry_delay, verdict

log = structlog.get_logger()

BROKER_HEADERS = frozenset({"x-delivery-count"})  # attempt counting, not the publisher's

DeadLetter = Callable[[str, AbstractIncomingMessage, str], Awaitable[None]]


def from_amqp(incoming: AbstractIncomingMessage) -> Message:
    if not incoming.message_id:
        raise ValueError("message without message_id: consumers could not de-duplicate it")
    return Message(
        message_id=incoming.message_id,
        routing_key=incoming.routing_key or "",
        type=incoming.type or "",
        body=json.loads(incoming.body),
        headers=_text_headers(incoming.headers),
        redelivered=bool(incoming.redelivered),
        # The broker closes the channel of a publisher whose user_id is not its login.
        sender=incoming.user_id,
    )


def _text_headers(headers: dict[str, Any]) -> dict[str, str]:
    text = {}
    for key, value in headers.items():
        if key in BROKER_HEADERS or not isinstance(value, str | bytes | int | float):
            continue  # e.g. the broker's x-death tables
        text[key] = value.decode() if isinstance(value, bytes) else str(value)
    return text


def attempt_of(incoming: AbstractIncomingMessage) -> int:
    """1 for the first delivery; a quorum queue counts every return in x-delivery-count."""
    count = incoming.headers.get("x-delivery-count", 0)
    return int(count) + 1 if isinstance(count, int | str) else 1


class RabbitMqConsumer:
    """One consumer on its own channel, so its prefetch (QoS) is its own."""

    def __init__(
        self,
        channel: AbstractRobustChannel,
        queue: AbstractQueue,
        handler: Handler,
        max_attempts: int,
        dead_letter: DeadLetter,
        hold_seconds: float,
    ) -> None:
        self._channel = channel
        self._queue = queue
        self._handler = handler
        self._max_attempts = max_attempts
        self._dead_letter = dead_letter
        self._hold_seconds = hold_seconds
        self._in_flight: set[asyncio.Task[Any]] = set()
        self._accepting = True
        self._stopping = asyncio.Event()  # wakes held messages: they go back to the queue
        self._tag: str | None = None

    async def start(self) -> None:
        self._tag = await self._queue.consume(self._on_message)

    async def stop(self) -> None:
        if self._tag is not None:
            tag, self._tag = self._tag, None
            try:
                await self._queue.cancel(tag)
            except AMQPError:
                log.warning("consumer cancel failed", queue=self._queue.name, exc_info=True)
        # Deliveries that raced the cancel stay unacked and return to the queue with the channel.
        self._accepting = False
        self._stopping.set()
        if self._in_flight:
            await asyncio.wait(set(self._in_flight))
        await self._channel.close()

    async def abort(self) -> None:
        """For the bus's close: cancel in-flight handlers; the broker requeues their messages."""
        self._accepting = False
        self._stopping.set()
        for task in self._in_flight:
            task.cancel()
        if self._in_flight:
            await asyncio.wait(set(self._in_flight))

    async def _on_message(self, incoming: AbstractIncomingMessage) -> None:
        task = asyncio.current_task()
        if not self._accepting or task is None:
            return
        self._in_flight.add(task)
        try:
            await self._settle(incoming)
        except AMQPError:
            # The channel went away under us: unacked, the broker delivers it again.
            log.warning("ack lost", queue=self._queue.name, message_id=incoming.message_id)
        finally:
            self._in_flight.discard(task)

    async def _settle(self, incoming: AbstractIncomingMessage) -> None:
        try:
            message = from_amqp(incoming)
        except ValueError as exc:  # no id, not JSON: no handler will ever read it
            await self._give_up(incoming, f"unreadable message: {describe(exc)}")
            return
        hold = Hold(self._hold_seconds, self._stopping)
        while True:
            try:
                await self._handler(message)
            except Exception as exc:
                if not await self._after_failure(incoming, exc, hold):
                    return
                message = message.model_copy(update={"redelivered": True})
            else:
                await incoming.ack()
                return

    async def _after_failure(
        self, incoming: AbstractIncomingMessage, exc: Exception, hold: Hold
    ) -> bool:
        """Settle a failed delivery; True: hand it to the handler again, still unacked."""
        reason, decided = describe(exc), verdict(exc)
        if decided is Verdict.UNDELIVERABLE:
            await self._give_up(incoming, reason)
            return False
        if decided is Verdict.UNAVAILABLE:
            context = {"queue": self._queue.name, "message_id": incoming.message_id}
            if await hold.wait(error=reason, **context):
                return _still_held(incoming)
            await incoming.nack(requeue=True)
            return False
        await self._retry_later(incoming, reason)
        return False

    async def _retry_later(self, incoming: AbstractIncomingMessage, reason: str) -> None:
        """A bug's failure: back to the queue after a pause, dead on the max_attempts-th."""
        attempt = attempt_of(incoming)
        if attempt >= self._max_attempts:
            await self._give_up(incoming, reason)
            return
        log.warning(
            "handler failed, will retry",
            queue=self._queue.name,
            message_id=incoming.message_id,
            attempt=attempt,
            error=reason,
        )
        await asyncio.sleep(retry_delay(attempt))
        await incoming.nack(requeue=True)

    async def _give_up(self, incoming: AbstractIncomingMessage, reason: str) -> None:
        log.error(
            "handler gave up, message dead-lettered",
            queue=self._queue.name,
            message_id=incoming.message_id,
            error=reason,
        )
        try:
            await self._dead_letter(self._queue.name, incoming, reason)
        except BusError:
            log.exception("dead-lettering failed, message returned", queue=self._queue.name)
            await incoming.nack(requeue=True)
            return
        await incoming.ack()


def _still_held(incoming: AbstractIncomingMessage) -> bool:
    """False once the delivery's channel is gone (broker restart, consumer_timeout): the broker
    has returned the message already and delivers it again, maybe to another consumer."""
    try:
        incoming.channel  # noqa: B018  (the property raises for a closed channel)
    except ChannelInvalidStateError:
        log.warning("held message returned by the broker", message_id=incoming.message_id)
        return False
    return True
