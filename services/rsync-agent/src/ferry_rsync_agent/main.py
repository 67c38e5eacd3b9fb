"""ferry-rsync-agent: takes this host's sync commands from the bus, reports on REPORTS, keeps
house while idle and sends heartbeats until SIGTERM."""

from __future__ import annotations

import asyncio

import structlog
from ferry_events.agent_runtime import Agent, Report, Route, serve
from ferry_events.bus import Bus
from ferry_events.command_trust import Trust, trusted_verifier
from ferry_events.logs import configure_logging
from ferry_events.schemas import HostSyncCompleted, HostSyncFailed, HostSyncRequested

from ferry_rsync_agent.config import CONFIG_ENV, AgentConfig, load_config
from ferry_rsync_agent.handlers import sync_release
from ferry_rsync_agent.heartbeat import AGENT, heartbeats
from ferry_rsync_agent.housekeeping import Housekeeping
from ferry_rsync_agent.metrics import SyncMetrics


async def run(
    config: AgentConfig, stop: asyncio.Event | None = None, bus: Bus | None = None
) -> None:
    """Serve until `stop` is set (default: SIGTERM or SIGINT), on `bus` if one is handed in;
    refuses to start (NoTrustedKeys) without the API's public key."""
    verifier = trusted_verifier(config.trusted_keys, f"trusted_keys in {CONFIG_ENV}")
    housekeeping = Housekeeping(config)

    async def sync(cmd: HostSyncRequested, *, report: Report) -> None:
        async with housekeeping.paused():  # no pruning or spare-making during a sync
            await sync_release(cmd, config, report)

    agent = Agent(
        name=f"rsync agent {config.host}",
        queue=f"host.{config.host}",
        bindings=[f"{HostSyncRequested.type_name}.{config.host}"],
        routes=[Route(HostSyncRequested, sync, HostSyncCompleted, HostSyncFailed)],
        inbox=config.state_dir / "inbox.ids",
        settings=config,
        metrics=SyncMetrics,
        prefetch=1,  # one command at a time: two syncs of one app must never interleave
        tasks=[heartbeats(config), lambda _: housekeeping.keep()],
        details={"apps": sorted(config.apps)},
        trust=Trust(verifier, host=config.host),  # another host's sync is refused
    )
    await serve(agent, stop, bus)


def cli() -> None:
    config = load_config()
    configure_logging(AGENT)
    structlog.contextvars.bind_contextvars(host=config.host)
    asyncio.run(run(config))
