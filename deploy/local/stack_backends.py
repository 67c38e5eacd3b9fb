"""The servers `make up` runs against: its own PostgreSQL database and RabbitMQ vhost, created
when missing, with a broker user per process (deploy/broker/setup.py), and the probes that tell
when the API answers and each agent consumes."""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

import aio_pika
import asyncpg
import httpx
from aio_pika.exceptions import AMQPError
from stack_settings import HOSTS, Stack, broker_secrets, broker_users, queues, shown

BROKER_SETUP = Path(__file__).resolve().parents[1] / "broker" / "setup.py"

# Names that are safe to quote in SQL and to hand to rabbitmqctl (never read as an option).
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


class BackendFailed(Exception):
    """PostgreSQL or RabbitMQ refused what the stack needs; the message says what."""


def checked_name(kind: str, name: str) -> str:
    if not NAME.fullmatch(name):
        raise BackendFailed(f"{kind} {name!r}: use letters, digits, '_', '.', '-'")
    return name


async def ensure_database(url: str) -> bool:
    """CREATE DATABASE for the URL's database unless the server has it; True if created."""
    server, name = url.rsplit("/", 1)
    checked_name("database", name)
    try:
        conn = await asyncpg.connect(f"{server}/postgres")
        try:
            if await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
                return False
            await conn.execute(f'CREATE DATABASE "{name}"')
            return True
        finally:
            await conn.close()
    except (OSError, asyncpg.PostgresError) as exc:
        raise BackendFailed(f"PostgreSQL at {shown(server)}: {exc}") from exc


def rabbitmqctl(*args: str) -> str:
    try:
        proc = subprocess.run(
            ["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=120, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BackendFailed(f"rabbitmqctl: {exc} (or set FERRY_BROKER_URL to a vhost)") from exc
    if proc.returncode != 0:
        raise BackendFailed(f"rabbitmqctl {args[0]} failed: {proc.stderr.strip()}")
    return proc.stdout


def ensure_vhost(vhost: str, broker_url: str) -> bool:
    """The vhost, and full permissions on it for the broker URL's user; True if created."""
    checked_name("vhost", vhost)
    user = urlsplit(broker_url).username or "guest"
    created = vhost not in rabbitmqctl("list_vhosts", "name").split()
    if created:
        rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
    return created


def provision_broker_users(stack: Stack) -> None:
    """deploy/broker/setup.py, as an operator runs it: the users of the API, the staging agent,
    the publisher and each demo host in the stack's vhost, least privilege each; idempotent."""
    users = broker_users(stack)
    if stack.vhost is None or users is None:
        return  # FERRY_BROKER_URL: a broker the stack does not provision
    hosts = [arg for host in HOSTS for arg in ("--host", host)]
    argv = [sys.executable, str(BROKER_SETUP), "--vhost", stack.vhost, "--prefix", users.prefix]
    argv += [*hosts, "--password-dir", str(broker_secrets(stack))]
    try:
        subprocess.run(argv, capture_output=True, text=True, timeout=300, check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", None) or exc
        raise BackendFailed(f"deploy/broker/setup.py failed: {detail}") from exc


def ports_in_use(ports: dict[str, int]) -> list[str]:
    """The settings among these whose port something on 127.0.0.1 already listens on."""
    taken = []
    for setting, port in ports.items():
        with socket.socket() as probe:
            # As uvicorn and rsyncd bind: a port in TIME_WAIT after the last stop is free.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                taken.append(f"{setting}={port}")
    return taken


async def api_ready(api_url: str) -> bool:
    """The API answers /readyz with 200: its store and bus answer."""
    try:
        async with httpx.AsyncClient(timeout=2) as http:
            return (await http.get(f"{api_url}/readyz")).status_code == 200
    except httpx.TransportError:
        return False


async def listening(port: int) -> bool:
    """Something accepts connections on 127.0.0.1:port (the publisher's rsync daemon)."""
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    await writer.wait_closed()
    return True


async def consumed(broker_url: str, queues: Iterable[str]) -> set[str]:
    """The queues among these that have a consumer (asked of the broker, passively)."""
    found: set[str] = set()
    try:
        connection = await aio_pika.connect(broker_url)
    except (AMQPError, OSError):
        return found
    async with connection:
        for queue in queues:
            try:
                channel = await connection.channel()
                # A passive declare of a missing queue closes the channel: a fresh one each.
                async with channel:
                    declared = await channel.declare_queue(queue, passive=True)
                    if declared.declaration_result.consumer_count:
                        found.add(queue)
            except AMQPError:
                continue
    return found


async def not_ready(stack: Stack) -> list[str]:
    """What is not ready yet: the API until /readyz answers, an agent until it consumes its
    queue, the publisher's rsync daemon until it accepts connections."""
    have = await consumed(stack.broker_url, queues().values())
    waiting = [name for name, queue in queues().items() if queue not in have]
    if not await listening(stack.rsync_port):
        waiting.append(f"the publisher's rsync daemon on port {stack.rsync_port}")
    return waiting if await api_ready(stack.api_url) else ["api", *waiting]
