"""Ticket commands: load the ticket's stream, replay it, let tickets.py decide, and append the
decision with the stream version it was decided on, so a racing second action gets a 409.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog
from ferry_events.envelope import StoredEvent
from ferry_events.registry import Event
from ferry_events.schemas import Source, StagingTaken, TicketKind, VersionAllocated
from ferry_events.store import DuplicateEvent, WrongExpectedVersion

from ferry_api import tickets
from ferry_api.errors import Conflict, NotFound
from ferry_api.tickets import Action, Actor, Ticket

if TYPE_CHECKING:
    from ferry_api.runtime import Runtime, Store

log = structlog.get_logger()

PUBLISH_LOCK_WAIT = 15.0  # seconds a publish waits for another publish of the same app
PROCESS_CHECKPOINT = "process"  # the process manager's (process.py) position in the log
PROCESS_WAIT = 5.0  # seconds pass-tests waits for the process manager to reach the log's end
APPEND_ATTEMPTS = 20  # re-reads of an app stream that other appends keep moving


def ticket_stream(ticket_id: str) -> str:
    return f"ticket-{ticket_id}"


def app_stream(app: str) -> str:
    return f"app-{app}"


@dataclass(frozen=True)
class Loaded:
    """A ticket as its stream leaves it, and the stream version it was read at."""

    ticket: Ticket
    version: int
    events: list[StoredEvent]


@dataclass(frozen=True)
class ActionInput:
    comment: str = ""
    reason: str = ""
    ref: str | None = None


async def load_ticket(store: Store, ticket_id: str) -> Loaded:
    events = await store.read_stream(ticket_stream(ticket_id))
    if not events:
        raise NotFound(f"no ticket {ticket_id}")
    ticket = tickets.replay(event.payload() for event in events)
    return Loaded(ticket, events[-1].version, events)


async def load_app(store: Store, app: str) -> dict[str, Any]:
    doc = await store.get("apps", app)
    if doc is None:
        raise NotFound(f"no app {app}")
    return doc


def staging_holder(app_events: list[StoredEvent]) -> tickets.StagingHolder | None:
    """(ticket, tree) that the app's staging workspace holds: its latest StagingTaken."""
    for event in reversed(app_events):
        payload = event.payload()
        if isinstance(payload, StagingTaken):
            return payload.ticket_id, payload.tree
    return None


def allocations(app_events: list[StoredEvent]) -> dict[int, str]:
    """Release version -> the ticket it was allocated to."""
    found: dict[int, str] = {}
    for event in app_events:
        payload = event.payload()
        if isinstance(payload, VersionAllocated):
            found[payload.version] = payload.ticket_id
    return found


# --- submit ----------------------------------------------------------------------------------


async def submit(
    runtime: Runtime,
    actor: Actor,
    *,
    app: str,
    kind: TicketKind,
    reason: str,
    ref: str | None,
    version: int | None,
) -> str:
    """File a new ticket; a deploy asks for staging in the same append. Returns its id."""
    config = await load_app(runtime.store, app)
    ticket_id = uuid.uuid4().hex
    events = tickets.submit(
        actor,
        ticket_id=ticket_id,
        app=app,
        kind=kind,
        reason=reason,
        ref=ref,
        version=version,
        source=Source.model_validate(config["source"]) if kind == "deploy" else None,
    )
    if kind == "rollback" and await runtime.store.get("releases", f"{app}:{version}") is None:
        raise Conflict(f"app {app} has no release {version} to roll back to")
    await runtime.append(
        ticket_stream(ticket_id), events, 0, actor=actor.username, correlation_id=ticket_id
    )
    log.info("ticket submitted", ticket_id=ticket_id, app=app, kind=kind, by=actor.username)
    return ticket_id


# --- actions on a ticket ---------------------------------------------------------------------

Decide = Callable[["Runtime", Loaded, Actor, ActionInput], Awaitable[list[Event]]]


async def act(
    runtime: Runtime, actor: Actor, ticket_id: str, action: Action, given: ActionInput
) -> None:
    """Take one action; publish of a deploy also allocates its release version."""
    loaded = await load_ticket(runtime.store, ticket_id)
    if action == "publish":
        await _require_hosts(runtime, loaded.ticket.app)
        if loaded.ticket.kind == "deploy":
            await _publish_deploy(runtime, actor, loaded.ticket)
            return
    events = await DECISIONS[action](runtime, loaded, actor, given)
    await runtime.append(
        ticket_stream(ticket_id),
        events,
        loaded.version,
        actor=actor.username,
        correlation_id=ticket_id,
    )
    log.info("ticket action", ticket_id=ticket_id, action=action, by=actor.username)


async def _return(rt: Runtime, loaded: Loaded, actor: Actor, given: ActionInput) -> list[Event]:
    return tickets.return_ticket(loaded.ticket, actor, given.comment)


async def _resubmit(rt: Runtime, loaded: Loaded, actor: Actor, given: ActionInput) -> list[Event]:
    ticket = loaded.ticket
    config = await load_app(rt.store, ticket.app)
    ref = given.ref or ticket.ref
    if ref is None:
        raise tickets.TicketInvalid("a resubmit needs a ref")
    return tickets.resubmit(
        ticket,
        actor,
        ref=ref,
        reason=given.reason or ticket.reason,
        source=Source.model_validate(config["source"]),
    )


