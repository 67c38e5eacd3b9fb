"""The "releases" read model: one document per tagged release (`<app>:<version>`) with who
asked for it, who approved it, and which hosts run it now.

Built from what agents reported, whatever the ticket made of it: a ReleaseTagged means the tag
exists, a HostSyncCompleted means the host switched `current`. Two helper collections keep what
a later event needs: the tag request (author, approver) and each host's live version.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from ferry_events.envelope import StoredEvent
from ferry_events.projection import DocumentBatch
from ferry_events.schemas import (
    HostSyncCompleted,
    HostSyncFailed,
    HostSyncRequested,
    ReleaseTagged,
    ReleaseTagRequested,
    TicketPublished,
)

RELEASES = "releases"
TAG_REQUESTS = "release_tag_requests"
LIVE_VERSIONS = "release_live_versions"  # `<app>:<host>` -> the version it runs

# A host's part in a release: asked to sync it, runs it (its `current`), or failed to sync it.
SYNCING, LIVE, FAILED = "syncing", "live", "failed"


def release_key(app: str, version: int) -> str:
    return f"{app}:{version}"


class ReleasesProjection:
    name = "releases"
    collections: Sequence[str] = (RELEASES, TAG_REQUESTS, LIVE_VERSIONS)

    async def apply(self, docs: DocumentBatch, event: StoredEvent) -> None:
        payload = event.payload()
        fold = _FOLDS.get(type(payload))
        if fold is not None:
            await fold(docs, event, payload)


async def _tag_requested(docs: DocumentBatch, _: StoredEvent, cmd: ReleaseTagRequested) -> None:
    docs.put(
        TAG_REQUESTS,
        release_key(cmd.app, cmd.version),
        {
            "ticket_id": cmd.ticket_id,
            "author": cmd.author,
            "approver": cmd.approver,
            "reason": cmd.reason,
        },
    )


async def _tagged(docs: DocumentBatch, event: StoredEvent, tagged: ReleaseTagged) -> None:
    key = release_key(tagged.app, tagged.version)
    request = await docs.get(TAG_REQUESTS, key) or {}
    known = await docs.get(RELEASES, key) or {}
    docs.put(
        RELEASES,
        key,
        {
            "app": tagged.app,
            "version": tagged.version,
            "commit": tagged.commit,
            "tree": tagged.tree,
            "digest": tagged.digest,
            "files": tagged.files,
            "bytes": tagged.bytes,
            "ticket_id": tagged.ticket_id,
            "author": request.get("author"),
            "approver": request.get("approver"),
            "reason": request.get("reason"),
            # A report delivered again keeps the first time and what hosts did since.
            "tagged_at": known.get("tagged_at") or event.recorded_at.isoformat(),
            "published_at": known.get("published_at"),
            "hosts": known.get("hosts", {}),
        },
    )


async def _sync_requested(docs: DocumentBatch, _: StoredEvent, cmd: HostSyncRequested) -> None:
    await _set_host(docs, cmd.app, cmd.version, cmd.host, SYNCING, keep_live=True)


async def _sync_failed(docs: DocumentBatch, _: StoredEvent, report: HostSyncFailed) -> None:
    await _set_host(docs, report.app, report.version, report.host, FAILED, keep_live=True)


async def _sync_completed(docs: DocumentBatch, _: StoredEvent, report: HostSyncCompleted) -> None:
    release = await docs.get(RELEASES, release_key(report.app, report.version))
    if release is not None and release["digest"] != report.digest:
        await _set_host(docs, report.app, report.version, report.host, FAILED, keep_live=True)
        return
    live_key = f"{report.app}:{report.host}"
    before = await docs.get(LIVE_VERSIONS, live_key)
    if before is not None and before["version"] != report.version:
        await _drop_host(docs, report.app, before["version"], report.host)
    docs.put(LIVE_VERSIONS, live_key, {"version": report.version})
    await _set_host(docs, report.app, report.version, report.host, LIVE, keep_live=False)


async def _published(docs: DocumentBatch, event: StoredEvent, done: TicketPublished) -> None:
    key = release_key(done.app, done.version)
    release = await docs.get(RELEASES, key)
    if release is not None and release.get("published_at") is None:
        docs.put(RELEASES, key, {**release, "published_at": event.recorded_at.isoformat()})


async def _set_host(
    docs: DocumentBatch, app: str, version: int, host: str, state: str, *, keep_live: bool
) -> None:
    key = release_key(app, version)
    release = await docs.get(RELEASES, key)
    if release is None:
        return
    if keep_live and release["hosts"].get(host) == LIVE:
        return  # a re-sync of a release the host already runs does not take it offline
    docs.put(RELEASES, key, {**release, "hosts": {**release["hosts"], host: state}})


async def _drop_host(docs: DocumentBatch, app: str, version: int, host: str) -> None:
    key = release_key(app, version)
    release = await docs.get(RELEASES, key)
    if release is not None and host in release["hosts"]:
        hosts = {name: state for name, state in release["hosts"].items() if name != host}
        docs.put(RELEASES, key, {**release, "hosts": hosts})


_FOLDS: dict[type, Callable[[DocumentBatch, StoredEvent, Any], Awaitable[None]]] = {
    ReleaseTagRequested: _tag_requested,
    ReleaseTagged: _tagged,
    HostSyncRequested: _sync_requested,
    HostSyncCompleted: _sync_completed,
    HostSyncFailed: _sync_failed,
    TicketPublished: _published,
}
