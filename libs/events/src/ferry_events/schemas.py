"""Every event and command payload of Ferry: frozen, past-tense, one wire name each.

Streams: `ticket-<id>` (the workflow), `app-<name>` (config, versions, staging slot),
`user-<name>` (accounts, roles, tokens). Commands (is_command) go to agents; reports come back.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ferry_events.registry import Event, event_type
from ferry_events.validation import AppName, HostName, SourceRef, UserName

TicketKind = Literal["deploy", "rollback"]
Role = Literal["developer", "lead", "admin"]


class Source(BaseModel):
    model_config = ConfigDict(frozen=True)

    type: Literal["git", "svn"]
    url: str


# --- tickets ---------------------------------------------------------------------------------


@event_type("ticket.submitted")
class TicketSubmitted(Event):
    ticket_id: str
    app: AppName
    kind: TicketKind
    reason: str
    author: UserName
    ref: SourceRef | None = None
    version: int | None = None  # the release a rollback returns to


@event_type("ticket.resubmitted")
class TicketResubmitted(Event):
    ticket_id: str
    by: UserName
    ref: SourceRef
    reason: str


@event_type("ticket.staging_requested", command=True)
class StagingRequested(Event):
    ticket_id: str
    app: AppName
    source: Source
    ref: SourceRef
    attempt: int = 1


@event_type("staging.started")
class StagingStarted(Event):
    ticket_id: str
    app: AppName


@event_type("staging.completed")
class StagingCompleted(Event):
    ticket_id: str
    app: AppName
    commit: str
    tree: str
    source_revision: str
    files: int
    diff_summary: dict[str, int] = Field(default_factory=dict)
    attempt: int = 1


@event_type("staging.failed")
class StagingFailed(Event):
    ticket_id: str
    app: AppName
    reason: str
    attempt: int = 1


@event_type("ticket.returned")
class TicketReturned(Event):
    ticket_id: str
    by: UserName
    comment: str = ""


@event_type("ticket.tests_passed")
class TestsPassed(Event):
    ticket_id: str
    by: UserName
    tree: str


@event_type("ticket.approved")
class TicketApproved(Event):
    ticket_id: str
    by: UserName
    comment: str = ""


@event_type("ticket.rejected")
class TicketRejected(Event):
    ticket_id: str
    by: UserName
    reason: str


@event_type("ticket.publish_requested")
class PublishRequested(Event):
    ticket_id: str
    app: AppName
    by: UserName
    version: int


@event_type("release.tag_requested", command=True)
class ReleaseTagRequested(Event):
    ticket_id: str
    app: AppName
    version: int
    commit: str
    tree: str
    reason: str
    author: UserName
    approver: UserName


@event_type("release.tagged")
class ReleaseTagged(Event):
    ticket_id: str
    app: AppName
    version: int
    commit: str
    tree: str
    digest: str
    files: int
    bytes: int


@event_type("release.tag_failed")
class ReleaseTagFailed(Event):
    ticket_id: str
    app: AppName
    version: int
    reason: str


@event_type("host.sync_requested", command=True)
class HostSyncRequested(Event):
    ticket_id: str
    app: AppName
    host: HostName
    version: int
    digest: str
    attempt: int = 1

    def routing_key(self) -> str:
        return f"{self.type_name}.{self.host}"


@event_type("host.sync_completed")
class HostSyncCompleted(Event):
    ticket_id: str
    app: AppName
    host: HostName
    version: int
    digest: str
    files: int
    bytes_transferred: int
    seconds: float
    attempt: int = 1


@event_type("host.sync_failed")
class HostSyncFailed(Event):
    ticket_id: str
    app: AppName
    host: HostName
    version: int
    reason: str
    attempt: int = 1


@event_type("ticket.published")
class TicketPublished(Event):
    ticket_id: str
    app: AppName
    version: int


@event_type("ticket.publish_failed")
class PublishFailed(Event):
    ticket_id: str
    app: AppName
    version: int
    failed_hosts: list[HostName]


@event_type("ticket.retried")
class PublishRetried(Event):
    ticket_id: str
    by: UserName
    hosts: list[HostName]


@event_type("ticket.cancelled")
class TicketCancelled(Event):
    ticket_id: str
    by: UserName
    reason: str = ""


# --- apps ------------------------------------------------------------------------------------


@event_type("app.created")
class AppCreated(Event):
    name: AppName
    source: Source
    staging_url: str = ""
    hosts: list[HostName] = Field(default_factory=list)
    target_path: str = ""
    excludes: list[str] = Field(default_factory=list)
    keep_releases: int = 5
    by: UserName


@event_type("app.updated")
class AppUpdated(Event):
    name: AppName
    changes: dict[str, Any]
    by: UserName


@event_type("app.version_allocated")
class VersionAllocated(Event):
    app: AppName
    version: int
    ticket_id: str


@event_type("app.staging_taken")
class StagingTaken(Event):
    """The app's staging workspace now holds this ticket's tree (pass-tests checks it)."""

    app: AppName
    ticket_id: str
    tree: str


# --- users -----------------------------------------------------------------------------------


@event_type("user.created")
class UserCreated(Event):
    username: UserName
    role: Role
    by: str


@event_type("user.role_changed")
class UserRoleChanged(Event):
    username: UserName
    role: Role
    by: UserName


@event_type("user.password_changed")
class UserPasswordChanged(Event):
    username: UserName
    by: UserName


@event_type("user.disabled")
class UserDisabled(Event):
    username: UserName
    by: UserName


@event_type("user.enabled")
class UserEnabled(Event):
    """A disabled account may log in again (its old sessions stay void)."""

    username: UserName
    by: UserName


@event_type("token.created")
class TokenCreated(Event):
    token_id: str
    username: UserName
    name: str
    by: UserName


@event_type("token.revoked")
class TokenRevoked(Event):
    token_id: str
    username: UserName
    by: UserName


# --- agents (bus only: heartbeats are state, not history, and are not appended) ---------------


@event_type("agent.heartbeat")
class AgentHeartbeat(Event):
    host: HostName
    agent: str
    agent_version: str
    apps: dict[str, int | None]
    sent_at: str


# --- the trust boundary: refused commands and rejected reports, each on a stream of its own ---


@event_type("agent.command_refused")
class AgentCommandRefused(Event):
    """An agent refused a command before acting on it (unsigned, forged, tampered, expired,
    replayed, another host's, not its queue's). Never on a ticket's stream: a forged command
    that names a real ticket must not be able to fail it. Untrusted text, kept short."""

    agent: str = Field(max_length=200)
    command_type: str = Field(max_length=200)
    command_event_id: str = Field(max_length=200)
    reason: str = Field(max_length=1000)


@event_type("report.rejected")
class ReportRejected(Event):
    """The API did not take a report: its broker-validated sender may not say it (or there was
    none). What the report claimed is kept short, for the audit; it moved nothing."""

    sender: str | None = Field(default=None, max_length=200)
    claimed_type: str = Field(max_length=200)
    ticket_id: str = Field(default="", max_length=200)
    host: str | None = Field(default=None, max_length=200)
    reason: str = Field(max_length=1000)


# --- apps: outgoing webhooks (their URLs stay out of the log) --------------------------------


@event_type("app.webhook_changed")
class WebhookChanged(Event):
    """An admin added, replaced or removed an outgoing webhook of the app. Never its URL: that
    carries the receiver's token and lives only in the webhook's document."""

    app: AppName
    webhook_id: str
    change: Literal["added", "replaced", "removed"]
    format: str  # json, slack or dingtalk: the new one, or the removed one's
    events: list[str]  # the notices it asks for (the removed one's when removed)
    by: UserName
