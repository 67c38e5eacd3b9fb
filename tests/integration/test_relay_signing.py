"""The relay with a signer, against the real PostgreSQL and RabbitMQ: commands reach their agents
signed and verify there; broadcasts pass unsigned; a command held up past its TTL is signed anew."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from ferry_events import Message, NewEvent
from ferry_events.backends import open_bus, open_store
from ferry_events.bus import Bus
from ferry_events.projection import LogWithReadModels
from ferry_events.registry import Event
from ferry_events.relay import Backoff, Relay
from ferry_events.schemas import (
    HostSyncRequested,
    Source,
    StagingRequested,
    TicketApproved,
    TicketSubmitted,
)
from ferry_events.signing import (
    EXPIRES_HEADER,
    KEY_ID_HEADER,
    SIGNATURE_HEADER,
    CommandRefused,
    CommandSigner,
    CommandVerifier,
    generate_key,
    load_private_key,
    load_public_keys,
)

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]


class Agent:
    """A consumer that checks each command as it arrives, the way an agent's runtime will."""

    def __init__(self, verifier: CommandVerifier) -> None:
        self.verifier = verifier
        self.messages: list[Message] = []
        self.verdicts: list[str] = []  # "ok" or the refusal's reason, judged on arrival

    async def receive(self, message: Message) -> None:
        self.messages.append(message)
        try:
            self.verifier.verify(message)
            self.verdicts.append("ok")
        except CommandRefused as refused:
            self.verdicts.append(refused.reason)


@pytest.fixture
async def store(pg_url: str) -> AsyncIterator[LogWithReadModels]:
    opened = await open_store(pg_url)
    await opened.migrate()
    yield opened
    await opened.close()


@pytest.fixture
async def bus(amqp_url: str) -> AsyncIterator[Bus]:
    opened = await open_bus(amqp_url)
    yield opened
    await opened.close()


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "api.key"
    generate_key(path)
    return path


def trusting(key_file: Path) -> CommandVerifier:
    return CommandVerifier(load_public_keys(Path(f"{key_file}.pub")))


async def append(store: LogWithReadModels, stream: str, *events: Event) -> None:
    await store.append(stream, [NewEvent.of(event) for event in events], expected_version=None)


def sync(host: str) -> HostSyncRequested:
    return HostSyncRequested(ticket_id="t1", app="shop", host=host, version=3, digest="d" * 64)


async def eventually(check: Callable[[], bool], timeout: float = 60.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def running(relay: Relay) -> AsyncIterator[None]:
    task = asyncio.create_task(relay.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_commands_arrive_signed_and_verify_and_broadcasts_pass_unsigned(
    store: LogWithReadModels, bus: Bus, key_file: Path
) -> None:
    web_1, stager, audit = (Agent(trusting(key_file)) for _ in range(3))
    for queue, bindings, agent in [
        ("agent-web-1", ["host.sync_requested.web-1"], web_1),
        ("staging-agent", ["ticket.staging_requested"], stager),
        ("audit", ["ticket.submitted", "ticket.approved"], audit),
    ]:
        await bus.declare_queue(queue, bindings)
        await bus.consume(queue, agent.receive)
    source = Source(type="git", url="https://git.example.com/shop.git")
    await append(
        store,
        "ticket-t1",
        TicketSubmitted(ticket_id="t1", app="shop", kind="deploy", reason="r", author="dev"),
        StagingRequested(ticket_id="t1", app="shop", source=source, ref="main"),
        TicketApproved(ticket_id="t1", by="lead"),
        sync("web-1"),
    )
    signer = CommandSigner(load_private_key(key_file), ttl_seconds=300)
    before = datetime.now(UTC)
    async with running(Relay(store, bus, signer=signer)):
        await eventually(lambda: len(web_1.messages) + len(stager.messages) == 2)
        await eventually(lambda: len(audit.messages) == 2)
    stored = await store.read_all(0, 10)

    assert web_1.verdicts == stager.verdicts == ["ok"]
    assert web_1.verifier.verify(web_1.messages[0]) == stored[3]
    assert stager.verifier.verify(stager.messages[0]) == stored[1]
    assert web_1.messages[0].headers[KEY_ID_HEADER] == signer.key_id
    expires = datetime.fromisoformat(web_1.messages[0].headers[EXPIRES_HEADER])
    assert before + timedelta(seconds=298) <= expires <= datetime.now(UTC) + timedelta(seconds=300)
    assert [m.stored_event() for m in audit.messages] == [stored[0], stored[2]]
    assert all(SIGNATURE_HEADER not in m.headers for m in audit.messages)
    assert audit.verdicts == ["unsigned", "unsigned"]  # an agent would never obey them

    # An agent that does not trust this API's key obeys none of its commands.
    stranger_id = generate_key(key_file.parent / "stranger.key")
    stranger = CommandVerifier(load_public_keys(key_file.parent / "stranger.key.pub"))
    with pytest.raises(CommandRefused, match="unknown key") as refused:
        stranger.verify(web_1.messages[0])
    assert stranger_id not in refused.value.reason


async def test_a_command_held_up_longer_than_its_ttl_is_delivered_unexpired(
    store: LogWithReadModels, bus: Bus, key_file: Path
) -> None:
    """While no agent's queue exists the relay keeps retrying the command; each attempt is
    signed as it is published, so what finally arrives has a fresh expiry."""
    agent = Agent(trusting(key_file))
    await append(store, "ticket-t1", sync("web-1"))
    signer = CommandSigner(load_private_key(key_file), ttl_seconds=2)
    relay = Relay(store, bus, backoff=Backoff(first=0.1, cap=0.5), signer=signer)
    async with running(relay):
        await asyncio.sleep(3)  # longer than the TTL: a signature made at first would be stale
        assert await store.checkpoint("relay") == 0
        await bus.declare_queue("agent-web-1", ["host.sync_requested.web-1"])
        await bus.consume("agent-web-1", agent.receive)
        await eventually(lambda: len(agent.messages) == 1)

    assert agent.verdicts == ["ok"]
