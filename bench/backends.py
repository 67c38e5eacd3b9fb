"""Fresh, throwaway PostgreSQL databases and RabbitMQ vhosts for one benchmark run."""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg

PG_ADMIN_URL = os.environ.get(
    "FERRY_BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
AMQP_HOST = os.environ.get("FERRY_BENCH_AMQP_HOST", "127.0.0.1:5672")


@contextlib.asynccontextmanager
async def database() -> AsyncIterator[str]:
    name = f"ferry_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(PG_ADMIN_URL)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@contextlib.contextmanager
def vhost() -> Iterator[str]:
    name = f"ferry-bench-{uuid.uuid4().hex[:10]}"
    ctl = ["rabbitmqctl", "-q"]
    subprocess.run([*ctl, "add_vhost", name], check=True, capture_output=True)
    subprocess.run(
        [*ctl, "set_permissions", "-p", name, "guest", ".*", ".*", ".*"],
        check=True,
        capture_output=True,
    )
    try:
        yield f"amqp://guest:guest@{AMQP_HOST}/{name}"
    finally:
        subprocess.run([*ctl, "delete_vhost", name], check=False, capture_output=True)
