"""The store goes away under the API's report ingest: a private PostgreSQL cluster stopped for
a while, or the API's connections terminated, while agents keep reporting on the (shared)
RabbitMQ. Once the store is back, every report is recorded exactly once and none is dead-lettered:
an outage is no reason to give a report up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import subprocess
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
import structlog
from ferry_api.bootstrap import running
from ferry_api.runtime import Runtime
from ferry_api.settings import Settings
from ferry_events.backends import open_bus
from ferry_events.bus import REPORTS, Bus
from ferry_events.envelope import Message
from ferry_events.logs import configure_logging
from ferry_events.schemas import StagingStarted, TicketSubmitted
from ferry_events.topology import BrokerUsers, agent_queues
from private_rabbitmq import free_port

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]

SECRET_KEY = "test-only-" + "k" * 40
TICKETS = 4
LONG = os.environ.get("FERRY_TEST_LONG_FAULTS") == "1"  # adds a 60 s outage (~1.5 min more)
STAGING = BrokerUsers(prefix=f"ferryfault-{secrets.token_hex(4)}-")  # this session's users
PAUSE = 0.02  # between two reports: ~50 a second


@dataclass(frozen=True)
class Cluster:
    """A PostgreSQL cluster of the tests' own (pg_createcluster), never the shared one."""

    version: str
    name: str
    port: int

    def ctl(self, action: str) -> None:
        command = ["pg_ctlcluster", self.version, self.name, action]
        subprocess.run([*command, *(["-m", "fast"] if action == "stop" else [])], check=True)

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    async def new_database(self) -> str:
        name = f"ferry_fault_{uuid.uuid4().hex[:12]}"
        admin = await asyncpg.connect(self.admin_url)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    async def outage(self, seconds: float) -> None:
        await asyncio.to_thread(self.ctl, "stop")
        await asyncio.sleep(seconds)
        await asyncio.to_thread(self.ctl, "start")


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    version = max(p.name for p in Path("/etc/postgresql").iterdir() if p.name.isdigit())
    made = Cluster(version, f"ferryfault{secrets.token_hex(4)}", free_port())
    subprocess.run(
        ["pg_createcluster", version, made.name, "-p", str(made.port), "--start-conf", "manual",
         "--", "--auth-host=trust", "--auth-local=trust"],
        check=True, capture_output=True,
    )  # fmt: skip
    try:
        made.ctl("start")
        yield made
    finally:
        subprocess.run(["pg_dropcluster", "--stop", made.version, made.name], check=False)


@pytest.fixture
def json_logs() -> Iterator[None]:
    """The API's production logging (JSON lines) for the test: the console renderer's tracebacks
    of crash-looping workers would keep the event loop busy for seconds, unlike production."""
    before = structlog.get_config()
    configure_logging("api", "INFO")
    yield
    structlog.configure(**before)
    structlog.contextvars.clear_contextvars()


@pytest.fixture
def staging_url(amqp_url: str) -> Iterator[str]:
    """The test vhost's URL as the staging agent's own broker user (<prefix>staging), the
    only one the API takes staging reports from."""
    user, password = STAGING.staging, secrets.token_urlsafe(16)
    vhost = amqp_url.rsplit("/", 1)[1]
    rabbitmqctl("add_user", user, stdin=password)  # never on a command line
    try:
        rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
        yield amqp_url.replace("guest:guest@", f"{user}:{password}@")
    finally:
        rabbitmqctl("delete_user", user)


@pytest.fixture
async def api(
    cluster: Cluster, amqp_url: str, tmp_path: Path, json_logs: None
) -> AsyncIterator[Runtime]:
    """The real API runtime (ingest, relay, process manager, ...) on the private cluster."""
    settings = Settings(
        database_url=await cluster.new_database(),
        broker_url=amqp_url,
        data_dir=tmp_path,
        secret_key=SECRET_KEY,
        broker_user_prefix=STAGING.prefix,
    )
    async with running(settings) as runtime:
        for spec in agent_queues([]):  # so the relay's commands to agents have somewhere to go
            await runtime.bus.declare_queue(spec.name, spec.bindings, spec.exchange)
        yield runtime


class Agent:
    """Reports StagingStarted for the API's tickets, as a staging agent would, and now and then
    the same report twice (at least once is the bus's promise)."""

    def __init__(self, bus: Bus, tickets: list[str]) -> None:
        self.bus, self.tickets = bus, tickets
        self.sent: list[str] = []

    async def report_until(self, done: asyncio.Event) -> None:
        while not done.is_set():
            ticket = self.tickets[len(self.sent) % len(self.tickets)]
            report = Message.report(StagingStarted(ticket_id=ticket, app="shop"))
            twice = len(self.sent) % 10 == 0
            await self.bus.publish(REPORTS, [report, report] if twice else [report])
            self.sent.append(report.message_id)
            await asyncio.sleep(PAUSE)


