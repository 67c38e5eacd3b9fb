"""A ticket as frozen state: what the fold in history.py builds and the decisions read."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from ferry_events.schemas import TicketKind

TicketState = Literal[
    "staging_pending",
    "staging",
    "staging_failed",
    "testing",
    "returned",
    "awaiting_approval",
    "approved",
    "publishing",
    "published",
    "publish_failed",
    "cancelled",
]
HostState = Literal["pending", "syncing", "completed", "failed"]


@dataclass(frozen=True)
class HostProgress:
    """One host's part of a publish: `pending` until re-requested, `syncing` once requested."""

    state: HostState
    version: int
    attempt: int = 1
    files: int | None = None
    bytes: int | None = None
    seconds: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class Comment:
    by: str
    action: str
    text: str


@dataclass(frozen=True)
class Ticket:
    """`author` is the latest (re)submitter; everyone in `submitters` is an author for four-eyes."""

    id: str
    app: str
    kind: TicketKind
    state: TicketState
    author: str
    submitters: tuple[str, ...]
    reason: str
    ref: str | None = None
    target_version: int | None = None  # the release a rollback returns to
    staging_attempt: int = 0
    staged_commit: str | None = None
    staged_tree: str | None = None
    source_revision: str | None = None
    tested_tree: str | None = None
    tested_by: str | None = None
    approved_by: str | None = None
    version: int | None = None  # the release being published
    digest: str | None = None
    hosts: Mapping[str, HostProgress] = field(default_factory=dict)
    comments: tuple[Comment, ...] = ()
    error: str | None = None  # why staging or tagging last failed
