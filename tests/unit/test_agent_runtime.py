"""The agent runtime on both real buses: what the API did not sign for this agent (unsigned,
forged, tampered, expired, another queue's or host's, replayed) is refused and reported apart
from any ticket; a handler that crashes is reported as a failure, a bus that cannot take a report
is not; checks refuse before the handler runs; report ids are derived from the command, so a
redelivered command is reported under the same ids."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from ferry_events.agent_reports import Report, answer, report_id
from ferry_events.agent_runtime import Agent, Check, CommandRefused, Incoming, Route, serve
from ferry_events.backends import open_bus
from ferry_events.bus import ERROR_HEADER, EVENTS, Bus, dead_letter_queue
from ferry_events.envelope import Message
from ferry_events.registry import parse_event
from ferry_events.schemas import (
    HostSyncRequested,
    ReleaseTagRequested,
    Source,
    StagingCompleted,
    StagingFailed,
    StagingRequested,
    StagingStarted,
)
from ferry_events.signing import CommandSigner
from ferry_publisher.main import run as run_publisher
from ferry_publisher.settings import Settings as PublisherSettings

from .agent_bus import (
    SIGNER,
    api_trust,
    drained,
    free_port,
    listen_to_reports,
    relayed,
    signed,
    trusted_key_file,
)

QUEUE = "runtime-test"


@dataclass(frozen=True)
class Settings:
    broker_url: str = "memory://"
    metrics_port: int = 0
    metrics_address: str = "127.0.0.1"


@pytest.fixture
async def bus(bus_url: str) -> AsyncIterator[Bus]:
    opened = await open_bus(bus_url)
    yield opened
    await opened.close()


def command(ticket_id: str = "t-1", attempt: int = 1) -> Message:
    """The relay's message for a stored StagingRequested."""
    payload = StagingRequested(
        ticket_id=ticket_id,
        app="shop",
        source=Source(type="git", url="https://git.example/shop.git"),
        ref="main",
        attempt=attempt,
    )
    return relayed(payload, "corr-1")


def recorder(out: Path) -> Route[StagingRequested]:
    """A real handler: writes the ticket's file under `out`, then reports it staged. A ticket
    id with a NUL byte is a file name it cannot handle (the OS refuses it)."""

    async def record(cmd: StagingRequested, report: Report) -> None:
        await report(answer(cmd, StagingStarted))
        (out / cmd.ticket_id).write_text(cmd.ref)
        await report(
            answer(
                cmd, StagingCompleted, commit="c" * 40, tree="d" * 40, source_revision="r", files=1
            )
        )

    return Route(StagingRequested, record, StagingCompleted, StagingFailed)


class Running:
    """An agent serving on `bus` until the block ends."""

    def __init__(self, agent: Agent, bus: Bus) -> None:
        self.agent, self.bus, self.stop = agent, bus, asyncio.Event()

    async def __aenter__(self) -> Running:
        await self.bus.declare_queue(QUEUE, [StagingRequested.type_name], EVENTS)  # as it will
        self.task = asyncio.create_task(serve(self.agent, self.stop, self.bus))
        return self

    async def __aexit__(self, *_: object) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 15)


def agent(
    tmp_path: Path,
    route: Route[StagingRequested],
    checks: list[Check] | None = None,
    host: str | None = None,
) -> Agent:
    return Agent(
        name="test agent",
        queue=QUEUE,
        routes=[route],
        inbox=tmp_path / "state" / "inbox.ids",
        settings=Settings(),
        checks=checks or [],
        trust=api_trust(host),
    )


async def test_a_handler_that_crashes_is_reported_failed_once_and_the_command_acked(
    bus: Bus, tmp_path: Path
) -> None:
    reports = await listen_to_reports(bus, "staging.#")
    dead = await listen_dead(bus)
    async with Running(agent(tmp_path, recorder(tmp_path)), bus):
        await bus.publish(EVENTS, [command("t-\x00-1")])
        received = [await asyncio.wait_for(reports.get(), 20), *await drained(reports, 1.0)]

    assert [m.type for m in received] == ["staging.started", "staging.failed"]
    failed = parse_event("staging.failed", 1, received[1].body["data"])
    assert isinstance(failed, StagingFailed) and failed.ticket_id == "t-\x00-1"
    assert failed.reason == "the test agent failed unexpectedly (ValueError; see its log)"
    assert received[1].body["metadata"]["correlation_id"] == "corr-1"
    assert dead.empty()  # acked: not retried, not dead-lettered


async def listen_dead(bus: Bus) -> asyncio.Queue[Message]:
    await bus.declare_queue(QUEUE, [StagingRequested.type_name], EVENTS)
    dead: asyncio.Queue[Message] = asyncio.Queue()
    await bus.consume(dead_letter_queue(QUEUE), dead.put)
    return dead


