"""The commands that create and change an app's configuration (stream `app-<name>`), shared by
the routes and the demo; and the bus queues its hosts' agents consume.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import structlog
from ferry_events.bus import EVENTS, Bus
from ferry_events.schemas import AppCreated, AppUpdated
from ferry_events.store import WrongExpectedVersion

from ferry_api.domain.errors import Conflict, NotFound
from ferry_api.domain.streams import app_stream
from ferry_api.readmodels.apps import APPS
from ferry_api.runtime import Runtime

log = structlog.get_logger()


UPDATE_ATTEMPTS = 10


def host_queue(host: str) -> str:
    return f"host.{host}"


async def declare_host_queues(bus: Bus, hosts: Iterable[str]) -> None:
    """A durable queue per host, so sync commands wait for an agent that is not up yet
    (and the relay's mandatory publish finds a queue)."""
    for host in sorted(set(hosts)):
        await bus.declare_queue(host_queue(host), [f"host.sync_requested.{host}"], EVENTS)


async def create_app(runtime: Runtime, config: AppCreated) -> None:
    stream = app_stream(config.name)
    if await runtime.store.stream_version(stream) > 0:
        raise Conflict(f"app '{config.name}' already exists")
    await declare_host_queues(runtime.bus, config.hosts)
    await runtime.append(stream, [config], 0, actor=config.by)
    log.info("app.created", app=config.name, by=config.by)


async def current_config(runtime: Runtime, name: str) -> tuple[dict[str, Any] | None, int]:
    """The app's config folded from its own stream, and the stream version it was read at.

    Not the read model: that may lag behind the version, and the ticket side appends to the
    same stream (versions, staging slot), so a diff against it could drop a change."""
    events = await runtime.store.read_stream(app_stream(name))
    config: dict[str, Any] | None = None
    for event in events:
        payload = event.payload()
        if isinstance(payload, AppCreated):
            config = payload.model_dump(mode="json")
        elif isinstance(payload, AppUpdated) and config is not None:
            config.update(payload.changes)
    return config, events[-1].version if events else 0


async def update_app(runtime: Runtime, name: str, changes: dict[str, Any], by: str) -> bool:
    """Append what differs from the current config; False if nothing does. A ticket's append to
    the app stream meanwhile only makes it read the stream again."""
    for _ in range(UPDATE_ATTEMPTS):
        current, version = await current_config(runtime, name)
        if current is None:
            raise NotFound(f"no app '{name}'")
        changed = {key: value for key, value in changes.items() if current.get(key) != value}
        if not changed:
            return False
        await declare_host_queues(runtime.bus, changed.get("hosts", []))
        updated = AppUpdated(name=name, changes=changed, by=by)
        try:
            await runtime.append(app_stream(name), [updated], version, actor=by)
        except WrongExpectedVersion:
            continue
        log.info("app.changed", app=name, fields=sorted(changed), by=by)
        return True
    raise Conflict(f"app '{name}' keeps changing; try again")


async def declare_known_host_queues(runtime: Runtime) -> None:
    """At start: every configured host's queue exists, whatever happened to the broker."""
    for app in await runtime.store.find(APPS, limit=100_000):
        await declare_host_queues(runtime.bus, app.get("hosts", []))
