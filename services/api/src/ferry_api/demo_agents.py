"""The demo's agents inside the API's process, on its in-process bus: the staging agent, the
publisher (with its own rsync daemon) and one rsync agent per demo host.

The agents are an optional extra of the API (`ferry-api[demo]`): each is imported only when its
task starts, so the API itself never needs them.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import secrets
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import structlog

from ferry_api.demo import DEMO_APP, DemoHost, DemoSetup, DemoTask
from ferry_api.runtime import Runtime

log = structlog.get_logger()

AGENT_PACKAGES = ("ferry_staging_agent", "ferry_publisher", "ferry_rsync_agent")
RSYNC_USER = "ferry"
DEFAULT_RSYNC_PORT = 8730


def agent_tasks() -> list[DemoTask]:
    """Every agent of the demo, or none (with a warning) when the agents are not installed."""
    missing = [name for name in AGENT_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        log.warning("demo runs without its agents; install ferry-api[demo]", missing=missing)
        return []
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


async def staging_agent(runtime: Runtime, setup: DemoSetup) -> None:
    from ferry_staging_agent.main import run
    from ferry_staging_agent.settings import Settings

    data_dir = setup.settings.data_dir
    settings = Settings(
        data_dir=data_dir,
        release_repo_base=str(data_dir / "publisher" / "repos"),
        allow_file_urls=True,
    )
    await _serving("staging agent", run(settings, asyncio.Event(), runtime.bus))


async def publisher(runtime: Runtime, setup: DemoSetup) -> None:
    from ferry_publisher.main import run
    from ferry_publisher.settings import Settings

    data_dir = setup.settings.data_dir
    password = rsync_password(data_dir).read_text().strip()
    settings = Settings(
        data_dir=data_dir,
        publisher_dir=data_dir / "publisher",
        demo=True,
        rsync_user=RSYNC_USER,
        rsync_password=password,
        rsync_port=rsync_port(),
    )
    await _serving("publisher", run(settings, asyncio.Event(), runtime.bus))


def _rsync_agent_task(index: int) -> DemoTask:
    async def rsync_agent(runtime: Runtime, setup: DemoSetup) -> None:
        await run_rsync_agent(runtime, setup, setup.hosts[index])

    return rsync_agent


async def run_rsync_agent(runtime: Runtime, setup: DemoSetup, host: DemoHost) -> None:
    from ferry_rsync_agent.config import AgentConfig, AppConfig
    from ferry_rsync_agent.main import run

    data_dir = setup.settings.data_dir
    target = host.root / DEMO_APP
    target.mkdir(parents=True, exist_ok=True)
    config = AgentConfig(
        host=host.name,
        rsync_source=f"rsync://{RSYNC_USER}@127.0.0.1:{rsync_port()}/",
        password_file=rsync_password(data_dir),
        state_dir=data_dir / "agents" / host.name,
        apps={DEMO_APP: AppConfig(target=target)},
    )
    structlog.contextvars.bind_contextvars(host=host.name)  # this task's context only
    await _serving(f"rsync agent {host.name}", run(config, asyncio.Event(), runtime.bus))


async def _serving(name: str, serve: Coroutine[Any, Any, None]) -> None:
    """Run an agent until the demo stops; a crash is logged, not left to a silent task."""
    log.info("demo agent started", agent=name)
    try:
        await serve
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("demo agent stopped", agent=name)
        raise