async def test_a_bus_that_cannot_take_a_report_is_no_failure_of_the_command(
    bus: Bus, tmp_path: Path
) -> None:
    failures = await listen_to_reports(
        bus, "staging.failed"
    )  # staging.started: no queue, unroutable
    dead = await listen_dead(bus)
    async with Running(agent(tmp_path, recorder(tmp_path)), bus):
        await bus.publish(EVENTS, [command("t-2")])
        gave_up = await asyncio.wait_for(dead.get(), 30)  # retried, then dead-lettered

    assert "ReportNotSent" in gave_up.headers[ERROR_HEADER]
    assert "staging.started" in gave_up.headers[ERROR_HEADER]
    assert await drained(failures) == []
    assert not (tmp_path / "t-2").exists()


def untrusted() -> dict[str, Message]:
    """Commands the agent must not obey, by what is wrong with them."""
    changed = command("t-tampered")
    body = changed.body | {"data": changed.body["data"] | {"ref": "other-branch"}}
    stale = command("t-expired").model_copy(update={"headers": {}})
    stranger = CommandSigner(Ed25519PrivateKey.generate())
    tag = ReleaseTagRequested(
        ticket_id="t-queue", app="shop", version=1, commit="c", tree="t", reason="r",
        author="dev", approver="lead",
    )  # fmt: skip
    sync = HostSyncRequested(ticket_id="t-host", app="shop", host="web-1", version=1, digest="d")
    return {
        "t-unsigned": command("t-unsigned").model_copy(update={"headers": {}}),
        "t-forged": stranger.sign(command("t-forged")),
        "t-tampered": changed.model_copy(update={"body": body}),
        "t-expired": SIGNER.sign(stale, now=datetime.now(UTC) - timedelta(hours=1)),
        "t-queue": relayed(tag),
        "t-host": relayed(sync),
    }


async def test_what_the_api_did_not_sign_for_this_agent_is_refused_apart_from_any_ticket(
    bus: Bus, tmp_path: Path
) -> None:
    reports = await listen_to_reports(bus)
    refused = untrusted()
    once = command("t-once")
    async with Running(agent(tmp_path, recorder(tmp_path), host="web-2"), bus):
        await bus.declare_queue(QUEUE, ["release.tag_requested", "host.sync_requested.*"], EVENTS)
        await bus.publish(EVENTS, [once])
        received = [await asyncio.wait_for(reports.get(), 20) for _ in range(2)]
        await bus.publish(EVENTS, [*refused.values(), once])  # `once` again: a replay
        received += [await asyncio.wait_for(reports.get(), 20) for _ in range(len(refused) + 1)]
        received += await drained(reports)

    assert [m.type for m in received[:2]] == ["staging.started", "staging.completed"]
    refusals = [m.body["data"] for m in received[2:]]
    assert {r["agent"] for r in refusals} == {"test agent"}
    reasons = {r["command_event_id"]: r["reason"] for r in refusals}
    assert len(refusals) == len(reasons) == len(refused) + 1, refusals
    assert [m.type for m in received[2:]] == ["agent.command_refused"] * len(reasons)
    expected = {
        "t-unsigned": "unsigned",
        "t-forged": "unknown key ",
        "t-tampered": "bad signature",
        "t-expired": "expired at ",
        "t-queue": "release.tag_requested is not a command of this queue",
        "t-host": "addressed to host web-1, not web-2",
    }
    for ticket, message in refused.items():
        assert reasons[message.message_id].startswith(expected[ticket]), (ticket, reasons)
    assert reasons[once.message_id] == "already handled: a replay"
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["t-once"]


async def test_a_check_refuses_before_the_handler_and_the_refusal_is_reported(
    bus: Bus, tmp_path: Path
) -> None:
    def not_t3(incoming: Incoming) -> None:
        if incoming.stored.data["ticket_id"] == "t-3":
            raise CommandRefused("t-3 is not for this agent")

    def silently(incoming: Incoming) -> None:
        if incoming.stored.data["ticket_id"] == "t-4":
            raise CommandRefused("unsigned", report=False)

    reports = await listen_to_reports(bus, "staging.#")
    checked = agent(tmp_path, recorder(tmp_path), checks=[not_t3, silently])
    async with Running(checked, bus):
        await bus.publish(EVENTS, [command("t-3"), command("t-4")])
        received = [await asyncio.wait_for(reports.get(), 20), *await drained(reports)]

    assert [m.type for m in received] == ["staging.failed"]
    assert received[0].body["data"]["reason"] == "refused: t-3 is not for this agent"
    assert not (tmp_path / "t-3").exists() and not (tmp_path / "t-4").exists()


async def test_an_invalid_command_is_refused_and_reported_with_what_is_wrong(
    bus: Bus, tmp_path: Path
) -> None:
    message = command("t-5")
    body = message.body | {"data": message.body["data"] | {"ref": "--upload-pack=x"}}
    reports = await listen_to_reports(bus, "staging.#")
    async with Running(agent(tmp_path, recorder(tmp_path)), bus):
        await bus.publish(EVENTS, [signed(message.model_copy(update={"body": body}))])
        received = [await asyncio.wait_for(reports.get(), 20), *await drained(reports)]

    assert [m.type for m in received] == ["staging.failed"]
    reason = received[0].body["data"]["reason"]
    assert reason.startswith("refused: an invalid command: ref: ")


