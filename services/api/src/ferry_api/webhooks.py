"""The webhook worker: follows the event log under its own checkpoint and posts a notice to
each of the app's webhooks that asked for it, in the background with retries, so a slow or
failing receiver never holds up releases or the other webhooks.

Deliveries live in memory: one still retrying when the API stops is lost (logged as scheduled,
never as delivered); the checkpoint only promises that each event was scheduled once.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import httpx
import structlog
from ferry_events.envelope import StoredEvent

from ferry_api.errors import NotFound
from ferry_api.ticket_streams import load_ticket
from ferry_api.webhook_config import webhooks_of
from ferry_api.webhook_formats import NOTICE_SOURCES, Notice, body_of, notice_of

if TYPE_CHECKING:
    from ferry_api.runtime import Runtime

log = structlog.get_logger()

CHECKPOINT = "webhooks"
TIMEOUT_SECONDS = 5.0
BACKOFF_SECONDS = (1.0, 2.0, 4.0, 8.0)  # pauses between the 5 tries
STANDBY_SECONDS = 5.0

# httpx logs every request with its full URL at INFO, and webhook URLs carry tokens.
logging.getLogger("httpx").setLevel(logging.WARNING)


async def run(runtime: Runtime) -> None:
    """One API process delivers at a time; the others stand by for the lock."""
    while True:
        async with runtime.store.exclusive("webhooks") as held:
            if held:
                await _follow(runtime)
        await asyncio.sleep(STANDBY_SECONDS)


async def _follow(runtime: Runtime) -> None:
    pending: set[asyncio.Task[bool]] = set()
    checkpoint = await runtime.store.checkpoint(CHECKPOINT)
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT_SECONDS) as client:
            async for batch in runtime.store.subscribe(after=checkpoint):
                if not batch:
                    continue
                for event in batch:
                    for delivery in await deliveries(runtime, event):
                        task = asyncio.create_task(deliver(client, *delivery))
                        pending.add(task)
                        task.add_done_callback(pending.discard)
                position = batch[-1].position
                await runtime.store.commit(CHECKPOINT, checkpoint, position, {})
                checkpoint = position
    finally:
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


async def deliveries(
    runtime: Runtime, event: StoredEvent
) -> list[tuple[dict[str, Any], Notice, int]]:
    """(webhook, notice, event position) for each webhook of the ticket's app that wants it."""
    payload = event.payload()
    if not isinstance(payload, NOTICE_SOURCES):
        return []
    try:
        loaded = await load_ticket(runtime.store, payload.ticket_id)
    except (NotFound, ValueError):
        # A history the fold refuses would crash the worker on the same event for ever.
        log.warning("no ticket to announce; skipped", ticket_id=payload.ticket_id)
        return []
    notice = notice_of(payload, loaded.ticket)
    if notice is None:
        return []
    return [
        (hook, notice, event.position)
        for hook in await webhooks_of(runtime, notice.app)
        if notice.event in hook["events"] and event.position > hook["since"]
    ]


async def deliver(
    client: httpx.AsyncClient,
    hook: dict[str, Any],
    notice: Notice,
    position: int,
    backoff: tuple[float, ...] = BACKOFF_SECONDS,
) -> bool:
    """Post until the receiver answers 2xx or the tries run out; True if it was delivered."""
    bound = log.bind(
        ticket_id=notice.ticket_id,
        app=notice.app,
        webhook=hook["id"],
        format=hook["format"],
        notice=notice.event,
        position=position,
    )
    body = body_of(notice, hook["format"])
    for attempt, pause in enumerate((*backoff, None), start=1):
        status = await _post(client, hook["url"], body)
        if isinstance(status, int) and 200 <= status < 300:
            bound.info("webhook delivered", status=status, attempt=attempt)
            return True
        if pause is None:
            bound.error("webhook delivery given up", status=status, attempt=attempt)
            return False
        bound.warning("webhook delivery failed; retrying", status=status, attempt=attempt)
        await asyncio.sleep(pause)
    return False


async def _post(client: httpx.AsyncClient, url: str, body: dict[str, Any]) -> int | str:
    """The response status, or the error's class name (its text may quote the URL)."""
    try:
        response = await client.post(url, json=body, follow_redirects=False)
    except httpx.HTTPError as exc:
        return type(exc).__name__
    return response.status_code
