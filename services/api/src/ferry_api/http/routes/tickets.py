"""Tickets: file one, list them, read one with what the caller may do next, its timeline, and
the actions (return, resubmit, pass-tests, approve, reject, publish, retry, cancel)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query
from ferry_events.schemas import TicketKind
from ferry_events.validation import AppName, SourceRef, UserName
from pydantic import BaseModel, ConfigDict, Field

from ferry_api.commands import tickets as ticket_commands
from ferry_api.commands.loading import Loaded, load_ticket
from ferry_api.domain import ACTIONS, Action, Actor, TicketState, allowed_actions
from ferry_api.domain.errors import NotFound
from ferry_api.http.auth import CurrentUser
from ferry_api.http.deps import RuntimeDep
from ferry_api.http.schemas import TicketDetail, TicketOut, TicketPage, Timeline, TimelineEntry
from ferry_api.http.shown import shown_data
from ferry_api.readmodels.apps import APPS
from ferry_api.readmodels.tickets import TICKETS, stream_document, when
from ferry_api.runtime import Runtime

router = APIRouter(prefix="/api/v1/tickets", tags=["tickets"])

# Free text may span lines; other control characters (NUL above all) are refused at the edge.
PRINTABLE = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"
Reason = Annotated[str, Field(min_length=1, max_length=4000, pattern=PRINTABLE)]
Text = Annotated[str, Field(max_length=4000, pattern=PRINTABLE)]


class NewTicket(BaseModel):
    model_config = ConfigDict(extra="forbid")

    app: AppName
    kind: TicketKind = "deploy"
    reason: Reason
    ref: SourceRef | None = Field(default=None, description="deploy: git ref, or svn path[@rev]")
    version: int | None = Field(
        default=None, ge=1, le=2**31, description="rollback: the release to return to"
    )


class ActionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    comment: Text = ""
    reason: Text = Field(default="", description="reject and resubmit: why; cancel: optional")
    ref: SourceRef | None = Field(
        default=None, description="resubmit: a new ref (default: the same)"
    )


@router.post("", status_code=201)
async def submit_ticket(body: NewTicket, actor: CurrentUser, runtime: RuntimeDep) -> TicketDetail:
    """File a deploy (a ref to stage) or a rollback (a released version) ticket."""
    submitted = await ticket_commands.submit(
        runtime,
        actor,
        app=body.app,
        kind=body.kind,
        reason=body.reason,
        ref=body.ref,
        version=body.version,
    )
    # What the submit appended is the whole stream: no need to read it back.
    return _described(submitted.loaded, submitted.app, actor)


@router.get("")
async def list_tickets(
    actor: CurrentUser,
    runtime: RuntimeDep,
    app: AppName | None = None,
    state: TicketState | None = None,
    author: UserName | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
) -> TicketPage:
    """Tickets, newest first, filtered by app, state and (latest) author."""
    where = {
        name: value
        for name, value in (("app", app), ("state", state), ("author", author))
        if value is not None
    }
    docs = await runtime.store.find(
        TICKETS, where, order_by="seq", descending=True, limit=limit, offset=offset
    )
    total = await runtime.store.count(TICKETS, where)
    tickets = [TicketOut.model_validate(doc) for doc in docs]
    return TicketPage(tickets=tickets, total=total, limit=limit, offset=offset)


@router.get("/{ticket_id}")
async def get_ticket(ticket_id: str, actor: CurrentUser, runtime: RuntimeDep) -> TicketDetail:
    """The ticket now, its per-host progress, and the actions the caller may take."""
    return await _detail(runtime, actor, ticket_id)


@router.get("/{ticket_id}/events")
async def ticket_timeline(ticket_id: str, actor: CurrentUser, runtime: RuntimeDep) -> Timeline:
    """Everything that happened to the ticket, in order: who did what, when, and why."""
    loaded = await load_ticket(runtime.store, ticket_id)
    return Timeline(
        ticket_id=ticket_id,
        events=[
            TimelineEntry(
                position=e.position,
                version=e.version,
                type=e.type,
                at=when(e.recorded_at),
                actor=e.metadata.actor,
                data=shown_data(e.data),
            )
            for e in loaded.events
        ],
    )


@router.post("/{ticket_id}/{action}")
async def take_action(
    ticket_id: str,
    action: str,
    actor: CurrentUser,
    runtime: RuntimeDep,
    body: Annotated[ActionBody | None, Body()] = None,
) -> TicketDetail:
    """One step of the workflow. 409: not in this state; 403: not for you (or four-eyes)."""
    if action not in ACTIONS:
        raise NotFound(f"no action {action!r}; actions are {', '.join(ACTIONS)}")
    given = body or ActionBody()
    await ticket_commands.act(
        runtime,
        actor,
        ticket_id,
        _as_action(action),
        ticket_commands.ActionInput(comment=given.comment, reason=given.reason, ref=given.ref),
    )
    return await _detail(runtime, actor, ticket_id)


def _as_action(name: str) -> Action:
    return next(action for action in ACTIONS if action == name)


async def _detail(runtime: Runtime, actor: Actor, ticket_id: str) -> TicketDetail:
    """Read from the ticket's own stream: never behind the caller's last write."""
    loaded = await load_ticket(runtime.store, ticket_id)
    app = await runtime.store.get(APPS, loaded.ticket.app) or {}
    return _described(loaded, app, actor)


def _described(loaded: Loaded, app: dict[str, Any], actor: Actor) -> TicketDetail:
    doc = stream_document(loaded.events)
    return TicketDetail.model_validate(
        {
            **doc,
            "stream_version": loaded.version,
            "staging_url": app.get("staging_url"),
            "allowed_actions": allowed_actions(loaded.ticket, actor),
        }
    )
