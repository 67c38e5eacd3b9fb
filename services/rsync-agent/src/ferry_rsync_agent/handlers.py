"""What the agent does with a HostSyncRequested: load, decide, act, report.

An installed release that still verifies is only switched to (a rollback, or a command
redelivered after a crash), so repeating a command converges on the same `current`. A failing
post-sync hook is reported as HostSyncFailed, but `current` stays on the new release: it is
complete and verified, and switching back on our own would be a second, unapproved change.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from dataclasses import dataclass, replace

import structlog
from ferry_events import manifest
from ferry_events.agent_reports import Report, answer
from ferry_events.schemas import HostSyncCompleted, HostSyncFailed, HostSyncRequested

from ferry_rsync_agent.config import AgentConfig, AppConfig
from ferry_rsync_agent.delta import DeltaRefused, clear, delta, manifest_of, verify
from ferry_rsync_agent.hook import HookFailed, run_hook
from ferry_rsync_agent.releases import (
    Layout,
    discard,
    install,
    prepare,
    seed,
    switch_current,
)
from ferry_rsync_agent.rsync import Pull, RsyncFailed, fetch_file, pull
from ferry_rsync_agent.tree import Inventory, UnsafeTree, inventory


class SyncRefused(Exception):
    """The command cannot be carried out here; its message is the reported reason."""


FAILURES = (SyncRefused, DeltaRefused, RsyncFailed, UnsafeTree, OSError)


@dataclass(frozen=True)
class Installed:
    files: int
    bytes_transferred: int


async def sync_release(command: HostSyncRequested, config: AgentConfig, report: Report) -> None:
    """Bring release N of the app live on this host: install (or find) it, switch, run the
    hook, report. Pruning and the next spare wait until the agent is idle (housekeeping.py)."""
    log = structlog.get_logger()
    started = time.monotonic()
    try:
        app = _app_of(command, config)
        layout = Layout(app.target)
        installed = await _install(command, config, layout)
        await asyncio.to_thread(switch_current, layout, command.version)
    except FAILURES as e:
        log.warning("sync.failed", reason=str(e))
        await report(answer(command, HostSyncFailed, reason=str(e)))
        return
    log.info("release.switched", files=installed.files, bytes=installed.bytes_transferred)
    hook_error = await _run_post_sync(app, layout, command)
    if hook_error:
        reason = f"release {command.version} is live, but {hook_error}"
        await report(answer(command, HostSyncFailed, reason=reason))
    else:
        await report(_completed(command, installed, time.monotonic() - started))


def _completed(
    command: HostSyncRequested, installed: Installed, seconds: float
) -> HostSyncCompleted:
    return answer(
        command,
        HostSyncCompleted,
        files=installed.files,
        bytes_transferred=installed.bytes_transferred,
        seconds=round(seconds, 3),
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
    structlog.get_logger().warning("release.mismatched", action="sync again")
    await asyncio.to_thread(discard, layout, command.version)
    return None


async def _pull_verified(
    command: HostSyncRequested, config: AgentConfig, layout: Layout
) -> Installed:
    """Pull release N into `N.tmp`, verify it, and install it as `N`: by its manifest, only
    the paths that differ from a release already here; else the whole tree."""
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
        published = await _published_manifest(command, config, layout)
        seeded = published and await asyncio.to_thread(seed, layout, command.version, base)
        if published and seeded is not None:
            module = config.module_url(command.app)
            return await _pull_delta(command, request, module, layout, seeded, published)
        return await _pull_whole(command, request, layout)
    except Exception:
        await asyncio.to_thread(shutil.rmtree, request.destination, ignore_errors=True)
        raise


async def _published_manifest(
    command: HostSyncRequested, config: AgentConfig, layout: Layout
) -> str | None:
    """Release N's manifest as the publisher serves it beside the tree, checked against the
    command's digest; None if it serves none (the whole tree is pulled then)."""
    fetched = layout.manifests / f"{command.version}.published.tmp"
    request = Pull(
        source_url=config.manifest_url(command.app, command.version),
        destination=fetched,
        password_file=config.password_file,
        timeout_seconds=config.rsync_timeout_seconds,
    )
    try:
        await fetch_file(request)
        data = await asyncio.to_thread(fetched.read_bytes)
    except (RsyncFailed, OSError) as e:
        structlog.get_logger().info("manifest.not_found", reason=str(e)[:200])
        return None
    finally:
        fetched.unlink(missing_ok=True)
    return manifest_of(data, command.digest)


async def _pull_delta(
    command: HostSyncRequested,
    request: Pull,
    module: str,
    layout: Layout,
    seeded: str,
    published: str,
) -> Installed:
    """The seed is a verified release; clear what differs, pull just that (from the app's
    `module`), hash just that."""
    found = await asyncio.to_thread(delta, seeded, published)
    if not found.files:
        raise SyncRefused("the published release is empty")
    await asyncio.to_thread(clear, request.destination, found)
    received = 0
    if found.changed:
        # From the module's root, as "N/./path": rsync 3.5's daemon loses the files of a list
        # that is relative to a subdirectory ("file has vanished"); "/./" starts the kept part.
        listing = layout.manifests / f"{command.version}.files.tmp"
        prefix = f"{command.version}/./"
        names = b"".join(os.fsencode(prefix + entry.path) + b"\0" for entry in found.changed)
        await asyncio.to_thread(listing.write_bytes, names)
        try:
            received = await pull(replace(request, source_url=module, files_from=listing))
        finally:
            listing.unlink(missing_ok=True)
    await asyncio.to_thread(verify, request.destination, found)
    touched = [entry.path for entry in found.changed] + found.deleted
    await asyncio.to_thread(install, layout, command.version, published, touched)
    structlog.get_logger().info(
        "release.received",
        files=found.files,
        changed=len(found.changed),
        deleted=len(found.deleted),
        bytes=received,
    )
    return Installed(found.files, received)


async def _pull_whole(command: HostSyncRequested, request: Pull, layout: Layout) -> Installed:
    received = await pull(request)
    found = await asyncio.to_thread(inventory, request.destination)
    _check(found, command.digest)
    await asyncio.to_thread(install, layout, command.version, manifest.render(found.entries))
    structlog.get_logger().info("release.received", files=len(found.entries), bytes=received)
    return Installed(len(found.entries), received)


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
        structlog.get_logger().warning("hook.failed", reason=str(e))
        return str(e)
    return ""
