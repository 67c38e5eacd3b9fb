"""Report ingest: agents' reports from the bus, appended to `ticket-<id>` exactly once.

The report's message id is its event id, so a redelivered or re-published report hits
DuplicateEvent and is acked with no second effect. A report the ticket no longer expects (late,
superseded attempt, ticket cancelled) is still recorded: the log says what the agents did, and the
fold (domain/history.py) ignores it, so it changes no state. Reports naming no known ticket, or an
app other than the ticket's, are not recorded (there is no such history to add to) and are acked.
A message that cannot be read is raised as Undeliverable: the bus dead-letters it at once. Right
behind a StagingCompleted, ingest appends the app's StagingTaken (see staging_slot.py).

Before any of that, the sender: a report is taken only from the broker user of the agent it
speaks for, and recorded with that user as its actor whatever its metadata claims; from anyone
else it is recorded as `report.rejected` apart from the ticket (report_senders.py). An agent's
`agent.command_refused` is recorded apart from every ticket too.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime

import structlog
from ferry_events.bus import REPORTS, Undeliverable
from ferry_events.envelope import Message, Metadata, NewEvent
from ferry_events.registry import Event, parse_event
from ferry_events.schemas import (
    AgentCommandRefused,
    HostSyncCompleted,
    HostSyncFailed,
    ReleaseTagFailed,
    ReleaseTagged,
    StagingCompleted,
    StagingFailed,
    StagingStarted,
)
from ferry_events.store import DuplicateEvent
from ferry_events.topology import REPORT_BINDINGS, REPORTS_QUEUE

from ferry_api.domain.streams import ticket_stream
from ferry_api.metrics import IngestStats
from ferry_api.runtime import Runtime
from ferry_api.workers.report_senders import Senders, record_refusal, record_rejection
from ferry_api.workers.staging_slot import take_staging

log = structlog.get_logger()

QUEUE = REPORTS_QUEUE
BINDINGS = REPORT_BINDINGS
# Agents may report these and nothing else: an agent's bus login must not approve a ticket.
REPORT_TYPES: tuple[type[Event], ...] = (
    StagingStarted,
    StagingCompleted,
    StagingFailed,
    ReleaseTagged,
    ReleaseTagFailed,
    HostSyncCompleted,
    HostSyncFailed,
    AgentCommandRefused,
)
SENT_AT = "sent_at"  # ISO time the agent sent the report: a header or a metadata key


class UnreadableReport(Undeliverable, ValueError):
    """Not a report this API understands: the bus dead-letters it at once, with the reason."""


def ingest_stats(runtime: Runtime) -> IngestStats:
    """This runtime's report ingest figures (zeros until ingest started)."""
    return runtime.ingest


def ingest_lag_seconds(runtime: Runtime) -> float:
    return runtime.ingest.lag_seconds


async def run(runtime: Runtime) -> None:
    """Consume the reports queue until cancelled."""
    stats = runtime.ingest
    await runtime.bus.declare_queue(QUEUE, BINDINGS, exchange=REPORTS)

    async def handle(message: Message) -> None:
        await ingest(runtime, message, stats)

    consumer = await runtime.bus.consume(QUEUE, handle, prefetch=32)
    try:
        await asyncio.Event().wait()
    finally:
        await consumer.stop()


async def ingest(runtime: Runtime, message: Message, stats: IngestStats) -> None:
    stats.received += 1
    report, claimed = read_report(message)
    objection = Senders.of(runtime.settings).objection(report, message.sender)
    if objection is not None:
        stats.rejected += 1
        await record_rejection(runtime, message, report, objection)
        return
    metadata = claimed.model_copy(update={"actor": message.sender})  # who really said it
    if isinstance(report, AgentCommandRefused):
        await record_refusal(runtime, message, report, metadata)
    else:
        await record_on_ticket(runtime, message, report, metadata, stats)


async def record_on_ticket(
    runtime: Runtime, message: Message, report: Event, metadata: Metadata, stats: IngestStats
) -> None:
    """Append a report its rightful sender made to its ticket's stream, once."""
    ticket_id: str = getattr(report, "ticket_id", "")
    bound = log.bind(ticket_id=ticket_id, type=message.type, message_id=message.message_id)
    history = await runtime.store.read_stream(ticket_stream(ticket_id)) if ticket_id else []
    if not history or history[0].data.get("app") != getattr(report, "app", None):
        stats.ignored += 1
        bound.warning("report.unmatched", reason="no known ticket of that app; not recorded")
        return
    event_id = report_event_id(message.message_id)
    try:
        stored = await runtime.store.append(
            ticket_stream(ticket_id), [NewEvent.of(report, metadata, event_id)], None
        )
    except DuplicateEvent:
        stats.duplicates += 1
        bound.info("report.already_recorded")
        return
    stats.recorded += 1
    stats.last_recorded_at = time.time()
    sent = _sent_at(message, metadata)
    if sent is not None:
        stats.lag_seconds = max(0.0, (stored[0].recorded_at - sent).total_seconds())
    bound.info("report.recorded", position=stored[0].position)
    if isinstance(report, StagingCompleted):
        await take_staging(runtime, stored[0])


def read_report(message: Message) -> tuple[Event, Metadata]:
    """The typed payload and metadata of a report message {schema_version, data, metadata}."""
    body = message.body
    try:
        payload = parse_event(message.type, int(body["schema_version"]), dict(body["data"]))
        metadata = Metadata.model_validate(body.get("metadata") or {})
    except (KeyError, TypeError, ValueError) as error:
        raise UnreadableReport(f"report {message.message_id} unreadable: {error}") from error
    if not isinstance(payload, REPORT_TYPES):
        raise UnreadableReport(f"{message.type} v{body['schema_version']} is not a report")
    return payload, metadata


def report_event_id(message_id: str) -> uuid.UUID:
    """The message id is a UUID from Message.report; anything else still maps to one id."""
    try:
        return uuid.UUID(message_id)
    except ValueError:
        return uuid.uuid5(uuid.NAMESPACE_URL, f"ferry-report:{message_id}")


def _sent_at(message: Message, metadata: Metadata) -> datetime | None:
    text = message.headers.get(SENT_AT) or (metadata.model_extra or {}).get(SENT_AT)
    if not isinstance(text, str):
        return None
    try:
        sent = datetime.fromisoformat(text)
    except ValueError:
        return None
    return sent if sent.tzinfo else sent.replace(tzinfo=UTC)
