"""The audit's findings: the hash chain, the live read models against a rebuild, the state at a
moment, and what went live on a host."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ferry_events.envelope import StoredEvent
from ferry_events.store import ReadModels

from ferry_api.audit.scratch import BATCH, Doc, ScratchModels, fold, log_batches

PAGE = 500


@dataclass(frozen=True)
class Difference:
    collection: str
    key: str
    field: str | None
    live: Any
    rebuilt: Any

    def __str__(self) -> str:
        where = f"collection {self.collection!r}, key {self.key!r}"
        if self.field is None:
            return f"DIFFERS at {where}: live {self.live!r}, rebuilt {self.rebuilt!r}"
        return (
            f"DIFFERS at {where}, field {self.field!r}: "
            f"live {self.live!r}, rebuilt {self.rebuilt!r}"
        )


async def first_difference(
    live: ReadModels, scratch: ScratchModels, collection: str
) -> Difference | None:
    """Walk both sides in key order; name the first document (and field) that differs."""
    rebuilt = scratch.collection(collection)
    offset = 0
    while True:
        page = await live.find(collection, limit=PAGE, offset=offset)
        for index, live_doc in enumerate(page, start=offset):
            if index >= len(rebuilt):
                return Difference(collection, _key_of(live_doc), None, live_doc, None)
            key, doc = rebuilt[index]
            if live_doc != doc:
                return await _explain(live, collection, key, doc, live_doc)
        offset += len(page)
        if len(page) < PAGE:
            break
    if offset < len(rebuilt):
        key, doc = rebuilt[offset]
        return Difference(collection, key, None, None, doc)
    return None


async def _explain(
    live: ReadModels, collection: str, key: str, doc: Doc, at_index: Doc
) -> Difference:
    stored = await live.get(collection, key)
    if stored is None:
        return Difference(collection, key, None, None, doc)
    if stored == doc:  # the live side has an extra document ordered before this key
        return Difference(collection, _key_of(at_index), None, at_index, None)
    for field in sorted(set(stored) | set(doc)):
        if stored.get(field) != doc.get(field):
            return Difference(collection, key, field, stored.get(field), doc.get(field))
    return Difference(collection, key, None, stored, doc)


def _key_of(doc: Doc) -> str:
    """A document the rebuild lacks has no key we know: show its identifying field."""
    for name in ("id", "name", "username", "host", "app"):
        if name in doc:
            return str(doc[name])
    return "?"


def events_until(at: str) -> Callable[[StoredEvent], bool]:
    """`at` is a log position or an ISO time; the predicate says whether an event is included."""
    if at.isdigit():
        position = int(at)
        return lambda event: event.position <= position
    moment = datetime.fromisoformat(at)
    if moment.tzinfo is None:
        raise ValueError("give the time with its zone, e.g. 2026-01-31T12:00:00+00:00")
    return lambda event: event.recorded_at <= moment


async def replay_state(store: Any, included: Callable[[StoredEvent], bool]) -> dict[str, list[Doc]]:
    """Tickets, releases and hosts as the projections had them after the included events."""
    end = await store.last_position()
    limits = {name: end for name in ("tickets", "releases", "hosts", "apps", "users")}
    models, _ = await fold(_prefix(log_batches(store, end), included), limits)
    return {
        name: [doc for _, doc in models.collection(name)]
        for name in ("tickets", "releases", "hosts")
    }


async def _prefix(
    batches: AsyncIterator[list[StoredEvent]], included: Callable[[StoredEvent], bool]
) -> AsyncIterator[list[StoredEvent]]:
    async for events in batches:
        kept = [e for e in events if included(e)]
        if kept:
            yield kept
        if len(kept) < len(events):  # the log is in time order: nothing later is included
            return


@dataclass(frozen=True)
class GoLive:
    at: datetime
    app: str
    version: int
    ticket_id: str
    approved_by: list[str]
    digest: str
    released_digest: str | None

    @property
    def digest_ok(self) -> bool:
        return self.digest == self.released_digest

    def as_json(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "app": self.app,
            "version": self.version,
            "ticket_id": self.ticket_id,
            "approved_by": self.approved_by,
            "digest": self.digest,
            "released_digest": self.released_digest,
            "digest_ok": self.digest_ok,
        }


async def host_history(
    store: Any, host: str, since: datetime | None, until: datetime | None
) -> list[GoLive]:
    """Every HostSyncCompleted of the host in the window, with its approvals and release digest."""
    approvals: dict[str, list[str]] = {}
    digests: dict[tuple[str, int], str] = {}
    found: list[tuple[StoredEvent, dict[str, Any]]] = []
    async for events in log_batches(store, await store.last_position(), batch=BATCH):
        for event in events:
            data = event.data
            if event.type == "ticket.approved":
                approvals.setdefault(data["ticket_id"], []).append(data["by"])
            elif event.type == "release.tagged":
                digests[(data["app"], data["version"])] = data["digest"]
            elif event.type == "host.sync_completed" and data["host"] == host:
                if (since is None or event.recorded_at >= since) and (
                    until is None or event.recorded_at <= until
                ):
                    found.append((event, data))
    return [
        GoLive(
            at=event.recorded_at,
            app=data["app"],
            version=data["version"],
            ticket_id=data["ticket_id"],
            approved_by=approvals.get(data["ticket_id"], []),
            digest=data["digest"],
            released_digest=digests.get((data["app"], data["version"])),
        )
        for event, data in found
    ]
