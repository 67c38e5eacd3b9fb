"""Appends to the PostgreSQL log: each one round trip (ferry_append), and group commit for the
appends that queue up in this process while another is being written (ferry_append_group).

Appends take turns anyway (one global order), so eight concurrent appends would otherwise pay
eight WAL flushes one after another; grouped, the ones that waited share the next flush. Each
still succeeds or fails on its own: a conflict or duplicate in the group fails only its append.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from ferry_events.envelope import NewEvent, StoredEvent
from ferry_events.event_texts import data_texts, metadata_texts, stored_events
from ferry_events.schema_postgres import VERSION_CONFLICT
from ferry_events.store import DuplicateEvent, StoreError, WrongExpectedVersion

_APPEND = "SELECT * FROM ferry_append($1, $2, $3, $4, $5, $6, $7)"
_APPEND_GROUP = "SELECT * FROM ferry_append_group($1, $2, $3, $4, $5, $6, $7, $8)"
_UNIQUE_VIOLATION = "23505"
_DUPLICATE_ID = re.compile(r"\(event_id\)=\(([0-9a-f-]+)\)")


@dataclass(eq=False)
class _Append:
    """One caller's append, waiting in the queue or written; eq=False: found by identity."""

    stream: str
    events: Sequence[NewEvent]
    expected: int | None
    datas: list[str]
    metadatas: list[str]
    stored: list[StoredEvent] | None = None
    error: BaseException | None = None

    def written(self, last_position: int, last_version: int, at: datetime, hashes: Any) -> None:
        first, first_version = last_position - len(self.events), last_version - len(self.events)
        self.stored = stored_events(
            (first + i, self.stream, first_version + i, event.event_id, event.type,
             event.schema_version, data, metadata, at, hash_)
            for i, (event, data, metadata, hash_) in enumerate(
                zip(self.events, self.datas, self.metadatas, hashes, strict=True), start=1
            )
        )  # fmt: skip

    def failed(self, sqlstate: str | None, detail: str | None) -> bool:
        """Record a conflict or a duplicate as this append's error; False for anything else."""
        if sqlstate == VERSION_CONFLICT and self.expected is not None and detail:
            self.error = WrongExpectedVersion(self.stream, self.expected, int(detail))
        elif sqlstate == _UNIQUE_VIOLATION:
            found = _DUPLICATE_ID.search(detail or "")
            self.error = DuplicateEvent(found[1] if found else str(self.events[0].event_id))
        return self.error is not None


class PostgresAppender:
    def __init__(self, pool: Any) -> None:
        self._pool = pool
        self._queued: list[_Append] = []
        self._writing = asyncio.Lock()

    async def append(
        self, stream: str, events: Sequence[NewEvent], expected_version: int | None
    ) -> list[StoredEvent]:
        request = _Append(
            stream, events, expected_version, data_texts(events), metadata_texts(events)
        )
        self._queued.append(request)
        try:
            async with self._writing:
                if request in self._queued:  # else the writer before us took it along
                    group, self._queued = self._queued, []
                    await self._write(group)
        except BaseException:
            if request in self._queued:
                self._queued.remove(request)  # cancelled while waiting: never written
            raise
        if request.error is not None:
            raise request.error
        assert request.stored is not None
        return request.stored

    async def _write(self, group: list[_Append]) -> None:
        try:
            if len(group) == 1:
                await self._write_one(group[0])
            else:
                await self._write_group(group)
        except BaseException as error:
            for request in group:
                if request.stored is None and request.error is None:
                    request.error = StoreError(
                        f"append to {request.stream!r} unconfirmed: {error!r}"
                    )
                    # Chained, so a consumer sees the outage behind it (failure_policy).
                    request.error.__cause__ = error
            raise

    async def _write_one(self, request: _Append) -> None:
        events = request.events
        try:
            row = await self._pool.fetchrow(
                _APPEND,
                request.stream,
                request.expected,
                [event.event_id for event in events],
                [event.type for event in events],
                [event.schema_version for event in events],
                request.datas,
                request.metadatas,
            )
        except asyncpg.PostgresError as error:
            if request.failed(error.sqlstate, error.detail):
                return
            raise
        request.written(
            row["last_position"], row["last_version"], row["recorded_at"], row["hashes"]
        )

    async def _write_group(self, group: list[_Append]) -> None:
        row = await self._pool.fetchrow(
            _APPEND_GROUP,
            [request.stream for request in group],
            [request.expected for request in group],
            [len(request.events) for request in group],
            [event.event_id for request in group for event in request.events],
            [event.type for request in group for event in request.events],
            [event.schema_version for request in group for event in request.events],
            [data for request in group for data in request.datas],
            [metadata for request in group for metadata in request.metadatas],
        )
        hashes = iter(row["hashes"])
        unexpected = []
        for i, request in enumerate(group):
            if row["errors"][i] is None:
                request.written(
                    row["last_positions"][i],
                    row["last_versions"][i],
                    row["recorded_ats"][i],
                    [next(hashes) for _ in request.events],
                )
            elif not request.failed(row["errors"][i], row["details"][i]):
                unexpected.append(request)
        for request in unexpected:  # written alone, its error surfaces as itself
            try:
                await self._write_one(request)
            except Exception as error:  # handed to the caller waiting for it
                request.error = error
