"""ferry-staging-agent: stages the source each StagingRequested names, reports on REPORTS."""

from __future__ import annotations

import asyncio
from functools import partial

from ferry_events.agent_runtime import Agent, Route, serve
from ferry_events.bus import Bus
from ferry_events.command_trust import Trust, trusted_verifier
from ferry_events.logs import configure_logging
from ferry_events.schemas import StagingCompleted, StagingFailed, StagingRequested

from ferry_staging_agent.handlers import stage_ticket
from ferry_staging_agent.metrics import StagingMetrics
from ferry_staging_agent.settings import Settings
from ferry_staging_agent.stager import Stager


async def run(
    settings: Settings, stop: asyncio.Event | None = None, bus: Bus | None = None
) -> None:
    """Serve until `stop` is set (default: SIGTERM or SIGINT), on `bus` if one is handed in;
    refuses to start (NoTrustedKeys) without the API's public key."""
    trust = Trust(trusted_verifier(settings.trusted_keys, "FERRY_TRUSTED_KEYS"))
    stage = partial(stage_ticket, stager=Stager(settings))
    routes = [Route(StagingRequested, stage, StagingCompleted, StagingFailed)]
    inbox = settings.data_dir / "staging-agent-inbox.ids"
    agent = Agent("staging agent", "staging", routes, inbox, settings, StagingMetrics, trust=trust)
    await serve(agent, stop, bus)


def cli() -> None:
    configure_logging("staging-agent")
    asyncio.run(run(Settings()))
