"""Response bodies of the ticket, release and probe routes, as OpenAPI schemas. Each mirrors the
document its route returned before it had one: a field added to the read model goes here too.
Times in read-model documents stay strings (`isoformat()`, as stored), not datetimes, so the
bodies stay byte for byte what they were."""

from __future__ import annotations

from typing import Any

from ferry_events.schemas import TicketKind
from pydantic import BaseModel, Field

from ferry_api.domain import Action, TicketState
from ferry_api.domain.state import HostState


class Status(BaseModel):
    status: str = Field(description="`ok` (alive) or `ready` (store and bus answer)")


class HostProgressOut(BaseModel):
    state: HostState
    version: int
    attempt: int = 1
    files: int | None = None
    bytes: int | None = None
    seconds: float | None = None
    error: str | None = None


class CommentOut(BaseModel):
    by: str
    action: str
    text: str


class TicketOut(BaseModel):
    """A ticket as the read model holds it (domain/state.py's Ticket, plus when and `seq`)."""

    id: str
    app: str
    kind: TicketKind
    state: TicketState
    author: str
    submitters: list[str]
    reason: str
    ref: str | None = None
    target_version: int | None = Field(None, description="rollback: the release to return to")
    staging_attempt: int = 0
    staged_commit: str | None = None
    staged_tree: str | None = None
    source_revision: str | None = None
    tested_tree: str | None = None
    tested_by: str | None = None
    approved_by: str | None = None
    version: int | None = Field(None, description="the release being published")
    digest: str | None = None
    hosts: dict[str, HostProgressOut] = Field(default_factory=dict)
    comments: list[CommentOut] = Field(default_factory=list)
    error: str | None = Field(None, description="why staging or tagging last failed")
    seq: int = Field(description="the submit's log position: orders tickets newest first")
    created_at: str
    updated_at: str


class TicketDetail(TicketOut):
    """One ticket read from its own stream, with what the caller may do next."""

    stream_version: int = Field(description="the ticket stream's version")
    staging_url: str | None = Field(description="the app's staging site, if any")
    allowed_actions: list[Action]


class TicketPage(BaseModel):
    tickets: list[TicketOut]
    total: int
    limit: int
    offset: int


class TimelineEntry(BaseModel):
    position: int
    version: int
    type: str
    at: str
    actor: str | None
    data: dict[str, Any] = Field(description="the event's data, URL credentials redacted")


class Timeline(BaseModel):
    ticket_id: str
    events: list[TimelineEntry]


class ReleaseOut(BaseModel):
    app: str
    version: int
    commit: str
    tree: str
    digest: str
    files: int
    bytes: int
    ticket_id: str
    author: str | None
    approver: str | None
    reason: str | None
    tagged_at: str
    published_at: str | None
    hosts: dict[str, str] = Field(description="host -> syncing, live or failed")


class ReleasePage(BaseModel):
    app: str
    releases: list[ReleaseOut]
    total: int
    limit: int
    offset: int
