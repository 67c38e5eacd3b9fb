"""The webhook worker: follows the event log under its own checkpoint and posts a notice to
each of the app's webhooks that asked for it, in the background with retries, so a slow or
failing receiver never holds up releases or the other webhooks.

Deliveries are at least once, across restarts: those a batch of events makes are recorded as
documents (webhook_deliveries.py) in the same commit that moves the checkpoint, so either the
checkpoint did not move or they are recorded. Whoever takes the "webhooks" lock (at start, or from
a stopped API process) resumes the recorded ones when their next try is due; each document goes
once delivered or given up. A receiver may so get a notice twice: when the process stopped
between its 2xx and the document's removal.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import structlog
from ferry_events.envelope import StoredEvent

from ferry_api.commands.loading import load_ticket
from ferry_api.commands.webhooks import webhooks_of
from ferry_api.domain.errors import NotFound
from ferry_api.domain.notices import NOTICE_SOURCES, notice_of
from ferry_api.runtime import Runtime
from ferry_api.workers.webhook_deliveries import deliver, key_of, new_delivery, pending

log = structlog.get_logger()

CHECKPOINT = "webhooks"
TIMEOUT_SECONDS = 5.0
STANDBY_SECONDS = 5.0


async def run(runtime: Runtime) -> None:
    """One API process delivers at a time; the others stand by for the lock."""
    while True:
        async with runtime.store.exclusive("webhooks") as held:
            if held:
                await _follow(runtime)
        await asyncio.sleep(STANDBY_SECONDS)


async def _follow(runtime: Runtime) -> None:
    tasks: set[asyncio.Task[None]] = set()
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT_SECONDS) as client:

            def start(doc: dict[str, Any]) -> None:
                task = asyncio.create_task(deliver(runtime, client, doc))
                tasks.add(task)
                task.add_done_callback(tasks.discard)

            await _schedule(runtime, start)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _schedule(runtime: Runtime, start: Callable[[dict[str, Any]], None]) -> None:
    """Resume the recorded deliveries, then record and start those of each new batch."""
    checkpoint = await runtime.store.checkpoint(CHECKPOINT)
    resumed = await pending(runtime)
    if resumed:
        log.info("webhook.deliveries_resumed", count=len(resumed))
    for doc in resumed:
        start(doc)
    async for batch in runtime.store.subscribe(after=checkpoint):
        if not batch:
            continue
        docs = [doc for event in batch for doc in await deliveries(runtime, event)]
        position = batch[-1].position
        changes = {key_of(doc): doc for doc in docs}
        await runtime.store.commit(CHECKPOINT, checkpoint, position, changes)
        checkpoint = position
        for doc in docs:
            start(doc)


async def deliveries(runtime: Runtime, event: StoredEvent) -> list[dict[str, Any]]:
    """A new delivery for each webhook of the ticket's app that wants the event's notice."""
    payload = event.payload()
    if not isinstance(payload, NOTICE_SOURCES):
        return []
    try:
        loaded = await load_ticket(runtime.store, payload.ticket_id)
    except (NotFound, ValueError):
        # A history the fold refuses would crash the worker on the same event for ever.
        log.warning("notice.skipped", ticket_id=payload.ticket_id)
        return []
    notice = notice_of(payload, loaded.ticket)
    if notice is None:
        return []
    return [
        new_delivery(notice.app, hook["id"], notice, event.position)
        for hook in await webhooks_of(runtime, notice.app)
        if notice.event in hook["events"] and event.position > hook["since"]
    ]