async def submit_tickets(runtime: Runtime) -> list[str]:
    tickets = [f"t-{uuid.uuid4().hex[:8]}" for _ in range(TICKETS)]
    for ticket in tickets:
        submitted = TicketSubmitted(
            ticket_id=ticket, app="shop", kind="deploy", reason="outage test", author="dev"
        )
        await runtime.append(f"ticket-{ticket}", [submitted], 0, actor="dev", wait=False)
    return tickets


async def recorded(runtime: Runtime) -> Counter[str]:
    """How many times each report (by its message id, the event's id) is in the log."""
    events = await runtime.store.read_all(0, 100_000)
    return Counter(str(e.event_id) for e in events if e.type == StagingStarted.type_name)


async def reported_through(
    runtime: Runtime, agent_url: str, fault: Callable[[], Awaitable[None]]
) -> tuple[list[str], Counter[str]]:
    """Reports flowing before, during and after `fault`; what was sent and what got recorded."""
    tickets = await submit_tickets(runtime)
    bus = await open_bus(agent_url)
    agent, done = Agent(bus, tickets), asyncio.Event()
    reporting = asyncio.create_task(agent.report_until(done))
    try:
        await eventually(lambda: _any_recorded(runtime))
        await fault()
        await asyncio.sleep(1)  # and some more after it
    finally:
        done.set()
        await reporting
        await bus.close()
    async with asyncio.timeout(120):
        while len(counts := await _quietly(recorded, runtime)) < len(agent.sent):
            await asyncio.sleep(0.5)
    return agent.sent, counts


async def test_reports_during_a_2s_and_a_10s_outage_are_recorded_once_none_dead(
    api: Runtime, cluster: Cluster, amqp_url: str, staging_url: str
) -> None:
    async def two_outages() -> None:
        await cluster.outage(2)
        await asyncio.sleep(1)
        await cluster.outage(10)

    sent, counts = await reported_through(api, staging_url, two_outages)
    assert set(counts) == set(sent) and set(counts.values()) == {1}
    assert dead_letters(amqp_url) == {"api.reports.dead": 0, "api.heartbeats.dead": 0}


@pytest.mark.skipif(not LONG, reason="a 60 s outage: set FERRY_TEST_LONG_FAULTS=1")
async def test_reports_during_a_60s_outage_are_recorded_once_none_dead(
    api: Runtime, cluster: Cluster, amqp_url: str, staging_url: str
) -> None:
    sent, counts = await reported_through(api, staging_url, lambda: cluster.outage(60))
    assert set(counts) == set(sent) and set(counts.values()) == {1}
    assert dead_letters(amqp_url) == {"api.reports.dead": 0, "api.heartbeats.dead": 0}


async def test_reports_while_the_apis_connections_are_killed_are_recorded_once_none_dead(
    api: Runtime, cluster: Cluster, amqp_url: str, staging_url: str
) -> None:
    database = str(api.settings.database_url).rsplit("/", 1)[1]

    killed: list[int] = []

    async def terminate_backends() -> None:
        admin = await asyncpg.connect(cluster.admin_url)
        try:
            for _ in range(6):
                sql = (
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = $1 AND pid <> pg_backend_pid()"
                )
                killed.append(await admin.fetchval(sql, database))
                await asyncio.sleep(0.5)
        finally:
            await admin.close()

    sent, counts = await reported_through(api, staging_url, terminate_backends)
    assert killed[0] > 0 and sum(killed) > len(killed)  # the API's pool, LISTEN, relay lock
    assert set(counts) == set(sent) and set(counts.values()) == {1}
    assert dead_letters(amqp_url) == {"api.reports.dead": 0, "api.heartbeats.dead": 0}


def rabbitmqctl(*args: str, stdin: str = "") -> str:
    done = subprocess.run(
        ["rabbitmqctl", "-q", *args],
        check=True,
        capture_output=True,
        timeout=60,
        input=stdin.encode(),
    )
    return done.stdout.decode()


def dead_letters(amqp_url: str) -> dict[str, int]:
    """Messages in each dead-letter queue of the test's vhost."""
    vhost = amqp_url.rsplit("/", 1)[1]
    rows = json.loads(
        rabbitmqctl("list_queues", "-p", vhost, "name", "messages", "--formatter", "json")
    )
    return {row["name"]: row["messages"] for row in rows if row["name"].startswith("api.")
            and row["name"].endswith(".dead")}  # fmt: skip


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.1)


async def _any_recorded(runtime: Runtime) -> bool:
    return bool(await recorded(runtime))


async def _quietly(
    read: Callable[[Runtime], Awaitable[Counter[str]]], runtime: Runtime
) -> Counter[str]:
    """The test's own read, through the API's pool, right after the store came back."""
    with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return await read(runtime)
    return Counter()
