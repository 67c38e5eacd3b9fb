"""Every few seconds: which release of each configured app is live on this host."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from importlib.metadata import version

import structlog
from ferry_events.agent_reports import announcer
from ferry_events.agent_runtime import Task
from ferry_events.bus import BusError
from ferry_events.schemas import AgentHeartbeat

from ferry_rsync_agent.config import AgentConfig
from ferry_rsync_agent.releases import Layout

AGENT = "ferry-rsync-agent"


def heartbeat(config: AgentConfig, agent_version: str) -> AgentHeartbeat:
    return AgentHeartbeat(
        host=config.host,
        agent=AGENT,
        agent_version=agent_version,
        apps={name: Layout(app.target).current_version() for name, app in config.apps.items()},
        sent_at=datetime.now(UTC).isoformat(),
    )


async def send_heartbeats(
    config: AgentConfig, agent_version: str, send: Callable[[AgentHeartbeat], Awaitable[None]]
) -> None:
    """Until cancelled. A lost heartbeat only makes the host look offline for a while: it is
    logged, never fatal, as the broker connection restores itself."""
    while True:
        try:
            await send(heartbeat(config, agent_version))
        except (BusError, OSError) as e:
            structlog.get_logger().warning("heartbeat.not_sent", error=str(e))
        await asyncio.sleep(config.heartbeat_seconds)


def heartbeats(config: AgentConfig) -> Task:
    """The agent runtime's background task: heartbeats on the bus the agent serves on."""
    return lambda bus: send_heartbeats(config, version(AGENT), announcer(bus))
