"""Agents' heartbeats, consumed from the bus into documents: live state, not history, so they
are never appended to the log (and, under a checkpoint that never moves, no rebuild drops them).
A heartbeat is taken only from the host's own agent user (report_senders.Senders.may_beat): no
host speaks for another; others are dropped, logged and counted.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import structlog
from ferry_events.bus import REPORTS
from ferry_events.envelope import Message
from ferry_events.registry import parse_event
from ferry_events.schemas import AgentHeartbeat
from pydantic import ValidationError

from ferry_api.runtime import Runtime
from ferry_api.workers.report_senders import Senders

log = structlog.get_logger()

HEARTBEATS = "heartbeats"  # collection and (never-moving) checkpoint name, key = host
QUEUE = "api.heartbeats"


async def declare_heartbeat_queue(runtime: Runtime) -> None:
    await runtime.bus.declare_queue(QUEUE, [AgentHeartbeat.type_name], REPORTS)


async def record_heartbeat(runtime: Runtime, message: Message) -> None:
    """Keep the host's latest heartbeat; a malformed one is logged and dropped, not retried."""
    try:
        beat = parse_event(message.type, int(message.body["schema_version"]), message.body["data"])
    except (KeyError, TypeError, ValueError, ValidationError) as exc:
        log.warning("heartbeat.malformed", message_id=message.message_id, error=str(exc))
        return
    if not isinstance(beat, AgentHeartbeat):
        log.warning("heartbeat.mistyped", message_id=message.message_id, type=message.type)
        return
    if not Senders.of(runtime.settings).may_beat(beat, message.sender):
        runtime.metrics.heartbeats_dropped.inc()
        log.warning("heartbeat.dropped", sender=message.sender, host=beat.host)
        return
    received = datetime.now(UTC)
    doc = {**beat.model_dump(mode="json"), "received_at": received.isoformat()}
    await runtime.store.commit(
        HEARTBEATS, expected=0, position=0, changes={(HEARTBEATS, beat.host): doc}
    )
    runtime.metrics.heartbeat_received(beat.sent_at, received)


async def run(runtime: Runtime) -> None:
    """The heartbeat worker: consume until cancelled."""
    await declare_heartbeat_queue(runtime)

    async def handle(message: Message) -> None:
        await record_heartbeat(runtime, message)

    consumer = await runtime.bus.consume(QUEUE, handle)
    try:
        await asyncio.Event().wait()
    finally:
        await consumer.stop()
