"""Each app's outgoing webhooks, kept as documents outside every projection (as credentials
are): their URLs carry the receivers' tokens, so they never enter the event log; the log only
records, without the URL, that a webhook was added, replaced or removed (WebhookChanged; logs
written before it have an AppUpdated with changes={"webhooks": "<id> added (…)"} instead)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlsplit

import structlog
from ferry_events.schemas import WebhookChanged

from ferry_api.commands.webhook_receivers import Unresolved, refusal
from ferry_api.domain.errors import Invalid
from ferry_api.domain.notices import WebhookEvent, WebhookFormat
from ferry_api.domain.streams import app_stream
from ferry_api.runtime import Runtime

log = structlog.get_logger()

WEBHOOKS = "webhooks"  # collection, key = "<app>/<id>"
# A checkpoint that never moves (expected 0, position 0): any writer may commit, no rebuild drops.
CONFIG_CHECKPOINT = "webhook_config"
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def check_webhook_url(url: str) -> str:
    """https anywhere; plain http only to this machine (a local relay or a test receiver)."""
    parts = urlsplit(url)
    _ = parts.port  # raises ValueError for a port out of range, as redacted() would later
    if any(c.isspace() or ord(c) < 32 for c in url) or not parts.hostname:
        raise ValueError("must be an absolute https:// URL")
    if parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in LOCAL_HOSTS):
        return url
    raise ValueError("must be https:// (http:// only for 127.0.0.1 or localhost)")


async def check_receiver(runtime: Runtime, url: str) -> None:
    """Refuse (Invalid) a receiver whose host does not resolve or is inside the network."""
    try:
        refused = await refusal(url, runtime.settings.webhook_allow_hosts)
    except Unresolved as exc:
        raise Invalid(f"url: {exc}") from exc
    if refused:
        raise Invalid(f"url: {refused}")


def redacted(url: str) -> str:
    """scheme://host[:port]/… : enough to recognise the receiver, not its token."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}/…"


def _key(app: str, webhook_id: str) -> str:
    return f"{app}/{webhook_id}"


async def _write(runtime: Runtime, app: str, webhook_id: str, doc: dict[str, Any] | None) -> None:
    await runtime.store.commit(
        CONFIG_CHECKPOINT, expected=0, position=0, changes={(WEBHOOKS, _key(app, webhook_id)): doc}
    )


async def webhooks_of(runtime: Runtime, app: str) -> list[dict[str, Any]]:
    return await runtime.store.find(WEBHOOKS, where={"app": app}, order_by="id", limit=1000)


async def webhook(runtime: Runtime, app: str, webhook_id: str) -> dict[str, Any] | None:
    return await runtime.store.get(WEBHOOKS, _key(app, webhook_id))


async def save_webhook(
    runtime: Runtime,
    app: str,
    webhook_id: str,
    *,
    url: str,
    fmt: WebhookFormat,
    events: list[WebhookEvent],
    by: str,
) -> dict[str, Any]:
    """Add or replace; it hears only events recorded after this (no replay of history)."""
    await check_receiver(runtime, url)
    replaced = await webhook(runtime, app, webhook_id) is not None
    subscribed = sorted(set(events))
    doc: dict[str, Any] = {
        "id": webhook_id,
        "app": app,
        "url": url,
        "format": fmt,
        "events": subscribed,
        "since": await runtime.store.last_position(),
        "updated_by": by,
        "updated_at": datetime.now(UTC).isoformat(),
    }
    await _write(runtime, app, webhook_id, doc)
    await _audit(runtime, doc, "replaced" if replaced else "added", by)
    return doc


async def delete_webhook(runtime: Runtime, app: str, webhook_id: str, by: str) -> bool:
    removed = await webhook(runtime, app, webhook_id)
    if removed is None:
        return False
    await _write(runtime, app, webhook_id, None)
    await _audit(runtime, removed, "removed", by)
    return True


async def _audit(
    runtime: Runtime, doc: dict[str, Any], change: Literal["added", "replaced", "removed"], by: str
) -> None:
    """The event says which webhook changed and what it asks for, never its URL."""
    changed = WebhookChanged(
        app=doc["app"],
        webhook_id=doc["id"],
        change=change,
        format=doc["format"],
        events=doc["events"],
        by=by,
    )
    await runtime.append(app_stream(doc["app"]), [changed], None, actor=by)
    log.info("webhook.changed", app=doc["app"], webhook=doc["id"], change=change, by=by)