async def _pass_tests(rt: Runtime, loaded: Loaded, actor: Actor, given: ActionInput) -> list[Event]:
    # StagingTaken is appended by the process manager: first let it record every staging
    # report already in the log, or the holder read here could be out of date.
    await _process_reached(rt.store, await rt.store.last_position())
    app_events = await rt.store.read_stream(app_stream(loaded.ticket.app))
    return tickets.pass_tests(loaded.ticket, actor, staging_holder(app_events))


async def _process_reached(store: Store, position: int) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PROCESS_WAIT
    while await store.checkpoint(PROCESS_CHECKPOINT) < position:
        if loop.time() > deadline:
            raise Conflict("the staging workspace's state is still being recorded; try again")
        await asyncio.sleep(0.02)


async def _approve(rt: Runtime, loaded: Loaded, actor: Actor, given: ActionInput) -> list[Event]:
    return tickets.approve(loaded.ticket, actor, given.comment)


async def _reject(rt: Runtime, loaded: Loaded, actor: Actor, given: ActionInput) -> list[Event]:
    return tickets.reject(loaded.ticket, actor, given.reason or given.comment)


async def _publish_rollback(
    rt: Runtime, loaded: Loaded, actor: Actor, given: ActionInput
) -> list[Event]:
    return tickets.publish(loaded.ticket, actor)  # its release exists: nothing to allocate


async def _retry(rt: Runtime, loaded: Loaded, actor: Actor, given: ActionInput) -> list[Event]:
    return tickets.retry(loaded.ticket, actor)


async def _cancel(rt: Runtime, loaded: Loaded, actor: Actor, given: ActionInput) -> list[Event]:
    return tickets.cancel(loaded.ticket, actor, given.reason or given.comment)


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


# --- publish: allocating release N -----------------------------------------------------------
#
# Release numbers must be distinct and consecutive per app, also when two tickets publish at
# once, and a refused publish must not use up a number. So, holding the store's exclusive lock
# `publish-<app>` (a Postgres advisory lock: one allocator per app across API processes):
#   1. N = the highest VersionAllocated on `app-<app>` + 1;
#   2. append PublishRequested(N) (+ ReleaseTagRequested) to the ticket with the ticket version
#      the decision was made on: a racing cancel or second publish gets 409 here, before any
#      number is taken;
#   3. append VersionAllocated(N) to the app stream with the app version just read (re-read
#      while only staging or config events moved it). Its event id derives from the
#      PublishRequested's, and the process manager appends the same event for every
#      PublishRequested it sees: if this process dies between 2 and 3, the allocation is still
#      recorded, exactly once.


async def _publish_deploy(runtime: Runtime, actor: Actor, ticket: Ticket) -> None:
    async with _publish_lock(runtime.store, ticket.app):
        loaded = await load_ticket(runtime.store, ticket.id)
        app_events = await runtime.store.read_stream(app_stream(ticket.app))
        version = max(allocations(app_events), default=0) + 1
        events = tickets.publish(loaded.ticket, actor, version)
        publish_id = uuid.uuid4()
        ids = [publish_id, *(uuid.uuid4() for _ in events[1:])]
        stored = await runtime.append(
            ticket_stream(ticket.id),
            events,
            loaded.version,
            actor=actor.username,
            correlation_id=ticket.id,
            event_ids=ids,
            wait=False,
        )
        await record_allocation(runtime, stored[0], actor=actor.username)
    log.info("publish requested", ticket_id=ticket.id, app=ticket.app, version=version)
    await runtime.views.caught_up(stored[-1].position)


def allocation_event_id(publish_requested_id: uuid.UUID) -> uuid.UUID:
    return uuid.uuid5(publish_requested_id, "version-allocated")


async def record_allocation(runtime: Runtime, publish: StoredEvent, *, actor: str) -> None:
    """Append VersionAllocated for a stored PublishRequested unless the app stream has it."""
    data = publish.data
    allocated = VersionAllocated(
        app=data["app"], version=data["version"], ticket_id=data["ticket_id"]
    )
    stream = app_stream(allocated.app)
    for _ in range(APPEND_ATTEMPTS):
        app_events = await runtime.store.read_stream(stream)
        holder = allocations(app_events).get(allocated.version)
        if holder is not None:
            if holder != allocated.ticket_id:
                log.error(
                    "release version allocated twice",
                    app=allocated.app,
                    version=allocated.version,
                    ticket_id=allocated.ticket_id,
                    holder=holder,
                )
            return
        try:
            await runtime.append(
                stream,
                [allocated],
                len(app_events),
                actor=actor,
                wait=False,
                causation_id=str(publish.event_id),
                correlation_id=allocated.ticket_id,
                event_ids=[allocation_event_id(publish.event_id)],
            )
            return
        except DuplicateEvent:
            return
        except WrongExpectedVersion:
            continue
    raise Conflict(f"app {allocated.app} keeps changing; version {allocated.version} not recorded")


@contextlib.asynccontextmanager
async def _publish_lock(store: Store, app: str) -> AsyncIterator[None]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PUBLISH_LOCK_WAIT
    while True:
        async with store.exclusive(f"publish-{app}") as held:
            if held:
                yield
                return
        if loop.time() > deadline:
            raise Conflict(f"another publish of app {app} is still running; try again")
        await asyncio.sleep(0.05)
