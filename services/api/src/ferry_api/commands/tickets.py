"""Ticket commands: load the ticket's stream, replay it, let the domain decide, and append the
decision with the stream version it was decided on, so a racing second action gets a Conflict.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog
from ferry_events.registry import Event
from ferry_events.schemas import Source, TicketKind

from ferry_api.commands.loading import Loaded, load_app, load_ticket, replayed
from ferry_api.commands.release_versions import process_reached, publish_deploy
from ferry_api.domain import Action, Actor, TicketInvalid, decisions
from ferry_api.domain.errors import Conflict
from ferry_api.domain.streams import app_stream, staging_holder, ticket_stream
from ferry_api.readmodels.releases import RELEASES, release_key
from ferry_api.runtime import Runtime

log = structlog.get_logger()


@dataclass(frozen=True)
class ActionInput:
    comment: str = ""
    reason: str = ""
    ref: str | None = None


# --- submit ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Submitted:
    """The new ticket as its stream stands after the submit (expected version 0: nothing else
    is in it), and its app's configuration the submit was decided on."""

    loaded: Loaded
    app: dict[str, Any]


async def submit(
    runtime: Runtime,
    actor: Actor,
    *,
    app: str,
    kind: TicketKind,
    reason: str,
    ref: str | None,
    version: int | None,
) -> Submitted:
    """File a new ticket; a deploy asks for staging in the same append."""
    config = await load_app(runtime.store, app)
    ticket_id = uuid.uuid4().hex
    events = decisions.submit(
        actor,
        ticket_id=ticket_id,
        app=app,
        kind=kind,
        reason=reason,
        ref=ref,
        version=version,
        source=Source.model_validate(config["source"]) if kind == "deploy" else None,
    )
    released = version is not None and await runtime.store.get(RELEASES, release_key(app, version))
    if kind == "rollback" and not released:
        raise Conflict(f"app {app} has no release {version} to roll back to")
    stored = await runtime.append(
        ticket_stream(ticket_id), events, 0, actor=actor.username, correlation_id=ticket_id
    )
    log.info("ticket.submitted", ticket_id=ticket_id, app=app, kind=kind, by=actor.username)
    return Submitted(replayed(stored), config)


# --- actions on a ticket ---------------------------------------------------------------------

Decide = Callable[[Runtime, Loaded, Actor, ActionInput], Awaitable[list[Event]]]


async def act(
    runtime: Runtime, actor: Actor, ticket_id: str, action: Action, given: ActionInput
) -> None:
    """Take one action; publish of a deploy also allocates its release version."""
    loaded = await load_ticket(runtime.store, ticket_id)
    if action == "publish":
        await _require_hosts(runtime, loaded.ticket.app)
        if loaded.ticket.kind == "deploy":
            await publish_deploy(runtime, actor, loaded.ticket)
            return
    events = await DECISIONS[action](runtime, loaded, actor, given)
    await runtime.append(
        ticket_stream(ticket_id),
        events,
        loaded.version,
        actor=actor.username,
        correlation_id=ticket_id,
    )
    log.info("ticket.acted", ticket_id=ticket_id, action=action, by=actor.username)


async def _return(rt: Runtime, loaded: Loaded, actor: Actor, given: ActionInput) -> list[Event]:
    return decisions.return_ticket(loaded.ticket, actor, given.comment)


async def _resubmit(rt: Runtime, loaded: Loaded, actor: Actor, given: ActionInput) -> list[Event]:
    ticket = loaded.ticket
    config = await load_app(rt.store, ticket.app)
    ref = given.ref or ticket.ref
    if ref is None:
        raise TicketInvalid("a resubmit needs a ref")
    return decisions.resubmit(
        ticket,
        actor,
        ref=ref,
        reason=given.reason or ticket.reason,
        source=Source.model_validate(config["source"]),
    )


async def _pass_tests(rt: Runtime, loaded: Loaded, actor: Actor, given: ActionInput) -> list[Event]:
    # A ticket's StagingCompleted and the app's StagingTaken are two appends: report ingest
    # writes them back to back, yet another ticket's staging can be recorded between them and
    # this read (seen under load in CI). The process manager appends any StagingTaken still
    # missing, so waiting for it to reach the log's end closes that window; ingest keeps it short.
    await process_reached(rt.store, await rt.store.last_position(), "a staging")
    app_events = await rt.store.read_stream(app_stream(loaded.ticket.app))
    holder = staging_holder(app_events, loaded.events)
    return decisions.pass_tests(loaded.ticket, actor, holder)


async def _approve(rt: Runtime, loaded: Loaded, actor: Actor, given: ActionInput) -> list[Event]:
    return decisions.approve(loaded.ticket, actor, given.comment)


async def _reject(rt: Runtime, loaded: Loaded, actor: Actor, given: ActionInput) -> list[Event]:
    return decisions.reject(loaded.ticket, actor, given.reason or given.comment)


async def _publish_rollback(
    rt: Runtime, loaded: Loaded, actor: Actor, given: ActionInput
) -> list[Event]:
    return decisions.publish(loaded.ticket, actor)  # its release exists: nothing to allocate


async def _retry(rt: Runtime, loaded: Loaded, actor: Actor, given: ActionInput) -> list[Event]:
    return decisions.retry(loaded.ticket, actor)


async def _cancel(rt: Runtime, loaded: Loaded, actor: Actor, given: ActionInput) -> list[Event]:
    return decisions.cancel(loaded.ticket, actor, given.reason or given.comment)


DECISIONS: dict[Action, Decide] = {
    "return": _return,
    "resubmit": _resubmit,
    "pass-tests": _pass_tests,
    "approve": _approve,
    "reject": _reject,
    "publish": _publish_rollback,
    "retry": _retry,
    "cancel": _cancel,
}


async def _require_hosts(runtime: Runtime, app: str) -> None:
    config = await load_app(runtime.store, app)
    if not config.get("hosts"):
        raise Conflict(f"app {app} has no hosts to publish to; add hosts first")
