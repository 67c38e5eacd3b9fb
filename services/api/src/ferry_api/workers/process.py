"""The process manager: follows the log and appends what an event calls for next (host fan-out,
the publish's outcome; the staging slot and a publish's version as fallbacks), checkpointed as
"process".

Every reaction may run twice (a crash after appending, before the checkpoint moved), so each one
decides from the stream's current state, appends with the version it read, and gives its events
ids derived from the causing event's: a second run finds nothing left to do or hits DuplicateEvent.
People's commands (submit, resubmit, publish, retry) already append the commands that follow them
(StagingRequested, ReleaseTagRequested, HostSyncRequested of a retry) in their own append; a
ReleaseTagFailed moves the ticket to publish_failed by itself (see domain/history.py), so neither
needs a reaction here. Report ingest appends StagingTaken right behind each StagingCompleted; the
reaction here appends the same event (same id) only if ingest stopped in between.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import structlog
from ferry_events.envelope import StoredEvent
from ferry_events.registry import Event
from ferry_events.schemas import (
    HostSyncCompleted,
    HostSyncFailed,
    PublishRequested,
    ReleaseTagged,
    StagingCompleted,
)
from ferry_events.store import DuplicateEvent, WrongExpectedVersion

from ferry_api.commands.loading import load_ticket
from ferry_api.commands.release_versions import record_allocation
from ferry_api.domain import Ticket, decisions
from ferry_api.domain.streams import (
    PROCESS_CHECKPOINT,
    SYSTEM_ACTOR,
    TICKET_PREFIX,
    ticket_stream,
)
from ferry_api.readmodels.apps import APPS
from ferry_api.readmodels.releases import RELEASES, release_key
from ferry_api.runtime import APPEND_ATTEMPTS, Runtime
from ferry_api.workers.staging_slot import take_staging

log = structlog.get_logger()

CHECKPOINT = PROCESS_CHECKPOINT
ACTOR = SYSTEM_ACTOR
STANDBY_SECONDS = 3.0


async def run(runtime: Runtime) -> None:
    """React to every event after the checkpoint, for ever; one process manager at a time."""
    while True:
        async with runtime.store.exclusive(CHECKPOINT) as held:
            if held:
                await _follow(runtime)
        await asyncio.sleep(STANDBY_SECONDS)


async def _follow(runtime: Runtime) -> None:
    store = runtime.store
    checkpoint = await store.checkpoint(CHECKPOINT)
    async for batch in store.subscribe(after=checkpoint, batch=200):
        if not batch:
            continue
        for event in batch:
            await react(runtime, event)
        # Only now: a crash before this line runs the batch's reactions again, harmlessly.
        await store.commit(CHECKPOINT, checkpoint, batch[-1].position, {})
        checkpoint = batch[-1].position


async def react(runtime: Runtime, event: StoredEvent) -> None:
    if not event.stream.startswith(TICKET_PREFIX):
        return
    payload = event.payload()
    reaction = REACTIONS.get(type(payload))
    if reaction is not None:
        await reaction(runtime, event, payload)


# --- reactions -------------------------------------------------------------------------------


async def on_staged(runtime: Runtime, cause: StoredEvent, staged: StagingCompleted) -> None:
    """The staging slot, if report ingest stopped before it appended it."""
    await take_staging(runtime, cause)


async def on_publish(runtime: Runtime, cause: StoredEvent, publish: PublishRequested) -> None:
    """A deploy's version is recorded on the app stream (repairs a publish cut short); a
    rollback's hosts are asked to sync its release at once."""
    loaded = await load_ticket(runtime.store, publish.ticket_id)
    if loaded.ticket.kind == "deploy":
        if not await record_allocation(runtime, cause, actor=ACTOR):
            raise RuntimeError(f"app stream of {publish.app} kept moving; allocation not recorded")
        return
    await runtime.projector.caught_up(cause.position)
    release = await runtime.store.get(RELEASES, release_key(publish.app, publish.version))
    if release is None:
        log.error(
            "rollback.release_unknown",
            ticket_id=publish.ticket_id,
            app=publish.app,
            version=publish.version,
        )
        return
    await sync_hosts(runtime, cause, publish.ticket_id, release["digest"])


async def on_tagged(runtime: Runtime, cause: StoredEvent, tagged: ReleaseTagged) -> None:
    await sync_hosts(runtime, cause, tagged.ticket_id, None)


async def sync_hosts(
    runtime: Runtime, cause: StoredEvent, ticket_id: str, digest: str | None
) -> None:
    """HostSyncRequested for each host of the app not yet asked in this publish."""
    await runtime.projector.caught_up(cause.position)  # the apps read model has seen the config

    async def decide(ticket: Ticket) -> list[Event]:
        app = await runtime.store.get(APPS, ticket.app)
        hosts: list[str] = list(app["hosts"]) if app else []
        if not hosts:
            log.warning("publish.hostless", ticket_id=ticket_id, app=ticket.app)
        return decisions.request_host_syncs(ticket, hosts, digest)

    await _react_on_ticket(runtime, cause, ticket_id, decide, "host-sync")


async def settle_publish(
    runtime: Runtime, cause: StoredEvent, report: HostSyncCompleted | HostSyncFailed
) -> None:
    """Published once every host synced; publish_failed once the rest settled."""

    async def decide(ticket: Ticket) -> list[Event]:
        return decisions.settle(ticket, sorted(ticket.hosts))

    await _react_on_ticket(runtime, cause, report.ticket_id, decide, "settle")


REACTIONS: dict[type, Callable[[Runtime, StoredEvent, Any], Awaitable[None]]] = {
    StagingCompleted: on_staged,
    PublishRequested: on_publish,
    ReleaseTagged: on_tagged,
    HostSyncCompleted: settle_publish,
    HostSyncFailed: settle_publish,
}


# --- appending reactions ---------------------------------------------------------------------


async def _react_on_ticket(
    runtime: Runtime,
    cause: StoredEvent,
    ticket_id: str,
    decide: Callable[[Ticket], Awaitable[list[Event]]],
    name: str,
) -> None:
    """Decide on the ticket as it is now; if someone appended meanwhile, decide again."""
    for _ in range(APPEND_ATTEMPTS):
        loaded = await load_ticket(runtime.store, ticket_id)
        events = await decide(loaded.ticket)
        if not events:
            return
        try:
            await _append(runtime, ticket_stream(ticket_id), events, loaded.version, cause, name)
            return
        except WrongExpectedVersion:
            continue
    raise RuntimeError(f"ticket {ticket_id} kept moving; reaction {name} not appended")


async def _append(
    runtime: Runtime,
    stream: str,
    events: Sequence[Event],
    expected: int,
    cause: StoredEvent,
    name: str,
) -> None:
    ids = [uuid.uuid5(cause.event_id, f"{name}/{index}") for index in range(len(events))]
    try:
        await runtime.append(
            stream,
            events,
            expected,
            actor=ACTOR,
            causation_id=str(cause.event_id),
            correlation_id=cause.metadata.correlation_id,
            event_ids=ids,
            wait=False,
        )
    except DuplicateEvent:
        log.info("reaction.already_appended", stream=stream, reaction=name)
        return
    log.info(
        "reaction.appended",
        stream=stream,
        reaction=name,
        types=[event.type_name for event in events],
    )
