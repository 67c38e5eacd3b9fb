"""Entry point: read the local config, take this host's sync commands from the bus, report,
and send heartbeats until SIGTERM."""

from __future__ import annotations

import asyncio
import signal
from contextlib import AbstractContextManager, nullcontext
from importlib.metadata import version
from typing import TYPE_CHECKING

import structlog
from ferry_events.backends import open_bus
from ferry_events.bus import REPORTS, Bus, Handler
from ferry_events.envelope import Message, Metadata
from ferry_events.inbox import FileInbox, idempotent
from ferry_events.logs import configure_logging
from ferry_events.registry import Event
from ferry_events.schemas import HostSyncRequested

from ferry_rsync_agent.config import AgentConfig, load_config
from ferry_rsync_agent.handlers import Report, sync_release
from ferry_rsync_agent.heartbeat import AGENT, send_heartbeats
from ferry_rsync_agent.housekeeping import Housekeeping

if TYPE_CHECKING:
    from ferry_rsync_agent.metrics import SyncMetrics


def cli() -> None:
    config = load_config()
    configure_logging(AGENT)
    structlog.contextvars.bind_contextvars(host=config.host)
    asyncio.run(run(config))


async def run(
    config: AgentConfig, stop: asyncio.Event | None = None, bus: Bus | None = None
) -> None:
    """Serve until `stop` is set (by default: SIGTERM or SIGINT). The embedded mode hands in
    its in-process bus; otherwise the agent opens (and closes) its own."""
    stop = stop or _stop_on_signals()
    config.state_dir.mkdir(parents=True, exist_ok=True)
    inbox = FileInbox(config.state_dir / "inbox.ids")
    connection = bus or await open_bus(config.broker_url)
    try:
        queue = f"host.{config.host}"
        await connection.declare_queue(queue, [f"{HostSyncRequested.type_name}.{config.host}"])
        # One command at a time: two syncs of one app must never interleave.
        metrics = _metrics(config)
        housekeeping = Housekeeping(config)
        taker = idempotent(_taker(config, connection, metrics, housekeeping), inbox)
        with _served(metrics, config):
            housekeeping.when_idle(after=0)  # spares for the next syncs, before any command
            consumer = await connection.consume(queue, taker, prefetch=1)
            beats = asyncio.create_task(
                send_heartbeats(config, version(AGENT), _sender(connection, mandatory=False))
            )
            structlog.get_logger().info("agent_started", queue=queue, apps=sorted(config.apps))
            await stop.wait()
            await consumer.stop()
            await housekeeping.hold()
            beats.cancel()
            await asyncio.gather(beats, return_exceptions=True)
    finally:
        if bus is None:
            await connection.close()
        inbox.close()


def _metrics(config: AgentConfig) -> SyncMetrics | None:
    if not config.metrics_port:
        return None
    # Only here: the agent stays light unless metrics are asked for.
    from ferry_rsync_agent.metrics import SyncMetrics

    return SyncMetrics()


def _served(metrics: SyncMetrics | None, config: AgentConfig) -> AbstractContextManager[None]:
    if metrics is None:
        return nullcontext()
    return metrics.served(config.metrics_address, config.metrics_port)


def _taker(
    config: AgentConfig, bus: Bus, metrics: SyncMetrics | None, housekeeping: Housekeeping
) -> Handler:
    async def take(message: Message) -> None:
        stored = message.stored_event()
        command = stored.payload()
        if not isinstance(command, HostSyncRequested):
            raise TypeError(f"{message.type} has no place on this host's queue")
        cause = Metadata(
            correlation_id=stored.metadata.correlation_id, causation_id=str(stored.event_id)
        )
        report = _sender(bus, metadata=cause)
        await housekeeping.hold()
        try:
            await sync_release(command, config, metrics.counting(report) if metrics else report)
        finally:
            housekeeping.when_idle()

    return take


def _sender(bus: Bus, metadata: Metadata | None = None, mandatory: bool = True) -> Report:
    async def send(event: Event) -> None:
        await bus.publish(REPORTS, [Message.report(event, metadata)], mandatory=mandatory)

    return send


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    return stop
