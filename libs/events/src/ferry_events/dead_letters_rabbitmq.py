"""RabbitMqDeadLetters: the dead letters of a RabbitMQ vhost, taken from `<queue>.dead` by
basic.get (held unacked, so they return to the queue, in order, when the channel closes) and
replayed with publisher confirms, each acked only once the broker has the replay.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator, Sequence

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
)
from aio_pika.exceptions import AMQPError, DeliveryError, PublishError
from aiormq.exceptions import (
    ChannelAccessRefused,
    ChannelNotFoundEntity,
    ChannelPreconditionFailed,
)

from ferry_events.bus import dead_letter_queue
from ferry_events.bus_rabbitmq import login_of
from ferry_events.dead_letters import DeadLetter, DeadLetterError, letter_of

LIMIT = 10_000  # letters taken from one queue at once: all of them are held unacked meanwhile
Taken = list[tuple[AbstractIncomingMessage, DeadLetter]]


class RabbitMqDeadLetters:
    """One plain (not robust) connection: an operator's command, not a service."""

    def __init__(self, connection: AbstractConnection, user: str) -> None:
        self._connection = connection
        self._user = user

    @classmethod
    async def connect(
        cls, url: str, *, ssl_context: ssl.SSLContext | None = None
    ) -> RabbitMqDeadLetters:
        connection = await aio_pika.connect(
            url,
            ssl_context=ssl_context,
            client_properties={"connection_name": "ferry-dead-letters"},
        )
        return cls(connection, login_of(url))

    async def list_letters(self, queues: Sequence[str]) -> list[DeadLetter]:
        letters: list[DeadLetter] = []
        for queue in queues:
            async with self._taken(queue) as taken:
                letters += [letter for _, letter in taken]
        return letters

    async def replay(
        self, queues: Sequence[str], message_id: str | None, *, as_sender: bool = True
    ) -> list[DeadLetter]:
        replayed: list[DeadLetter] = []
        for queue in queues:
            async with self._taken(queue) as taken:
                for incoming, letter in taken:
                    if message_id is None or letter.message_id == message_id:
                        await self._republish(letter, incoming, as_sender)
                        await incoming.ack()
                        replayed.append(letter)
        return replayed

    async def close(self) -> None:
        await self._connection.close()

    @contextlib.asynccontextmanager
    async def _taken(self, queue: str) -> AsyncIterator[Taken]:
        """Every letter of `<queue>.dead` (none if there is no such queue), unacked until the
        block ends; those not acked in it go back."""
        channel = await self._connection.channel(publisher_confirms=False)
        try:
            dead = await _passive(channel, dead_letter_queue(queue))
            taken: Taken = []
            while dead is not None and len(taken) < LIMIT:
                incoming = await _get(dead, self._user)
                if incoming is None:
                    break
                taken.append((incoming, _letter(queue, incoming)))
            yield taken
        finally:
            if not channel.is_closed:
                await channel.close()

    async def _republish(
        self, letter: DeadLetter, incoming: AbstractIncomingMessage, as_sender: bool
    ) -> None:
        user = letter.sender if as_sender and letter.sender else self._user
        message = aio_pika.Message(
            body=letter.body,
            content_type=incoming.content_type,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=letter.message_id,
            type=letter.type,
            headers=dict(letter.headers),
            user_id=user,
        )
        # A channel of its own: a refused publish closes it, never the letters' channel.
        channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
        try:
            exchange = await _exchange(channel, letter.exchange)
            await exchange.publish(message, routing_key=letter.routing_key, mandatory=True)
        except PublishError:
            raise _failed(letter, "no queue is bound to it") from None
        except ChannelAccessRefused as refused:
            raise _failed(letter, f"broker user {self._user!r} may not publish there") from refused
        except ChannelPreconditionFailed as refused:
            hint = "replay as a broker user tagged impersonator, or as yourself (as_sender=False)"
            raise _failed(letter, f"the broker refused to publish as {user!r}: {hint}") from refused
        except (AMQPError, DeliveryError) as error:
            raise _failed(letter, f"the broker did not take it ({error!r})") from error
        finally:
            if not channel.is_closed:
                await channel.close()


async def _passive(channel: AbstractChannel, name: str) -> AbstractQueue | None:
    try:
        return await channel.declare_queue(name, passive=True)
    except ChannelNotFoundEntity:
        return None


async def _get(queue: AbstractQueue, user: str) -> AbstractIncomingMessage | None:
    try:
        return await queue.get(no_ack=False, fail=False)
    except ChannelAccessRefused:
        raise DeadLetterError(
            f"broker user {user!r} may not read {queue.name!r}: use one that may (an operator's; "
            "the API's own user reads only its work queues)"
        ) from None


async def _exchange(channel: AbstractChannel, name: str) -> AbstractExchange:
    if not name:
        return channel.default_exchange
    return await channel.get_exchange(name, ensure=False)


def _letter(queue: str, incoming: AbstractIncomingMessage) -> DeadLetter:
    return letter_of(
        queue,
        incoming.headers,
        message_id=incoming.message_id or "",
        type=incoming.type or "",
        body=incoming.body,
        sender=incoming.user_id,
    )


def _failed(letter: DeadLetter, why: str) -> DeadLetterError:
    where = f"{letter.exchange or '(default exchange)'} {letter.routing_key!r}"
    return DeadLetterError(f"replay of {letter.message_id} to {where}: {why}; it stays dead")
