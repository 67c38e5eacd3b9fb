"""Who may say which report: the broker-validated sender (Message.sender, RabbitMQ's user_id),
never what a report claims about itself. A host's sync reports come only from that host's agent
user, staging reports from the staging agent's, release reports from the publisher's; an agent's
refusal of a command from any agent user. `FERRY_SHARED_BROKER_USER` (development: one login
for every agent) lets that user say anything, attributed to it.

What the API records instead of a report it may not take: `report.rejected` on a stream of its
own, never on the ticket's, so the report moves nothing; and an agent's `agent.command_refused`
on another, since the command it names is unproven and may not fail the ticket it names.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import structlog
from ferry_events.envelope import Message, Metadata, NewEvent
from ferry_events.registry import Event
from ferry_events.schemas import (
    AgentCommandRefused,
    AgentHeartbeat,
    HostSyncCompleted,
    HostSyncFailed,
    ReleaseTagFailed,
    ReleaseTagged,
    ReportRejected,
    StagingCompleted,
    StagingFailed,
    StagingStarted,
)
from ferry_events.store import DuplicateEvent
from ferry_events.topology import BrokerUsers

from ferry_api.domain.streams import REFUSED_COMMANDS, REJECTED_REPORTS, SYSTEM_ACTOR
from ferry_api.runtime import Runtime
from ferry_api.settings import Settings

log = structlog.get_logger()

# Ids of what is recorded about a message: derived from its sender and id (a redelivery hits
# the same one), and never equal to a report's own id, which a rightful report may still take.
_RECORD_NAMESPACE = uuid.UUID("0b7e6f43-31a8-4d55-bd29-7c5f2e3a9d61")
_SHORT = 200


@dataclass(frozen=True)
class Senders:
    """The broker users of this vhost, and the shared development login if one is set."""

    users: BrokerUsers
    shared: str | None = None

    @classmethod
    def of(cls, settings: Settings) -> Senders:
        return cls(BrokerUsers(settings.broker_user_prefix), settings.shared_broker_user or None)

    def rightful(self, report: Event) -> str | None:
        """The one user that may say this report (None: an agent's refusal, or no report)."""
        if isinstance(report, HostSyncCompleted | HostSyncFailed):
            return self.users.host(report.host)
        if isinstance(report, StagingStarted | StagingCompleted | StagingFailed):
            return self.users.staging
        if isinstance(report, ReleaseTagged | ReleaseTagFailed):
            return self.users.publisher
        return None

    def objection(self, report: Event, sender: str | None) -> str | None:
        """Why `sender` may not say `report`; None when it may."""
        if sender is None:
            return "no sender: published without a broker-validated user id"
        if sender == self.shared:
            return None
        if isinstance(report, AgentCommandRefused):
            return None if self.is_agent(sender) else f"{sender} is no agent's broker user"
        rightful = self.rightful(report)
        if rightful is None:
            return f"{sender} may not report {report.type_name}"
        if sender == rightful:
            return None
        about = (
            f" for host {report.host}"
            if isinstance(report, HostSyncCompleted | HostSyncFailed)
            else ""
        )
        return f"{sender} may not report {report.type_name}{about} (only {rightful} may)"

    def is_agent(self, sender: str) -> bool:
        agents = (self.users.staging, self.users.publisher)
        return sender in agents or self.users.host_of(sender) is not None

    def may_beat(self, beat: AgentHeartbeat, sender: str | None) -> bool:
        """A heartbeat only from the host's own agent: no host speaks for another."""
        return sender is not None and sender in (self.shared, self.users.host(beat.host))


def record_id(kind: str, message: Message) -> uuid.UUID:
    return uuid.uuid5(_RECORD_NAMESPACE, f"{kind}/{message.sender}/{message.message_id}")


async def record_rejection(runtime: Runtime, message: Message, report: Event, reason: str) -> None:
    """`report.rejected`: what the report claimed, by its real sender; no ticket is touched."""
    rejected = ReportRejected(
        sender=message.sender[:_SHORT] if message.sender else None,
        claimed_type=report.type_name,
        ticket_id=str(getattr(report, "ticket_id", ""))[:_SHORT],
        host=getattr(report, "host", None),
        reason=reason[:1000],
    )
    metadata = Metadata(actor=rejected.sender or SYSTEM_ACTOR)
    event_id = record_id("rejected", message)
    if not await _record(runtime, REJECTED_REPORTS, rejected, metadata, event_id):
        return
    log.warning(
        "report.rejected",
        sender=message.sender,
        type=report.type_name,
        ticket_id=rejected.ticket_id,
        message_id=message.message_id,
        reason=reason,
    )


async def record_refusal(
    runtime: Runtime, message: Message, refusal: AgentCommandRefused, metadata: Metadata
) -> None:
    """An agent's refusal of a command, apart from every ticket."""
    if not await _record(
        runtime, REFUSED_COMMANDS, refusal, metadata, record_id("refused", message)
    ):
        return
    log.warning(
        "command.refused_by_agent",
        sender=message.sender,
        command_type=refusal.command_type,
        command_event_id=refusal.command_event_id,
        reason=refusal.reason,
    )


async def _record(
    runtime: Runtime, stream: str, event: Event, metadata: Metadata, event_id: uuid.UUID
) -> bool:
    """Append it; False if it was recorded already (a redelivery)."""
    try:
        await runtime.store.append(stream, [NewEvent.of(event, metadata, event_id)], None)
    except DuplicateEvent:
        return False
    return True
