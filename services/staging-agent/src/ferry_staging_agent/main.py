"""ferry-staging-agent: consumes StagingRequested from the bus, stages, reports on REPORTS."""

from __future__ import annotations

import asyncio
import signal
from contextlib import AbstractContextManager, nullcontext

from ferry_events.backends import open_bus
from ferry_events.bus import EVENTS, REPORTS, Bus
from ferry_events.envelope import Message, Metadata
from ferry_events.inbox import FileInbox, idempotent
from ferry_events.logs import configure_logging
from ferry_events.registry import Event

from ferry_staging_agent.handlers import Report, stage_message
from ferry_staging_agent.metrics import StagingMetrics
from ferry_staging_agent.settings import Settings
from ferry_staging_agent.stager import Stager

QUEUE = "staging"


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


async def run(
    settings: Settings, stop: asyncio.Event | None = None, bus: Bus | None = None
) -> None:
    """Serve until `stop` is set (by default: SIGTERM or SIGINT). The embedded mode hands in
    its in-process bus; otherwise the agent opens (and closes) its own."""
    stop = stop or _stop_on_signals()
    stager = Stager(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    inbox = FileInbox(settings.data_dir / "staging-agent-inbox.ids")
    metrics = StagingMetrics() if settings.metrics_port else None
    connection = bus or await open_bus(settings.broker_url)
    try:
        await connection.declare_queue(QUEUE, ["ticket.staging_requested"], EVENTS)

        async def handle(message: Message) -> None:
            report = reporter(connection, message)
            await stage_message(message, stager, metrics.counting(report) if metrics else report)

        with _served(metrics, settings):
            consumer = await connection.consume(QUEUE, idempotent(handle, inbox), prefetch=4)
            await stop.wait()
            await consumer.stop()
    finally:
        if bus is None:
            await connection.close()
        inbox.close()


def _served(metrics: StagingMetrics | None, settings: Settings) -> AbstractContextManager[None]:
    if metrics is None:
        return nullcontext()
    return metrics.served(settings.metrics_address, settings.metrics_port)


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    return stop


def cli() -> None:
    configure_logging("staging-agent")
    asyncio.run(run(Settings()))
