"""RabbitMqBus: the Bus over RabbitMQ (aio-pika): durable quorum queues, pipelined confirmed
publishing, acked consuming with retry and dead-lettering; the robust connection restores all.
"""

from __future__ import annotations

import asyncio
import json
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import aio_pika
import pydantic_core
import structlog
from aio_pika.abc import (
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustChannel,
    AbstractRobustConnection,
)
from aio_pika.exceptions import AMQPError, ChannelClosed, DeliveryError, PublishError

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

PUBLISH_WINDOW = 100  # confirms awaited at once: one round trip each would cap throughput
DELIVERY_LIMIT = 20  # broker backstop, above any max_attempts: a consumer-crashing message dies too
RETRY_BACKOFF = 0.1  # seconds before the 2nd attempt, doubled for each further one
MAX_BACKOFF = 5.0
BROKER_HEADERS = frozenset({"x-delivery-count"})  # attempt counting, not the publisher's

DeadLetter = Callable[[str, AbstractIncomingMessage, str], Awaitable[None]]


def retry_delay(attempt: int) -> float:
    return float(min(RETRY_BACKOFF * 2 ** (attempt - 1), MAX_BACKOFF))


def to_amqp(message: Message) -> aio_pika.Message:
    return aio_pika.Message(
        body=pydantic_core.to_json(message.body),
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=message.message_id,
        type=message.type,
        headers={**message.headers},
    )


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
    ) -> None:
        self._channel = channel
        self._queue = queue
        self._handler = handler
        self._max_attempts = max_attempts
        self._dead_letter = dead_letter
        self._in_flight: set[asyncio.Task[Any]] = set()
        self._accepting = True
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
        if self._in_flight:
            await asyncio.wait(set(self._in_flight))
        await self._channel.close()

    async def abort(self) -> None:
        """For the bus's close: cancel in-flight handlers; the broker requeues their messages."""
        self._accepting = False
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
        attempt = attempt_of(incoming)
        try:
            await self._handler(from_amqp(incoming))
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
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
        else:
            await incoming.ack()

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


class RabbitMqBus:
    """The Bus over one robust connection; publishing and topology share one confirm channel."""

    def __init__(
        self,
        connection: AbstractRobustConnection,
        channel: AbstractRobustChannel,
        exchanges: Mapping[str, AbstractExchange],
    ) -> None:
        self._connection = connection
        self._channel = channel
        self._exchanges = exchanges
        self._consumers: weakref.WeakSet[RabbitMqConsumer] = weakref.WeakSet()

    @classmethod
    async def connect(
        cls, url: str, *, name: str = "ferry", reconnect_interval: float = 2.0
    ) -> RabbitMqBus:
        """`name` is the connection name the broker shows (rabbitmqctl list_connections)."""
        connection = await aio_pika.connect_robust(
            url, client_properties={"connection_name": name}, reconnect_interval=reconnect_interval
        )
        try:
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            topic, direct = aio_pika.ExchangeType.TOPIC, aio_pika.ExchangeType.DIRECT
            exchanges = {
                EVENTS: await channel.declare_exchange(EVENTS, topic, durable=True),
                REPORTS: await channel.declare_exchange(REPORTS, topic, durable=True),
                DEAD: await channel.declare_exchange(DEAD, direct, durable=True),
            }
        except BaseException:
            await connection.close()
            raise
        return cls(connection, channel, exchanges)

    async def declare_queue(
        self, queue: str, bindings: Sequence[str], exchange: str = EVENTS
    ) -> None:
        source = self._exchange(exchange)
        dead = dead_letter_queue(queue)
        quorum = {"x-queue-type": "quorum"}
        dead_queue = await self._channel.declare_queue(dead, durable=True, arguments=quorum)
        await dead_queue.bind(self._exchanges[DEAD], routing_key=dead)
        declared = await self._channel.declare_queue(
            queue,
            durable=True,
            arguments={
                **quorum,
                "x-delivery-limit": DELIVERY_LIMIT,
                "x-dead-letter-exchange": DEAD,
                "x-dead-letter-routing-key": dead,
            },
        )
        for pattern in bindings:
            await declared.bind(source, routing_key=pattern)

    async def publish(
        self, exchange: str, messages: Sequence[Message], *, mandatory: bool = True
    ) -> None:
        """Pipelined: up to PUBLISH_WINDOW unconfirmed at once. Order holds because each
        publish task starts in turn and aiormq numbers and writes frames under a FIFO lock.
        On an error, messages after the failing one may have been published too."""
        target = self._exchange(exchange)
        window = asyncio.Semaphore(PUBLISH_WINDOW)
        failed: list[BaseException] = []

        def settled(task: asyncio.Task[None]) -> None:
            window.release()
            error = None if task.cancelled() else task.exception()
            if error is not None:
                failed.append(error)

        tasks: list[asyncio.Task[None]] = []
        try:
            for message in messages:
                await window.acquire()
                if failed:
                    break
                task = asyncio.create_task(_publish_one(target, message, mandatory=mandatory))
                task.add_done_callback(settled)
                tasks.append(task)
            results = await asyncio.gather(*tasks, return_exceptions=True)
        except BaseException:
            for task in tasks:
                task.cancel()
            raise
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def consume(
        self, queue: str, handler: Handler, *, prefetch: int = 16, max_attempts: int = 5
    ) -> RabbitMqConsumer:
        if not 1 <= max_attempts < DELIVERY_LIMIT:
            raise ValueError(f"max_attempts must be between 1 and {DELIVERY_LIMIT - 1}")
        channel = await self._connection.channel(publisher_confirms=False)
        try:
            await channel.set_qos(prefetch_count=prefetch)
            source = await channel.get_queue(queue)
        except ChannelClosed as exc:
            await channel.close()
            raise BusError(f"no queue {queue!r}") from exc
        consumer = RabbitMqConsumer(channel, source, handler, max_attempts, self._dead_letter)
        await consumer.start()
        self._consumers.add(consumer)
        return consumer

    async def close(self) -> None:
        for consumer in list(self._consumers):
            await consumer.abort()
        await self._connection.close()

    async def _dead_letter(
        self, queue: str, incoming: AbstractIncomingMessage, reason: str
    ) -> None:
        headers = {k: v for k, v in incoming.headers.items() if k not in BROKER_HEADERS}
        dead = aio_pika.Message(
            body=incoming.body,  # as received: it may be the very thing that could not be parsed
            content_type=incoming.content_type,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=incoming.message_id,
            type=incoming.type,
            headers={**headers, ERROR_HEADER: reason[:4000]},
        )
        await _publish_amqp(self._exchanges[DEAD], dead, dead_letter_queue(queue))

    def _exchange(self, name: str) -> AbstractExchange:
        try:
            return self._exchanges[name]
        except KeyError:
            raise BusError(f"no exchange {name!r}") from None


async def _publish_one(exchange: AbstractExchange, message: Message, *, mandatory: bool) -> None:
    await _publish_amqp(exchange, to_amqp(message), message.routing_key, mandatory=mandatory)


async def _publish_amqp(
    exchange: AbstractExchange, message: aio_pika.Message, key: str, *, mandatory: bool = True
) -> None:
    try:
        await exchange.publish(message, routing_key=key, mandatory=mandatory)
    except PublishError as exc:
        raise Unroutable(f"{exchange.name} {key!r}: no queue is bound") from exc
    except DeliveryError as exc:
        raise NotConfirmed(f"{exchange.name} {key!r}: the broker refused it") from exc
    except (AMQPError, ConnectionError) as exc:
        raise NotConfirmed(f"{exchange.name} {key!r}: lost ({exc!r})") from exc