async def test_a_redelivered_command_is_reported_under_the_same_ids(
    bus: Bus, tmp_path: Path
) -> None:
    message = command("t-6", attempt=2)
    reports = await listen_to_reports(bus, "staging.#")
    ids: list[list[str]] = []
    for run in ("first", "after a crash that lost the inbox"):
        async with Running(agent(tmp_path / run, recorder(tmp_path)), bus):
            await bus.publish(EVENTS, [message])
            got = [await asyncio.wait_for(reports.get(), 20) for _ in range(2)]
        ids.append([m.message_id for m in got])

    event_id = message.message_id
    expected = [report_id(event_id, t, 2) for t in ("staging.started", "staging.completed")]
    assert ids == [expected, expected]
    assert report_id(event_id, "staging.completed", 3) not in expected  # a retry is a new fact


async def test_a_crash_after_the_final_report_leaves_that_report_standing(
    bus: Bus, tmp_path: Path
) -> None:
    async def tag_then_crash(cmd: StagingRequested, report: Report) -> None:
        await report(
            answer(cmd, StagingCompleted, commit="c", tree="d", source_revision="r", files=1)
        )
        raise RuntimeError("tidying after the report failed")

    route = Route(StagingRequested, tag_then_crash, StagingCompleted, StagingFailed)
    reports = await listen_to_reports(bus, "staging.#")
    async with Running(agent(tmp_path, route), bus):
        await bus.publish(EVENTS, [command("t-7")])
        received = [await asyncio.wait_for(reports.get(), 20), *await drained(reports)]

    assert [m.type for m in received] == ["staging.completed"]


def test_an_agent_without_metrics_never_loads_prometheus_client(tmp_path: Path) -> None:
    key = trusted_key_file(tmp_path / "keys")
    script = f"""
import asyncio, sys
from ferry_rsync_agent.config import AgentConfig
from ferry_rsync_agent.main import run

async def main():
    config = AgentConfig(host="web-1", rsync_source="rsync://ferry@127.0.0.1:1/",
                         state_dir="{tmp_path}", heartbeat_seconds=0.05,
                         trusted_keys=["{key}"])
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.5, stop.set)
    await run(config, stop)

asyncio.run(main())
print("prometheus_client" in sys.modules)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "False"  # (structlog prints to stdout before)


def git(*argv: str | Path, cwd: Path | None = None) -> str:
    done = subprocess.run(["git", *argv], cwd=cwd, check=True, capture_output=True, text=True)
    return done.stdout.strip()


@pytest.mark.rabbitmq
async def test_a_release_with_a_file_name_the_publisher_cannot_handle_ends_in_a_failure(
    amqp_url: str, tmp_path: Path
) -> None:
    settings = PublisherSettings(
        data_dir=tmp_path / "data",
        rsync_password="pw",
        rsync_port=free_port(),
        broker_url=amqp_url,
        trusted_keys=[trusted_key_file(tmp_path / "keys")],
    )
    repo, work = settings.repos_dir / "shop.git", tmp_path / "work"
    git("init", "-q", "--bare", repo)
    git("init", "-q", "-b", "main", work)
    (work / "index.html").write_text("<h1>shop")
    (work / os.fsdecode(b"caf\xe9.txt")).write_bytes(b"a latin-1 name, not UTF-8")
    git("add", "-A", cwd=work)
    git("-c", "user.name=T", "-c", "user.email=t@x", "commit", "-qm", "1", cwd=work)
    commit = git("rev-parse", "HEAD", cwd=work)
    git("push", "-q", repo, f"{commit}:refs/staged/t1", cwd=work)
    cmd = ReleaseTagRequested(
        ticket_id="t1",
        app="shop",
        version=1,
        commit=commit,
        tree=git("rev-parse", "HEAD^{tree}", cwd=work),
        reason="r",
        author="dev",
        approver="lead",
    )
    bus = await open_bus(amqp_url)
    reports = await listen_to_reports(bus, "release.#")
    await bus.declare_queue("publisher", [cmd.type_name], EVENTS)
    dead: asyncio.Queue[Message] = asyncio.Queue()
    await bus.consume(dead_letter_queue("publisher"), dead.put)
    stop = asyncio.Event()
    publisher = asyncio.create_task(run_publisher(settings, stop))  # its own connection
    try:
        await bus.publish(EVENTS, [relayed(cmd)])
        received = [await asyncio.wait_for(reports.get(), 60), *await drained(reports, 1.0)]
    finally:
        stop.set()
        await asyncio.wait_for(publisher, 30)
        await bus.close()

    assert [m.type for m in received] == ["release.tag_failed"]
    # CommandRefused by the publisher's own check where it has one; else caught by the runtime.
    reason = received[0].body["data"]["reason"]
    unexpected = "the publisher failed unexpectedly (UnicodeEncodeError; see its log)"
    assert reason == unexpected or "not valid UTF-8" in reason
    assert dead.empty()  # acked: the ticket is not left waiting on retries
