"""Release numbers: publishing a deploy allocates N = the app's last release + 1, once."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import structlog
from ferry_events.envelope import StoredEvent
from ferry_events.schemas import VersionAllocated
from ferry_events.store import DuplicateEvent, WrongExpectedVersion

from ferry_api.commands.loading import load_ticket
from ferry_api.domain import Actor, Ticket, decisions
from ferry_api.domain.errors import Conflict
from ferry_api.domain.streams import PROCESS_CHECKPOINT, allocations, app_stream, ticket_stream
from ferry_api.runtime import APPEND_ATTEMPTS, Runtime, Store

log = structlog.get_logger()

PUBLISH_LOCK_WAIT = 15.0  # seconds a publish waits for another publish of the same app
PROCESS_WAIT = 5.0  # seconds a publish waits for the process manager to reach the log's end

# Release numbers must be distinct and consecutive per app, also when two tickets publish at
# once, and a refused publish must not use up a number. So, holding the store's exclusive lock
# `publish-<app>` (a Postgres advisory lock: one allocator per app across API processes):
#   1. wait until the process manager has reacted to the whole log (see 4): not a wait for
#      news, a crash repair; without it a publish cut short between 3 and 4 would leave N
#      free for the next publish to take again;
#   2. N = the highest VersionAllocated on `app-<app>` + 1;
#   3. append PublishRequested(N) (+ ReleaseTagRequested) to the ticket with the ticket version
#      the decision was made on: a racing cancel or second publish gets 409 here, before any
#      number is taken;
#   4. append VersionAllocated(N) to the app stream with the app version just read (re-read
#      while only staging or config events moved it). Its event id derives from the
#      PublishRequested's, and the process manager appends the same event for every
#      PublishRequested it sees: if this process dies between 3 and 4, the allocation is
#      still recorded exactly once, and step 1 of the next publish waits for that repair.


async def publish_deploy(runtime: Runtime, actor: Actor, ticket: Ticket) -> None:
    async with _publish_lock(runtime.store, ticket.app):
        await process_reached(runtime.store, await runtime.store.last_position())
        loaded = await load_ticket(runtime.store, ticket.id)
        app_events = await runtime.store.read_stream(app_stream(ticket.app))
        version = max(allocations(app_events), default=0) + 1
        events = decisions.publish(loaded.ticket, actor, version)
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
        # If the app stream kept moving, the process manager records the allocation (step 4).
        await record_allocation(runtime, stored[0], actor=actor.username)
    log.info("publish.requested", ticket_id=ticket.id, app=ticket.app, version=version)
    await runtime.projector.caught_up(stored[-1].position)


def allocation_event_id(publish_requested_id: uuid.UUID) -> uuid.UUID:
    return uuid.uuid5(publish_requested_id, "version-allocated")


async def record_allocation(runtime: Runtime, publish: StoredEvent, *, actor: str) -> bool:
    """Append VersionAllocated for a stored PublishRequested unless the app stream has it;
    False if the app stream kept moving under every attempt."""
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
                    "release_version.allocated_twice",
                    app=allocated.app,
                    version=allocated.version,
                    ticket_id=allocated.ticket_id,
                    holder=holder,
                )
            return True
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
            return True
        except DuplicateEvent:
            return True
        except WrongExpectedVersion:
            continue
    log.warning("release_version.not_recorded", app=allocated.app, version=allocated.version)
    return False


async def process_reached(store: Store, position: int, waiting_for: str = "a publish") -> None:
    """Wait until the process manager has reacted to the log up to `position`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PROCESS_WAIT
    while await store.checkpoint(PROCESS_CHECKPOINT) < position:
        if loop.time() > deadline:
            raise Conflict(f"{waiting_for} is still being recorded; try again in a moment")
        await asyncio.sleep(0.02)


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
