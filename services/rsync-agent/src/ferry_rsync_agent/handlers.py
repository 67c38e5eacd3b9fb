"""What the agent does with a HostSyncRequested: load, decide, act, report.

An installed release that still verifies is only switched to (a rollback, or a command
redelivered after a crash), so repeating a command converges on the same `current`. A failing
post-sync hook is reported as HostSyncFailed, but `current` stays on the new release: it is
complete and verified, and switching back on our own would be a second, unapproved change.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path

import structlog
from ferry_events.registry import Event
from ferry_events.schemas import HostSyncCompleted, HostSyncFailed, HostSyncRequested

from ferry_rsync_agent.config import AgentConfig, AppConfig
from ferry_rsync_agent.hook import HookFailed, run_hook
from ferry_rsync_agent.releases import (
    Layout,
    discard,
    install,
    prepare,
    prune,
    read_manifest,
    seed,
    switch_current,
    unshare,
)
from ferry_rsync_agent.rsync import Pull, RsyncFailed, changed_in_place, pull
from ferry_rsync_agent.tree import Inventory, UnsafeTree, inventory

Report = Callable[[Event], Awaitable[None]]


class SyncRefused(Exception):
    """The command cannot be carried out here; its message is the reported reason."""


FAILURES = (SyncRefused, RsyncFailed, UnsafeTree, OSError)


@dataclass(frozen=True)
class Installed:
    files: int
    bytes_transferred: int


async def sync_release(command: HostSyncRequested, config: AgentConfig, report: Report) -> None:
    """Bring release N of the app live on this host: install (or find) it, switch, hook, prune."""
    log = structlog.get_logger()
    started = time.monotonic()
    with structlog.contextvars.bound_contextvars(
        ticket_id=command.ticket_id, app=command.app, host=config.host, version=command.version
    ):
        try:
            app = _app_of(command, config)
            layout = Layout(app.target)
            installed = await _install(command, config, layout)
            await asyncio.to_thread(switch_current, layout, command.version)
        except FAILURES as e:
            log.warning("sync_failed", reason=str(e))
            await report(_failed(command, str(e)))
            return
        log.info("release_live", files=installed.files, bytes=installed.bytes_transferred)
        hook_error = await _run_post_sync(app, layout, command)
        await _prune(layout, app.keep)
        if hook_error:
            await report(_failed(command, f"release {command.version} is live, but {hook_error}"))
            return
        await report(
            HostSyncCompleted(
                ticket_id=command.ticket_id,
                app=command.app,
                host=command.host,
                version=command.version,
                digest=command.digest,
                files=installed.files,
                bytes_transferred=installed.bytes_transferred,
                seconds=round(time.monotonic() - started, 3),
                attempt=command.attempt,
            )
        )


def _app_of(command: HostSyncRequested, config: AgentConfig) -> AppConfig:
    if command.host != config.host:
        raise SyncRefused(f"command for host {command.host} reached the agent of {config.host}")
    app = config.apps.get(command.app)
    if app is None:
        raise SyncRefused(f"app {command.app} is not configured on host {config.host}")
    return app


async def _install(command: HostSyncRequested, config: AgentConfig, layout: Layout) -> Installed:
    if not layout.target.is_dir():
        raise SyncRefused(f"target directory {layout.target} is missing (not mounted?)")
    await asyncio.to_thread(prepare, layout)
    if command.version in layout.versions():
        files = await _verify_installed(command, layout)
        if files is not None:
            return Installed(files, 0)
    return await _pull_verified(command, config, layout)


async def _verify_installed(command: HostSyncRequested, layout: Layout) -> int | None:
    """The file count of the installed release if it still matches the digest; else None,
    after removing it (unless it is live: a live tree is never touched)."""
    try:
        found = await asyncio.to_thread(inventory, layout.release(command.version))
        if found.digest == command.digest:
            return len(found.entries)
    except UnsafeTree:
        pass
    if layout.current_version() == command.version:
        raise SyncRefused(
            f"release {command.version} is live but no longer matches its digest; not touched"
        )
    structlog.get_logger().warning("installed_release_differs", action="sync again")
    await asyncio.to_thread(discard, layout, command.version)
    return None


async def _pull_verified(
    command: HostSyncRequested, config: AgentConfig, layout: Layout
) -> Installed:
    """rsync into `N.tmp`, seeded with hard links to the current release, verify, and install
    as `N`."""
    base = layout.current_version()
    if base is not None and not layout.release(base).is_dir():
        base = None
    request = Pull(
        source_url=config.release_url(command.app, command.version),
        destination=layout.incoming(command.version),
        password_file=config.password_file,
        timeout_seconds=config.rsync_timeout_seconds,
        bwlimit_kib=config.bwlimit_kib,
    )
    try:
        if base is not None:
            await _seed(request, layout, command.version, base)
        found, received = await _receive(request, layout, command.version, base, command.digest)
        _check(found, command.digest)
        await asyncio.to_thread(install, layout, command.version, found.entries)
    except Exception:
        await asyncio.to_thread(shutil.rmtree, request.destination, ignore_errors=True)
        raise
    structlog.get_logger().info(
        "release_received", files=len(found.entries), hashed=found.hashed, bytes=received
    )
    return Installed(len(found.entries), received)


async def _receive(
    request: Pull, layout: Layout, version: int, base: int | None, expected: str
) -> tuple[Inventory, int]:
    """Pull and read the tree back; the bytes received. rsync's quick check (size, and mtime to
    the second) can take a changed file for the base's: then compare contents once more, in
    place (rsync replaces a file by rename, so the base release's inode is never written)."""
    received = await pull(request)
    found = await asyncio.to_thread(_inventory_incoming, layout, version, base)
    if base is not None and found.entries and found.digest != expected:
        structlog.get_logger().warning("quick_check_missed_a_change", action="rsync --checksum")
        by_content = replace(request, checksum=True)
        await _unshare(request.destination, await changed_in_place(by_content))
        received += await pull(by_content)
        found = await asyncio.to_thread(_inventory_incoming, layout, version, base)
    return found, received


async def _seed(request: Pull, layout: Layout, version: int, base: int) -> None:
    """Seed `N.tmp` with hard links to the base release while a dry run against the base itself
    (what `N.tmp` is a copy of) finds what rsync would change in place; then unshare those."""
    seeding = asyncio.ensure_future(asyncio.to_thread(seed, layout, version, base))
    try:
        kept = await changed_in_place(replace(request, destination=layout.release(base)))
    finally:
        await asyncio.wait([seeding])  # never let cp write behind a failure's cleanup
    seeding.result()
    await _unshare(request.destination, kept)


async def _unshare(destination: Path, kept: list[str]) -> None:
    """Give their own inode to the hard-linked files whose content stays but whose mode or
    mtime rsync would set with chmod/utime on the spot: that would alter the base release."""
    if kept:
        structlog.get_logger().info("attributes_change", files=len(kept), action="unshare")
        await asyncio.to_thread(unshare, destination, kept)


def _inventory_incoming(layout: Layout, version: int, base: int | None) -> Inventory:
    """The received tree's entries, reusing the base release's for files hard-linked from it."""
    if base is None:
        return inventory(layout.incoming(version))
    return inventory(layout.incoming(version), layout.release(base), read_manifest(layout, base))


def _check(found: Inventory, expected: str) -> None:
    if not found.entries:
        raise SyncRefused("the published release is empty")
    if found.digest != expected:
        raise SyncRefused(
            f"digest mismatch: the tree received has {found.digest}, expected {expected}"
        )


async def _run_post_sync(app: AppConfig, layout: Layout, command: HostSyncRequested) -> str:
    """Run the app's hook; return why it failed, or '' if it ran fine (or there is none)."""
    if app.post_sync is None:
        return ""
    release_dir = layout.release(command.version)
    try:
        await run_hook(app.post_sync, release_dir, command.app, command.version)
    except HookFailed as e:
        structlog.get_logger().warning("post_sync_hook_failed", reason=str(e))
        return str(e)
    return ""


async def _prune(layout: Layout, keep: int) -> None:
    """Pruning is housekeeping: a failure is logged, and the next sync tries again."""
    try:
        removed = await asyncio.to_thread(prune, layout, keep)
    except OSError as e:
        structlog.get_logger().warning("prune_failed", error=str(e))
        return
    if removed:
        structlog.get_logger().info("releases_pruned", versions=removed)


def _failed(command: HostSyncRequested, reason: str) -> HostSyncFailed:
    return HostSyncFailed(
        ticket_id=command.ticket_id,
        app=command.app,
        host=command.host,
        version=command.version,
        reason=reason,
        attempt=command.attempt,
    )
