"""The demo's agents inside the API's process, on its in-process bus: the staging agent, the
publisher (with its own rsync daemon) and one rsync agent per demo host. The demo is the one
package that composes the services; none of them imports another.

Each agent is on the bus as its own broker user (`MemoryBus.as_user`, named as deploy/broker
names them) and trusts the demo's signing key, so the API is as strict here as anywhere.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import structlog
from ferry_api.runtime import Runtime
from ferry_events.bus import Bus
from ferry_events.bus_memory import MemoryBus
from ferry_events.topology import BrokerUsers
from ferry_publisher import main as publisher_main
from ferry_publisher.settings import Settings as PublisherSettings
from ferry_rsync_agent import main as rsync_agent_main
from ferry_rsync_agent.config import AgentConfig, AppConfig
from ferry_staging_agent import main as staging_main
from ferry_staging_agent.settings import Settings as StagingSettings
from pydantic import SecretStr

from ferry_demo.seed import DEMO_APP, DemoHost, DemoSetup

log = structlog.get_logger()

RSYNC_USER = "ferry"
DEFAULT_RSYNC_PORT = 8730

DemoTask = Callable[[Runtime, DemoSetup], Coroutine[None, None, None]]


def agent_tasks() -> list[DemoTask]:
    """Every agent of the demo: the staging agent, the publisher, an rsync agent per host."""
    hosts: list[DemoTask] = [_rsync_agent_task(index) for index in range(2)]
    return [staging_agent, publisher, *hosts]


def rsync_password(data_dir: Path) -> Path:
    """The publisher's rsync password, kept in a 0600 file that the demo hosts read."""
    path = data_dir / "rsync.password"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(24) + "\n")
    return path


def rsync_port() -> int:
    return int(os.environ.get("FERRY_RSYNC_PORT") or DEFAULT_RSYNC_PORT)


def users(setup: DemoSetup) -> BrokerUsers:
    return BrokerUsers(setup.settings.broker_user_prefix)


def agent_bus(runtime: Runtime, user: str) -> Bus:
    """The in-process bus as an agent's own user: the API takes its reports only from that."""
    if not isinstance(runtime.bus, MemoryBus):
        raise TypeError("the demo's agents run on the in-process bus")
    return runtime.bus.as_user(user)


def trusted_keys(setup: DemoSetup) -> list[Path]:
    """The demo API's public key (seed.signing_key made it beside its private key)."""
    return [Path(f"{setup.settings.signing_key_file}.pub")]


async def staging_agent(runtime: Runtime, setup: DemoSetup) -> None:
    data_dir = setup.settings.data_dir
    settings = StagingSettings(
        data_dir=data_dir,
        release_repo_base=str(data_dir / "publisher" / "repos"),
        allow_file_urls=True,
        trusted_keys=trusted_keys(setup),
    )
    bus = agent_bus(runtime, users(setup).staging)
    await _serving("staging agent", staging_main.run(settings, asyncio.Event(), bus))


async def publisher(runtime: Runtime, setup: DemoSetup) -> None:
    data_dir = setup.settings.data_dir
    password = rsync_password(data_dir).read_text().strip()
    settings = PublisherSettings(
        data_dir=data_dir,
        publisher_dir=data_dir / "publisher",
        demo=True,
        rsync_user=RSYNC_USER,
        rsync_password=SecretStr(password),
        rsync_port=rsync_port(),
        trusted_keys=trusted_keys(setup),
    )
    bus = agent_bus(runtime, users(setup).publisher)
    await _serving("publisher", publisher_main.run(settings, asyncio.Event(), bus))


def _rsync_agent_task(index: int) -> DemoTask:
    async def rsync_agent(runtime: Runtime, setup: DemoSetup) -> None:
        await run_rsync_agent(runtime, setup, setup.hosts[index])

    return rsync_agent


async def run_rsync_agent(runtime: Runtime, setup: DemoSetup, host: DemoHost) -> None:
    data_dir = setup.settings.data_dir
    target = host.root / DEMO_APP
    target.mkdir(parents=True, exist_ok=True)
    config = AgentConfig(
        host=host.name,
        rsync_source=f"rsync://{RSYNC_USER}@127.0.0.1:{rsync_port()}/",
        password_file=rsync_password(data_dir),
        state_dir=data_dir / "agents" / host.name,
        apps={DEMO_APP: AppConfig(target=target)},
        trusted_keys=trusted_keys(setup),
    )
    structlog.contextvars.bind_contextvars(host=host.name)  # this task's context only
    bus = agent_bus(runtime, users(setup).host(host.name))
    serving = rsync_agent_main.run(config, asyncio.Event(), bus)
    await _serving(f"rsync agent {host.name}", serving)


async def _serving(name: str, serve: Coroutine[Any, Any, None]) -> None:
    """Run an agent until the demo stops; a crash is logged, not left to a silent task."""
    log.info("demo_agent.started", agent=name)
    try:
        await serve
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("demo_agent.crashed", agent=name)
        raise
