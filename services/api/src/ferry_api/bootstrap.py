"""The one place that builds the API's runtime and starts its background workers
(cosmicpython's bootstrap).

`running(settings)` opens the store and the bus, starts the workers (relay, read models, process
manager, report ingest, heartbeats, host-sync and tag deadlines, webhooks) as tasks, and closes
everything on exit. Routes reach the runtime through http/deps.RuntimeDep; no worker imports
this module, and nothing is created at import time.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import structlog
from ferry_events.backends import open_bus, open_store
from ferry_events.relay import Relay
from ferry_events.signing import BadKey, CommandSigner, load_private_key

from ferry_api.commands.apps import declare_known_host_queues
from ferry_api.readmodels.projector import Projector
from ferry_api.runtime import Runtime
from ferry_api.settings import InsecureSettings, Settings
from ferry_api.workers import (
    anchors,
    heartbeats,
    process,
    reports,
    sync_deadlines,
    tag_deadlines,
    webhooks,
)

log = structlog.get_logger()

Worker = Callable[[Runtime], Awaitable[None]]


async def relay(runtime: Runtime) -> None:
    """Stored events -> the bus, checkpointed."""
    await Relay(runtime.store, runtime.bus, signer=runtime.signer).run()


async def read_models(runtime: Runtime) -> None:
    await runtime.projector.run()


def workers() -> list[Worker]:
    """The background work of an API process, in one explicit list."""
    return [
        relay,
        read_models,
        process.run,
        reports.run,
        heartbeats.run,
        sync_deadlines.run,
        tag_deadlines.run,
        webhooks.run,
        anchors.run,
    ]


async def declare_queues(runtime: Runtime) -> None:
    """Queues that must exist before anyone publishes: agents' heartbeats, hosts' commands."""
    await heartbeats.declare_heartbeat_queue(runtime)
    await declare_known_host_queues(runtime)


@contextlib.asynccontextmanager
async def running(settings: Settings, *, start_workers: bool = True) -> AsyncIterator[Runtime]:
    signer = command_signer(settings) if start_workers else None  # a bad key: before anything
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = await open_store(settings.store_url())
    if settings.migrate_on_start:
        await store.migrate()
    bus = await open_bus(settings.broker_url)
    runtime = Runtime(settings, store, bus, Projector(store), signer=signer)
    tasks: list[asyncio.Task[None]] = []
    try:
        if start_workers:
            warn_if_shared_broker_user(settings)
            await declare_queues(runtime)
            tasks = [asyncio.create_task(_supervised(w, runtime)) for w in workers()]
        yield runtime
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await bus.close()
        await store.close()


def command_signer(settings: Settings) -> CommandSigner | None:
    """The relay's signer, from FERRY_SIGNING_KEY_FILE (none: commands go unsigned, and agents
    refuse them; `Settings.checked` refuses that outside the demo)."""
    if settings.signing_key_file is None:
        log.warning("relay.unsigned", reason="no FERRY_SIGNING_KEY_FILE: agents refuse commands")
        return None
    try:
        key = load_private_key(settings.signing_key_file)
    except BadKey as error:
        raise InsecureSettings(f"FERRY_SIGNING_KEY_FILE: {error}") from None
    signer = CommandSigner(key, ttl_seconds=settings.command_ttl_seconds)
    log.info(
        "relay.signing_enabled", key_id=signer.key_id, ttl_seconds=settings.command_ttl_seconds
    )
    return signer


def warn_if_shared_broker_user(settings: Settings) -> None:
    """Development with one broker login for every agent is allowed, but never silently."""
    if settings.shared_broker_user:
        log.warning(
            "broker.user_shared",
            user=settings.shared_broker_user,
            meaning="every agent logs in as this user: its reports are taken for any agent",
        )


async def _supervised(worker: Worker, runtime: Runtime) -> None:
    """Restart a crashed worker after a pause: one bad event must not stop the API's work."""
    name = getattr(worker, "__module__", "") + "." + getattr(worker, "__name__", "worker")
    while True:
        try:
            await worker(runtime)
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("worker.crashed", worker=name, restart_in=1)
            await asyncio.sleep(1)
