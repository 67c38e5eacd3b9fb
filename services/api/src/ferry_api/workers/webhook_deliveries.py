"""Webhook deliveries still to be made, and the posting of one with its retries.

Each pending delivery is a document (collection webhook_deliveries, key
"<app>/<webhook id>/<event position>") holding the notice, the tries made and when the next is
due; it goes once the receiver answers 2xx, the tries run out, the webhook is gone or its host
now leads inside the network (webhook_receivers.py, checked before each try). It never holds the
receiver's URL (that carries its token): the URL is looked up by webhook id at each try.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx
import structlog
from ferry_events.store import DocKey

from ferry_api.commands.webhook_receivers import Unresolved, refusal
from ferry_api.commands.webhooks import redacted, webhook
from ferry_api.domain.notices import Notice, body_of
from ferry_api.runtime import Runtime

if TYPE_CHECKING:
    from structlog.typing import FilteringBoundLogger

log = structlog.get_logger()

DELIVERIES = "webhook_deliveries"
# Like commands/webhooks.py's: a checkpoint that never moves, so the delivering tasks may write
# at any time without racing the worker's own checkpoint.
DELIVERIES_CHECKPOINT = "webhook_deliveries"
BACKOFF_SECONDS = (1.0, 2.0, 4.0, 8.0)  # pauses between the 5 tries

# httpx logs every request with its full URL at INFO, and webhook URLs carry tokens.
logging.getLogger("httpx").setLevel(logging.WARNING)


def new_delivery(app: str, webhook_id: str, notice: Notice, position: int) -> dict[str, Any]:
    return {
        "app": app,
        "webhook_id": webhook_id,
        "position": position,
        "notice": asdict(notice),
        "attempts": 0,
        "next_attempt_at": _at(0.0),
    }


def key_of(doc: dict[str, Any]) -> DocKey:
    return DELIVERIES, f"{doc['app']}/{doc['webhook_id']}/{doc['position']}"


async def pending(runtime: Runtime) -> list[dict[str, Any]]:
    """Every delivery recorded and not yet finished, oldest event first."""
    return await runtime.store.find(DELIVERIES, order_by="position", limit=100_000)


async def deliver(
    runtime: Runtime,
    client: httpx.AsyncClient,
    doc: dict[str, Any],
    backoff: tuple[float, ...] = BACKOFF_SECONDS,
) -> None:
    """Try at each due time until the delivery is finished (its document is then gone)."""
    current: dict[str, Any] | None = doc
    while current is not None:
        await _until(current["next_attempt_at"], cap=max(backoff, default=0.0))
        current = await _attempt(runtime, client, current, backoff)


async def _attempt(
    runtime: Runtime, client: httpx.AsyncClient, doc: dict[str, Any], backoff: tuple[float, ...]
) -> dict[str, Any] | None:
    """One try; the document as recorded for the next, or None when there is none to make."""
    notice = Notice(**doc["notice"])
    bound = log.bind(ticket_id=notice.ticket_id, app=doc["app"], webhook=doc["webhook_id"])
    bound = bound.bind(notice=notice.event, position=doc["position"])
    hook = await webhook(runtime, doc["app"], doc["webhook_id"])
    if hook is None or doc["position"] <= hook["since"]:
        # A webhook added again since hears only later events, as a new one would.
        bound.warning(
            "webhook.delivery_dropped", reason="webhook removed or replaced since the event"
        )
        await _write(runtime, key_of(doc), None)
        return None
    attempt = doc["attempts"] + 1
    bound = bound.bind(format=hook["format"], attempt=attempt)
    status = await _post_if_allowed(runtime, bound, client, hook, notice)
    if status is None:
        await _write(runtime, key_of(doc), None)
        return None
    pause = _outcome(bound, hook["url"], status, backoff[attempt - 1 :])
    again = None if pause is None else {**doc, "attempts": attempt, "next_attempt_at": _at(pause)}
    await _write(runtime, key_of(doc), again)
    return again


async def _post_if_allowed(
    runtime: Runtime,
    bound: FilteringBoundLogger,
    client: httpx.AsyncClient,
    hook: dict[str, Any],
    notice: Notice,
) -> int | str | None:
    """The try's status; None (logged, not sent) if the receiver's host now leads inside."""
    url = hook["url"]
    try:
        refused = await refusal(url, runtime.settings.webhook_allow_hosts)
    except Unresolved:
        return "Unresolved"  # a DNS hiccup is tried again, like a refused connection
    if refused:
        bound.error("webhook.delivery_refused", reason=refused, receiver=redacted(url))
        return None
    return await _post(client, url, body_of(notice, hook["format"]))


def _outcome(
    bound: FilteringBoundLogger, url: str, status: int | str, pauses_left: tuple[float, ...]
) -> float | None:
    """Logs how the try went; the pause before the next one, or None if there is none."""
    if isinstance(status, int) and 200 <= status < 300:
        bound.info("webhook.delivered", status=status)
        return None
    if not pauses_left:
        reason = f"HTTP {status}" if isinstance(status, int) else status
        bound.error("webhook.delivery_given_up", reason=reason, receiver=redacted(url))
        return None
    bound.warning("webhook.delivery_failed", status=status)
    return pauses_left[0]


async def _write(runtime: Runtime, key: DocKey, doc: dict[str, Any] | None) -> None:
    await runtime.store.commit(DELIVERIES_CHECKPOINT, expected=0, position=0, changes={key: doc})


def _at(seconds_from_now: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds_from_now)).isoformat()


async def _until(due: str, cap: float) -> None:
    """Sleep until `due`, but never longer than the longest pause: a wall clock set back while
    the delivery waited (or one that differs on the API process that resumes it) must not
    hold it for long."""
    delay = (datetime.fromisoformat(due) - datetime.now(UTC)).total_seconds()
    if delay > 0:
        await asyncio.sleep(min(delay, cap))


async def _post(client: httpx.AsyncClient, url: str, body: dict[str, Any]) -> int | str:
    """The response status, or the error's class name (its text may quote the URL)."""
    try:
        response = await client.post(url, json=body, follow_redirects=False)
    except httpx.HTTPError as exc:
        return type(exc).__name__
    return response.status_code
