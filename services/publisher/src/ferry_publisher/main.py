"""ferry-publisher: serves exports over its rsync daemon; tags and exports the release each
ReleaseTagRequested names, reports on REPORTS."""

from __future__ import annotations

import asyncio
import sys
from functools import partial

from ferry_events.agent_runtime import Agent, Route, serve, stop_on_signals
from ferry_events.bus import Bus
from ferry_events.command_trust import Trust, trusted_verifier
from ferry_events.logs import configure_logging
from ferry_events.schemas import ReleaseTagFailed, ReleaseTagged, ReleaseTagRequested

from ferry_publisher.daemon import rsync_daemon
from ferry_publisher.handlers import tag_release
from ferry_publisher.metrics import PublisherMetrics
from ferry_publisher.releases import Publisher
from ferry_publisher.rsyncd import DaemonFailed
from ferry_publisher.settings import Settings


async def run(
    settings: Settings, stop: asyncio.Event | None = None, bus: Bus | None = None
) -> None:
    """Serve until `stop` is set (default: SIGTERM or SIGINT), on `bus` if one is handed in;
    refuses to start (NoTrustedKeys) without the API's public key."""
    trust = Trust(trusted_verifier(settings.trusted_keys, "FERRY_TRUSTED_KEYS"))
    stop = stop or stop_on_signals()
    # A daemon that exits stops the publisher (and its context raises DaemonFailed).
    async with rsync_daemon(settings, on_exit=stop.set) as daemon:
        publisher = Publisher(settings, on_new_export=daemon.write_config)
        tag = partial(tag_release, publisher=publisher)
        routes = [Route(ReleaseTagRequested, tag, ReleaseTagged, ReleaseTagFailed)]
        inbox = settings.home / "publisher-inbox.ids"
        agent = Agent(
            "publisher", "publisher", routes, inbox, settings, PublisherMetrics, trust=trust
        )
        await serve(agent, stop, bus)
        await publisher.idle()  # the exports' tidying, before the rsync daemon stops


def cli() -> None:
    configure_logging("publisher")
    try:
        asyncio.run(run(Settings()))
    except DaemonFailed as failed:
        sys.exit(f"ferry-publisher: {failed}")
