"""RabbitMqBus: the Bus over RabbitMQ (aio-pika): durable quorum queues, pipelined confirmed
publishing as the connection's own user (user_id), acked consuming with retry and dead-lettering,
amqps with a private CA and client certificate; the robust connection restores consumers.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path

import aio_pika
import pydantic_core
from aio_pika.abc import (
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractRobustChannel,
    AbstractRobustConnection,
)
from aio_pika.exceptions import AMQPError, ChannelClosed, DeliveryError, PublishError
from aiormq.exceptions import ChannelAccessRefused, ChannelInvalidStateError
from yarl import URL

from ferry_events import rabbitmq_topology
from ferry_events.bus import (
    DEAD,
    EVENTS,
    HOLD_SECONDS,
    BusError,
    Handler,
    NotConfirmed,
    Refused,
    Unroutable,
    dead_letter_headers,
    dead_letter_queue,
)
from ferry_events.envelope import Message
from ferry_events.rabbitmq_consumer import BROKER_HEADERS, RabbitMqConsumer
from ferry_events.rabbitmq_topology import DELIVERY_LIMIT, EXCHANGE_TYPES

PUBLISH_WINDOW = 100  # confirms awaited at once: one round trip each would cap throughput
REOPEN_WAIT = 5.0  # seconds a publish waits for the channel a refusal (or an outage) closed


def to_amqp(message: Message, user_id: str) -> aio_pika.Message:
    return aio_pika.Message(
        body=pydantic_core.to_json(message.body),
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=message.message_id,
        type=message.type,
        headers={**message.headers},
        user_id=user_id,
    )


def login_of(url: str) -> str:
    """The user an AMQP URL logs in as (aiormq's default is guest)."""
    return URL(url).user or "guest"


def tls_context(
    ca_file: str | Path | None = None,
    cert_file: str | Path | None = None,
    key_file: str | Path | None = None,
) -> ssl.SSLContext:
    """Verify the broker by `ca_file` (the system's CAs without it), host name included; present
    `cert_file` (+ `key_file` unless the key is in it) when the broker asks for a client cert."""
    for label, path in (("ca_file", ca_file), ("cert_file", cert_file), ("key_file", key_file)):
        if path is not None and not Path(path).is_file():
            raise ValueError(f"{label} {str(path)!r} is not a readable file")
    if key_file is not None and cert_file is None:
        raise ValueError("key_file needs cert_file")
    context = ssl.create_default_context(cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert_file is not None:
        context.load_cert_chain(cert_file, key_file)
    return context


class RabbitMqBus:
    """The Bus over one robust connection, publishing on one confirm channel as one user."""

    def __init__(
        self,
        connection: AbstractRobustConnection,
        channel: AbstractRobustChannel,
        exchanges: Mapping[str, AbstractExchange],
        user: str,
    ) -> None:
        self._connection = connection
        self._channel = channel
        self._exchanges = exchanges
        self._user = user
        self._consumers: weakref.WeakSet[RabbitMqConsumer] = weakref.WeakSet()

    @property
    def user(self) -> str:
        return self._user

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        name: str = "ferry",
        reconnect_interval: float = 2.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> RabbitMqBus:
        """`name` is the connection name the broker shows (rabbitmqctl list_connections);
        `ssl_context` (see tls_context) is for an amqps:// URL."""
        connection = await aio_pika.connect_robust(
            url,
            client_properties={"connection_name": name},
            reconnect_interval=reconnect_interval,
            ssl_context=ssl_context,
        )
        user = login_of(url)
        try:
            await rabbitmq_topology.declare_exchanges(connection, user)
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            # Not declared through this channel, so a reconnect never redeclares (for an agent:
            # is never refused) what the provisioning owns.
            exchanges = {n: await channel.get_exchange(n, ensure=False) for n in EXCHANGE_TYPES}
        except BaseException:
            await connection.close()
            raise
        return cls(connection, channel, exchanges, user)

    async def declare_queue(
        self, queue: str, bindings: Sequence[str], exchange: str = EVENTS
    ) -> None:
        self._exchange(exchange)
        await rabbitmq_topology.declare_queue(
            self._connection, self._user, queue, bindings, exchange
        )

    async def publish(
        self, exchange: str, messages: Sequence[Message], *, mandatory: bool = True
    ) -> None:
        """As this connection's login (the broker checks user_id), whatever `sender` says.
        Pipelined: up to PUBLISH_WINDOW unconfirmed at once. Order holds because each
        publish task starts in turn and aiormq numbers and writes frames under a FIFO lock.
        On an error, messages after the failing one may have been published too."""
        target = self._exchange(exchange)
        await self._channel_reopened()
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
                task = asyncio.create_task(_publish_one(target, message, self._user, mandatory))
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
        self,
        queue: str,
        handler: Handler,
        *,
        prefetch: int = 16,
        max_attempts: int = 5,
        hold_seconds: float = HOLD_SECONDS,
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
        consumer = RabbitMqConsumer(
            channel, source, handler, max_attempts, self._dead_letter, hold_seconds
        )
        try:
            await consumer.start()
        except ChannelAccessRefused as exc:
            await channel.close()
            raise Refused(f"user {self._user!r} may not consume {queue!r}") from exc
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
        origin = dead_letter_headers(
            reason,
            queue=queue,
            exchange=incoming.exchange or "",
            routing_key=incoming.routing_key or "",
            sender=incoming.user_id,
        )
        dead = aio_pika.Message(
            body=incoming.body,  # as received: it may be the very thing that could not be parsed
            content_type=incoming.content_type,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=incoming.message_id,
            type=incoming.type,
            headers={**headers, **origin},
            user_id=self._user,
        )
        await _publish_amqp(self._exchanges[DEAD], dead, dead_letter_queue(queue))

    async def _channel_reopened(self) -> None:
        """The broker closes the channel of a refused publish; the robust channel reopens it."""
        with contextlib.suppress(TimeoutError):  # then the publish fails: NotConfirmed
            async with asyncio.timeout(REOPEN_WAIT):
                while self._channel.is_closed:
                    await self._channel.ready()
                    await asyncio.sleep(0.01)  # until the close is seen and the reopen starts

    def _exchange(self, name: str) -> AbstractExchange:
        try:
            return self._exchanges[name]
        except KeyError:
            raise BusError(f"no exchange {name!r}") from None


async def _publish_one(
    exchange: AbstractExchange, message: Message, user: str, mandatory: bool
) -> None:
    await _publish_amqp(exchange, to_amqp(message, user), message.routing_key, mandatory=mandatory)


async def _publish_amqp(
    exchange: AbstractExchange, message: aio_pika.Message, key: str, *, mandatory: bool = True
) -> None:
    try:
        await exchange.publish(message, routing_key=key, mandatory=mandatory)
    except PublishError as exc:
        raise Unroutable(f"{exchange.name} {key!r}: no queue is bound") from exc
    except DeliveryError as exc:
        raise NotConfirmed(f"{exchange.name} {key!r}: the broker refused it") from exc
    except ChannelAccessRefused as exc:
        raise Refused(f"{exchange.name} {key!r}: {exc}") from exc
    except (AMQPError, ConnectionError, ChannelInvalidStateError) as exc:
        raise NotConfirmed(f"{exchange.name} {key!r}: lost ({exc!r})") from exc
