"""Declaring Ferry's exchanges and queues on RabbitMQ; for a user the broker may not let declare
them (a least-privilege agent), checking that the provisioning (deploy/broker) made them.

Every attempt runs on a throwaway channel: a refusal closes that channel, never the bus's own.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aio_pika
import structlog
from aio_pika.abc import AbstractChannel, AbstractRobustConnection
from aiormq.exceptions import ChannelAccessRefused, ChannelNotFoundEntity

from ferry_events.bus import DEAD, EVENTS, REPORTS, BusError, dead_letter_queue

log = structlog.get_logger()

DELIVERY_LIMIT = 20  # broker backstop, above any max_attempts: a consumer-crashing message dies too
QUORUM: dict[str, Any] = {"x-queue-type": "quorum"}
EXCHANGE_TYPES = {
    EVENTS: aio_pika.ExchangeType.TOPIC,
    REPORTS: aio_pika.ExchangeType.TOPIC,
    DEAD: aio_pika.ExchangeType.DIRECT,
}
PROVISION_HINT = "provision the vhost first (deploy/broker/setup.py)"


def queue_arguments(queue: str) -> dict[str, Any]:
    """A work queue's arguments; the provisioning declares the very same ones."""
    return {
        **QUORUM,
        "x-delivery-limit": DELIVERY_LIMIT,
        "x-dead-letter-exchange": DEAD,
        "x-dead-letter-routing-key": dead_letter_queue(queue),
    }


@contextlib.asynccontextmanager
async def scratch_channel(connection: AbstractRobustConnection) -> AsyncIterator[AbstractChannel]:
    """A plain (not robust) channel: nothing on it is replayed after a reconnect."""
    await connection.ready()
    channel = aio_pika.Channel(connection, publisher_confirms=False)
    await channel.initialize()
    try:
        yield channel
    finally:
        if not channel.is_closed:
            await channel.close()


async def declare_exchanges(connection: AbstractRobustConnection, user: str) -> None:
    try:
        async with scratch_channel(connection) as channel:
            for name, kind in EXCHANGE_TYPES.items():
                await channel.declare_exchange(name, kind, durable=True)
    except ChannelAccessRefused as refused:
        await _expect_provisioned(connection, user, refused, exchanges=list(EXCHANGE_TYPES))


async def declare_queue(
    connection: AbstractRobustConnection,
    user: str,
    queue: str,
    bindings: Sequence[str],
    exchange: str,
) -> None:
    dead = dead_letter_queue(queue)
    try:
        async with scratch_channel(connection) as channel:
            dead_queue = await channel.declare_queue(dead, durable=True, arguments=QUORUM)
            await dead_queue.bind(DEAD, routing_key=dead)
            declared = await channel.declare_queue(
                queue, durable=True, arguments=queue_arguments(queue)
            )
            for pattern in bindings:
                await declared.bind(exchange, routing_key=pattern)
    except ChannelAccessRefused as refused:
        await _expect_provisioned(connection, user, refused, queues=[queue, dead])
        # Expected for an agent on every start; its bindings are the provisioning's to make.
        log.info("queue_provisioned", queue=queue, user=user, declare_refused=str(refused))


async def _expect_provisioned(
    connection: AbstractRobustConnection,
    user: str,
    refused: ChannelAccessRefused,
    *,
    exchanges: Sequence[str] = (),
    queues: Sequence[str] = (),
) -> None:
    """Passive declarations: they need no permission, and fail only for what does not exist."""
    kind, name = "", ""
    try:
        async with scratch_channel(connection) as channel:
            for kind, name in [("exchange", e) for e in exchanges] + [("queue", q) for q in queues]:
                if kind == "exchange":
                    await channel.declare_exchange(name, passive=True)
                else:
                    await channel.declare_queue(name, passive=True)
    except ChannelNotFoundEntity:
        raise BusError(
            f"{kind} {name!r} does not exist and user {user!r} may not declare it: "
            f"{PROVISION_HINT} [{refused}]"
        ) from None
