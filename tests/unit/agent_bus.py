"""What the agents' tests do on the bus: the relay's message for a stored command, signed as the
API signs it (with this module's test key, which `trusted_key_file` hands to an agent), publishing
it once the agent has bound its queue, listening to reports, scraping /metrics."""

from __future__ import annotations

import asyncio
import socket
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from ferry_events.bus import EVENTS, REPORTS, Bus, Unroutable
from ferry_events.command_trust import Trust
from ferry_events.envelope import Message, Metadata, StoredEvent
from ferry_events.registry import Event
from ferry_events.signing import CommandSigner, CommandVerifier, key_id_of

API_KEY = Ed25519PrivateKey.generate()  # the test API's signing key (one per test session)
SIGNER = CommandSigner(API_KEY, ttl_seconds=600)


def signed(message: Message) -> Message:
    """The message as the relay publishes it: signed by the API's key."""
    return SIGNER.sign(message)


def trusted_key_file(folder: Path) -> Path:
    """The API's public key in a .pub file under `folder`, for an agent's trusted keys."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "api.pub"
    path.write_bytes(
        API_KEY.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return path


def api_trust(host: str | None = None) -> Trust:
    """What an agent of the runtime's own tests trusts: the API's key."""
    return Trust(CommandVerifier({key_id_of(API_KEY): API_KEY.public_key()}), host=host)


def relayed(command: Event, correlation_id: str | None = None) -> Message:
    """The message the relay publishes for this command once the API has stored it, signed."""
    stored = StoredEvent(
        position=7,
        stream=f"ticket-{getattr(command, 'ticket_id', 'x')}",
        version=2,
        event_id=uuid.uuid4(),
        type=command.type_name,
        schema_version=command.schema_version,
        data=command.model_dump(mode="json"),
        metadata=Metadata(correlation_id=correlation_id),
        recorded_at=datetime.now(UTC),
        hash="0" * 64,
    )
    return signed(Message.of_stored(stored, command.routing_key()))


async def publish_once_bound(bus: Bus, message: Message) -> None:
    """The agent declares its queue as it starts; until then a command is unroutable."""
    deadline = time.monotonic() + 20
    while True:
        try:
            return await bus.publish(EVENTS, [message])
        except Unroutable:
            assert time.monotonic() < deadline, "the agent never bound its queue"
            await asyncio.sleep(0.05)


async def listen_to_reports(bus: Bus, *patterns: str) -> asyncio.Queue[Message]:
    """Every report matching `patterns` (default: all), in a queue of this test's own."""
    reports: asyncio.Queue[Message] = asyncio.Queue()
    queue = f"test-reports-{uuid.uuid4().hex[:8]}"
    await bus.declare_queue(queue, patterns or ["#"], exchange=REPORTS)
    await bus.consume(queue, reports.put)
    return reports


async def next_report(reports: asyncio.Queue[Message], type_name: str) -> Message:
    while (message := await asyncio.wait_for(reports.get(), 30)).type != type_name:
        pass
    return message


async def drained(reports: asyncio.Queue[Message], seconds: float = 0.5) -> list[Message]:
    """What else arrives within `seconds`."""
    await asyncio.sleep(seconds)
    return [reports.get_nowait() for _ in range(reports.qsize())]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def scrape(port: int) -> str:
    """GET /metrics once the agent serves it (it starts serving after binding its queue)."""
    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                return str(r.read().decode())
        except OSError:
            assert time.monotonic() < deadline, "no /metrics endpoint"
            await asyncio.sleep(0.05)
