"""Open a store or a bus from its URL; drivers are imported only when asked for.

An rsync agent installs ferry-events[rabbitmq] alone, so nothing here may import asyncpg,
aiosqlite or aio-pika at module level.
"""

from __future__ import annotations

from pathlib import Path
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


async def open_bus(
    url: str,
    *,
    ca_file: str | Path | None = None,
    cert_file: str | Path | None = None,
    key_file: str | Path | None = None,
    name: str = "ferry",
) -> Bus:
    """`amqp://…` or `amqps://…` for RabbitMQ, `memory://` for the in-process bus.

    For amqps: `ca_file` is the CA that signed the broker's certificate (the system's CAs
    without it); `cert_file` and `key_file` are a client certificate, for a broker that asks
    for one. The bus publishes as the URL's user; `name` is the connection name it shows."""
    tls = (ca_file, cert_file, key_file) != (None, None, None)
    if tls and not url.startswith("amqps://"):
        raise ValueError("ca_file, cert_file and key_file need an amqps:// broker URL")
    if url.startswith(("amqp://", "amqps://")):
        from ferry_events.bus_rabbitmq import RabbitMqBus, tls_context

        context = tls_context(ca_file, cert_file, key_file) if tls else None
        return await RabbitMqBus.connect(url, name=name, ssl_context=context)
    if url.startswith("memory://"):
        from ferry_events.bus_memory import MemoryBus

        return MemoryBus()
    raise ValueError("broker URL must start with amqp://, amqps:// or memory://")
