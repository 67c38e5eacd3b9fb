"""Every production host the log knows: which apps it serves and the version it last synced;
and per app the version its latest publish (or rollback) asked every host to run.

Agents' heartbeats (live state, not history) are kept apart, by workers/heartbeats.py;
GET /hosts joins the two.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ferry_events.envelope import StoredEvent
from ferry_events.projection import DocumentBatch
from ferry_events.schemas import AppCreated, AppUpdated, HostSyncCompleted, PublishRequested

HOSTS = "hosts"
APP_HOSTS = "app_hosts"  # app -> its configured hosts (to see which an update removed), target


class HostsProjection:
    name = "hosts"
    collections: Sequence[str] = (HOSTS, APP_HOSTS)

    async def apply(self, docs: DocumentBatch, event: StoredEvent) -> None:
        payload = event.payload()
        if isinstance(payload, AppCreated):
            await _configure(docs, payload.name, payload.hosts)
        elif isinstance(payload, AppUpdated) and "hosts" in payload.changes:
            await _configure(docs, payload.name, list(payload.changes["hosts"]))
        elif isinstance(payload, PublishRequested):
            app = await docs.get(APP_HOSTS, payload.app)
            if app is not None:
                docs.put(APP_HOSTS, payload.app, {**app, "target_version": payload.version})
        elif isinstance(payload, HostSyncCompleted):
            host = await _host(docs, payload.host)
            entry = _entry(host, payload.app)
            entry.update(synced_version=payload.version, synced_at=event.recorded_at.isoformat())
            docs.put(HOSTS, payload.host, host)


async def _configure(docs: DocumentBatch, app: str, hosts: list[str]) -> None:
    before = await docs.get(APP_HOSTS, app)
    for name in set(before["hosts"] if before else []) - set(hosts):
        host = await _host(docs, name)
        _entry(host, app)["configured"] = False
        docs.put(HOSTS, name, host)
    for name in hosts:
        host = await _host(docs, name)
        _entry(host, app)["configured"] = True
        docs.put(HOSTS, name, host)
    docs.put(APP_HOSTS, app, {"target_version": None, **(before or {}), "app": app, "hosts": hosts})


async def _host(docs: DocumentBatch, name: str) -> dict[str, Any]:
    return await docs.get(HOSTS, name) or {"host": name, "apps": {}}


def _entry(host: dict[str, Any], app: str) -> dict[str, Any]:
    entry: dict[str, Any] = host["apps"].setdefault(
        app, {"configured": False, "synced_version": None, "synced_at": None}
    )
    return entry
