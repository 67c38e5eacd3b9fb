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


async def bare_publish(amqp_url: str, events: list[dict[str, object]]) -> float:
    """aio-pika with publisher confirms, 100 messages in flight, persistent, to a quorum queue,
    publishing the same messages a relay must send: the event as JSON with its id, type and
    position (what an at-least-once consumer needs). Reading the log, routing and checkpointing
    are what the ratio prices."""
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel(publisher_confirms=True)
    exchange = await channel.declare_exchange("bare", aio_pika.ExchangeType.TOPIC, durable=True)
    queue = await channel.declare_queue("bare", durable=True, arguments={"x-queue-type": "quorum"})
    await queue.bind(exchange, "#")
    window = asyncio.Semaphore(100)

    async def one(event: dict[str, object]) -> None:
        async with window:
            message = aio_pika.Message(
                json.dumps(event).encode(),
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                content_type="application/json",
                message_id=str(event["event_id"]),
                type=str(event["type"]),
                headers={"position": str(event["position"]), "stream": str(event["stream"])},
            )
            await exchange.publish(message, routing_key="ticket.approved")

    start = time.perf_counter()
    await asyncio.gather(*(one(e) for e in events))
    elapsed = time.perf_counter() - start
    await connection.close()
    return elapsed


async def relay_events(store: PostgresEventStore, bus: RabbitMqBus, total: int) -> float:
    """Seconds for a relay started on a backlog of `total` events to have them all confirmed."""
    start = time.perf_counter()
    relay = Relay(store, bus)
    task = asyncio.create_task(relay.run())
    while relay.published < total:  # in memory: polling the checkpoint would load the database
        await asyncio.sleep(0.005)
    elapsed = time.perf_counter() - start
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return elapsed


async def run(scale: float = 1.0, rounds: int = 5) -> list[Figure]:
    """Rounds alternate a bare publish and a relay over a fresh backlog of the same size, so a
    change of load on a shared machine hits both sides alike."""
    per_round = int(4000 * scale)
    t_bare = t_relay = 0.0
    async with database() as url:
        store = await PostgresEventStore.connect(url)
        await store.migrate()
        with vhost() as amqp_url:
            bus = await RabbitMqBus.connect(amqp_url)
            await bus.declare_queue("bench-sink", ["#"], EVENTS)
            for r in range(rounds):
                after = await store.last_position()
                for i in range(per_round // 100):
                    await store.append(f"relay-{r}-{i}", [new_event() for _ in range(100)], 0)
                backlog = await store.read_all(after=after, limit=per_round)
                t_bare += await bare_publish(amqp_url, [e.model_dump(mode="json") for e in backlog])
                t_relay += await relay_events(store, bus, per_round)
            await bus.close()
        await store.close()
    total = per_round * rounds
    return [
        Figure(
            "relay: stored events to RabbitMQ, confirmed",
            total / t_relay,
            total / t_bare,
            "events/s",
            0.7,
        )
    ]
