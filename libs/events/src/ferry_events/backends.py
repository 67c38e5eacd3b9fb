"""Open a store or a bus from its URL; drivers are imported only when asked for.

An rsync agent installs ferry-events[rabbitmq] alone, so nothing here may import asyncpg,
aiosqlite or aio-pika at module level.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ferry_events.bus import Bus
    from ferry_events.store_postgres import PostgresEventStore
    from ferry_events.store_sqlite import SqliteEventStore


async def open_store(url: str) -> PostgresEventStore | SqliteEventStore:
    """`postgresql://…` or `sqlite:///path/to/file.db` (`sqlite:///:memory:` for a throwaway)."""
    if url.startswith(("postgresql://", "postgres://")):
        from ferry_events.store_postgres import PostgresEventStore

        return await PostgresEventStore.connect(url)
    if url.startswith("sqlite://"):
        from ferry_events.store_sqlite import SqliteEventStore

        return await SqliteEventStore.connect(url.removeprefix("sqlite://"))
    raise ValueError("database URL must start with postgresql:// or sqlite://")


async def open_bus(url: str) -> Bus:
    """`amqp://…` for RabbitMQ, `memory://` for the in-process bus."""
    if url.startswith(("amqp://", "amqps://")):
        from ferry_events.bus_rabbitmq import RabbitMqBus

        return await RabbitMqBus.connect(url)
    if url.startswith("memory://"):
        from ferry_events.bus_memory import MemoryBus

        return MemoryBus()
    raise ValueError("broker URL must start with amqp:// or memory://")
