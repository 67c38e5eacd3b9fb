"""ferry-publisher: serves exports over its rsync daemon; consumes ReleaseTagRequested from the
bus, tags and exports the release, reports on REPORTS."""

from __future__ import annotations

import asyncio
import signal
import sys
from contextlib import AbstractContextManager, nullcontext

from ferry_events.backends import open_bus
from ferry_events.bus import EVENTS, REPORTS, Bus
from ferry_events.envelope import Message, Metadata
from ferry_events.inbox import FileInbox, idempotent
from ferry_events.logs import configure_logging
from ferry_events.registry import Event

from ferry_publisher.handlers import Report, tag_message
from ferry_publisher.metrics import PublisherMetrics
from ferry_publisher.releases import Publisher
from ferry_publisher.rsyncd import RsyncDaemon
from ferry_publisher.settings import Settings

QUEUE = "publisher"


def reporter(bus: Bus, message: Message) -> Report:
    """Reports answer the command: same correlation, caused by the command's event."""
    stored = message.stored_event()
    event_id = str(stored.event_id)
    metadata = Metadata(
        correlation_id=stored.metadata.correlation_id or event_id, causation_id=event_id
    )

    async def report(event: Event) -> None:
        await bus.publish(REPORTS, [Message.report(event, metadata)])

    return report


def rsync_daemon(settings: Settings) -> RsyncDaemon:
    logins = settings.rsync_logins()  # Settings refuses to start without a password
    return RsyncDaemon(
        settings.exports_dir,
        settings.home / "rsyncd",
        address=settings.rsync_address,
        port=settings.rsync_port,
        user=settings.rsync_user,
        password=logins.pop(settings.rsync_user),
        hosts_allow=settings.rsync_hosts_allow,
        more_users=logins,
        rebuild=[sys.executable, "-m", "ferry_publisher.reexport", str(settings.repos_dir)],
    )


async def run(
    settings: Settings, stop: asyncio.Event | None = None, bus: Bus | None = None
) -> None:
    """Serve until `stop` is set (by default: SIGTERM or SIGINT). The embedded mode hands in
    its in-process bus; otherwise the publisher opens (and closes) its own."""
    stop = stop or _stop_on_signals()
    settings.home.mkdir(parents=True, exist_ok=True)
    inbox = FileInbox(settings.home / "publisher-inbox.ids")
    metrics = PublisherMetrics() if settings.metrics_port else None
    try:
        async with rsync_daemon(settings) as daemon:
            publisher = Publisher(settings, on_new_export=daemon.write_config)
            connection = bus or await open_bus(settings.broker_url)
            try:
                await connection.declare_queue(QUEUE, ["release.tag_requested"], EVENTS)

                async def handle(message: Message) -> None:
                    report = reporter(connection, message)
                    counted = metrics.counting(report) if metrics else report
                    await tag_message(message, publisher, counted)

                with _served(metrics, settings):
                    consumer = await connection.consume(
                        QUEUE, idempotent(handle, inbox), prefetch=4
                    )
                    await stop.wait()
                    await consumer.stop()
                    await publisher.idle()
            finally:
                if bus is None:
                    await connection.close()
    finally:
        inbox.close()


def _served(metrics: PublisherMetrics | None, settings: Settings) -> AbstractContextManager[None]:
    if metrics is None:
        return nullcontext()
    return metrics.served(settings.metrics_address, settings.metrics_port)


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    return stop


def cli() -> None:
    configure_logging("publisher")
    asyncio.run(run(Settings()))
