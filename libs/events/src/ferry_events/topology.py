"""The bus topology of a Ferry vhost: which queue takes which commands or reports, and the broker
user each part logs in as. The API, the agents and deploy/broker/setup.py read it from here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ferry_events.bus import EVENTS, REPORTS
from ferry_events.registry import Event
from ferry_events.schemas import (
    AgentCommandRefused,
    AgentHeartbeat,
    HostSyncCompleted,
    HostSyncFailed,
    HostSyncRequested,
    ReleaseTagFailed,
    ReleaseTagged,
    ReleaseTagRequested,
    StagingCompleted,
    StagingFailed,
    StagingRequested,
    StagingStarted,
)

STAGING_QUEUE = "staging"
PUBLISHER_QUEUE = "publisher"
REPORTS_QUEUE = "api.reports"
HEARTBEATS_QUEUE = "api.heartbeats"
# AMQP's `*` is one whole word, so the host reports are named one by one.
REPORT_BINDINGS = (
    "staging.*",
    "release.*",
    "host.sync_completed",
    "host.sync_failed",
    AgentCommandRefused.type_name,
)

# What each agent may publish on REPORTS: its broker user's topic write permission. Every agent
# may say that it refused a command (the API records that apart from any ticket).
STAGING_REPORTS: tuple[type[Event], ...] = (
    StagingStarted,
    StagingCompleted,
    StagingFailed,
    AgentHeartbeat,
    AgentCommandRefused,
)
PUBLISHER_REPORTS: tuple[type[Event], ...] = (
    ReleaseTagged,
    ReleaseTagFailed,
    AgentHeartbeat,
    AgentCommandRefused,
)
HOST_REPORTS: tuple[type[Event], ...] = (
    HostSyncCompleted,
    HostSyncFailed,
    AgentHeartbeat,
    AgentCommandRefused,
)


def host_queue(host: str) -> str:
    return f"host.{host}"


def host_commands(host: str) -> str:
    """The routing key of the sync commands for one host (HostSyncRequested.routing_key)."""
    return f"{HostSyncRequested.type_name}.{host}"


@dataclass(frozen=True)
class QueueSpec:
    name: str
    exchange: str
    bindings: tuple[str, ...]


def api_queues() -> list[QueueSpec]:
    return [
        QueueSpec(REPORTS_QUEUE, REPORTS, REPORT_BINDINGS),
        QueueSpec(HEARTBEATS_QUEUE, REPORTS, (AgentHeartbeat.type_name,)),
    ]


def agent_queues(hosts: Iterable[str]) -> list[QueueSpec]:
    specs = [
        QueueSpec(STAGING_QUEUE, EVENTS, (StagingRequested.type_name,)),
        QueueSpec(PUBLISHER_QUEUE, EVENTS, (ReleaseTagRequested.type_name,)),
    ]
    specs += [QueueSpec(host_queue(h), EVENTS, (host_commands(h),)) for h in sorted(set(hosts))]
    return specs


@dataclass(frozen=True)
class BrokerUsers:
    """The naming convention of broker users: `<prefix>api`, `<prefix>staging`,
    `<prefix>publisher` and `<prefix>host-<host>`, one per production host."""

    prefix: str = "ferry-"

    @property
    def api(self) -> str:
        return f"{self.prefix}api"

    @property
    def staging(self) -> str:
        return f"{self.prefix}staging"

    @property
    def publisher(self) -> str:
        return f"{self.prefix}publisher"

    @property
    def host_prefix(self) -> str:
        return f"{self.prefix}host-"

    def host(self, host: str) -> str:
        return f"{self.host_prefix}{host}"

    def host_of(self, sender: str | None) -> str | None:
        """The host whose agent this sender is, or None when it is no host agent."""
        if sender is None or not sender.startswith(self.host_prefix):
            return None
        return sender.removeprefix(self.host_prefix) or None
