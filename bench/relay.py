"""Relay throughput: stored events to RabbitMQ with confirms, vs bare aio-pika publishing."""

from __future__ import annotations

import asyncio
import json
import time

import aio_pika
from ferry_events.bus import EVENTS
from ferry_events.bus_rabbitmq import RabbitMqBus
from ferry_events.relay import Relay
from ferry_events.store_postgres import PostgresEventStore

from bench.backends import database, vhost
from bench.report import Figure
from bench.store import new_event


async def bare_publish(amqp_url: str, bodies: list[bytes]) -> float:
    """aio-pika with publisher confirms, 100 messages in flight, persistent, to a quorum queue."""
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel(publisher_confirms=True)
    exchange = await channel.declare_exchange("bare", aio_pika.ExchangeType.TOPIC, durable=True)
    queue = await channel.declare_queue("bare", durable=True, arguments={"x-queue-type": "quorum"})
    await queue.bind(exchange, "#")
    window = asyncio.Semaphore(100)

    async def one(body: bytes) -> None:
        async with window:
            await exchange.publish(
                aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key="ticket.approved",
            )

    start = time.perf_counter()
    await asyncio.gather(*(one(b) for b in bodies))
    elapsed = time.perf_counter() - start
    await connection.close()
    return elapsed


async def relay_events(store: PostgresEventStore, bus: RabbitMqBus, total: int) -> float:
    start = time.perf_counter()
    task = asyncio.create_task(Relay(store, bus).run())
    while await store.checkpoint("relay") < total:
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - start
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return elapsed


async def run(scale: float = 1.0) -> list[Figure]:
    total = int(20000 * scale)
    async with database() as url:
        store = await PostgresEventStore.connect(url)
        await store.migrate()
        for i in range(total // 100):
            await store.append(f"relay-{i}", [new_event() for _ in range(100)], 0)
        sample = (await store.read_all(limit=1))[0]
        with vhost() as amqp_url:
            bus = await RabbitMqBus.connect(amqp_url)
            await bus.declare_queue("bench-sink", ["#"], EVENTS)
            body = json.dumps(sample.model_dump(mode="json")).encode()
            t_bare = await bare_publish(amqp_url, [body] * total)
            t_relay = await relay_events(store, bus, total)
            await bus.close()
        await store.close()
    return [
        Figure(
            "relay: stored events to RabbitMQ, confirmed",
            total / t_relay,
            total / t_bare,
            "events/s",
            0.7,
        )
    ]
