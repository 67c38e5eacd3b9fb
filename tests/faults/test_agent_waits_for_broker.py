"""An agent started before its broker: the real staging agent process, pointed at a port where
nothing listens, waits (logging `bus.unreachable` without the password) and consumes once a
private RabbitMQ node comes up on that port; told to stop while it waits, it stops cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from ferry_events.backends import open_bus
from ferry_events.bus import EVENTS, Unroutable
from ferry_events.envelope import Message, Metadata, StoredEvent
from ferry_events.schemas import Source, StagingRequested
from ferry_events.signing import generate_key
from private_rabbitmq import PlainNode, free_port, private_tcp_node

pytestmark = [pytest.mark.rabbitmq]

AGENT = Path(sys.executable).parent / "ferry-staging-agent"


def log_lines(log: Path) -> list[dict[str, Any]]:
    """The JSON lines of the agent's log (libraries may print plain ones too)."""
    text = log.read_text() if log.exists() else ""
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def wait_for_log(
    agent: subprocess.Popen[bytes], log: Path, event: str, count: int = 1, timeout: float = 60.0
) -> list[Any]:
    deadline = time.monotonic() + timeout
    while len(found := [line for line in log_lines(log) if line["event"] == event]) < count:
        running = agent.poll() is None and time.monotonic() < deadline
        assert running, f"no {event!r} in:\n{log.read_text()}"
        time.sleep(0.1)
    return found


@contextlib.contextmanager
def staging_agent(broker_url: str, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    generate_key(tmp_path / "api.key")  # the agent obeys only commands signed by the API
    env = {
        **os.environ,
        "FERRY_BROKER_URL": broker_url,
        "FERRY_DATA_DIR": str(tmp_path / "data"),
        "FERRY_TRUSTED_KEYS": str(tmp_path / "api.key.pub"),
    }
    with (tmp_path / "agent.log").open("wb") as log:
        agent = subprocess.Popen([AGENT], env=env, stderr=log, stdout=log)
    try:
        yield agent
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()


def command() -> Message:
    """The relay's message for a stored StagingRequested (its source does not matter here)."""
    payload = StagingRequested(
        ticket_id="t-1",
        app="shop",
        source=Source(type="git", url="https://git.invalid/shop.git"),
        ref="main",
    )
    stored = StoredEvent(
        position=1,
        stream="ticket-t-1",
        version=2,
        event_id=uuid.uuid4(),
        type=payload.type_name,
        schema_version=payload.schema_version,
        data=payload.model_dump(mode="json"),
        metadata=Metadata(),
        recorded_at=datetime.now(UTC),
        hash="0" * 64,
    )
    return Message.of_stored(stored, payload.routing_key())


async def publish_when_bound(node: PlainNode, message: Message) -> None:
    bus = await open_bus(node.amqp_url())
    try:
        async with asyncio.timeout(30):
            while True:
                try:
                    return await bus.publish(EVENTS, [message])
                except Unroutable:  # the agent has not declared its queue yet
                    await asyncio.sleep(0.1)
    finally:
        await bus.close()


def staging_queue(node: PlainNode) -> tuple[int, int]:
    """(messages ready or unacked, consumers) of the agent's queue."""
    rows = node.ctl("list_queues", "--no-table-headers", "name", "messages", "consumers")
    for name, messages, consumers in (row.split("\t") for row in rows.splitlines()):
        if name == "staging":
            return int(messages), int(consumers)
    raise AssertionError(f"no staging queue in {rows!r}")


async def test_an_agent_started_before_its_broker_waits_then_consumes(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "agent.log"
    with staging_agent(f"amqp://guest:guest@127.0.0.1:{port}/", tmp_path) as agent:
        unreachable = wait_for_log(agent, log, "bus.unreachable", count=2)
        assert agent.poll() is None, "the agent gave up instead of waiting"
        assert unreachable[0]["url"] == f"amqp://guest:***@127.0.0.1:{port}/"
        with private_tcp_node(port) as node:
            wait_for_log(agent, log, "agent.started")
            await publish_when_bound(node, command())
            async with asyncio.timeout(60):
                while staging_queue(node) != (0, 1):  # taken and settled, still consuming
                    await asyncio.sleep(0.2)
            agent.send_signal(signal.SIGTERM)
            assert agent.wait(timeout=30) == 0
    assert "guest:guest" not in log.read_text()
    assert "Traceback" not in log.read_text()


async def test_an_agent_waiting_for_its_broker_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    log = tmp_path / "agent.log"
    with staging_agent(f"amqp://guest:guest@127.0.0.1:{free_port()}/", tmp_path) as agent:
        wait_for_log(agent, log, "bus.unreachable")
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=10) == 0
    assert "Traceback" not in log.read_text()
