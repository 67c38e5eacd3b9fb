"""ReadModels on SQLite (projection documents and checkpoints), and the transaction and read
plumbing that SqliteEventStore, which inherits this, shares with them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import aiosqlite

from ferry_events.readmodels_sql import Where, count_sql, find_sql
from ferry_events.store import DocKey, WrongExpectedVersion

_UPSERT_DOCUMENT = (
    "INSERT INTO documents (collection, key, doc) VALUES (?, ?, ?)"
    " ON CONFLICT (collection, key) DO UPDATE SET doc = excluded.doc"
)
Changes = Mapping[DocKey, dict[str, Any] | None]


async def scalar(db: aiosqlite.Connection, sql: str, *params: object) -> Any:
    rows = list(await db.execute_fetchall(sql, params))
    return rows[0][0] if rows else None


class SqliteReadModels:
    _writer: aiosqlite.Connection  # BEGIN IMMEDIATE … COMMIT, one transaction at a time
    _reader: aiosqlite.Connection  # sees committed rows only (the writer itself for :memory:)
    _write_lock: asyncio.Lock
    _read_lock: asyncio.Lock

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._write_lock:
            try:
                await self._writer.execute("BEGIN IMMEDIATE")
                yield self._writer
                await self._writer.execute("COMMIT")
            except BaseException:
                # Also after a cancelled BEGIN: the connection's thread may still carry it out,
                # and this ROLLBACK is queued behind it.
                with contextlib.suppress(sqlite3.OperationalError):
                    await self._writer.execute("ROLLBACK")
                raise

    async def _read(self, sql: str, *params: object) -> list[Any]:
        async with self._read_lock:
            return list(await self._reader.execute_fetchall(sql, params))

    async def checkpoint(self, name: str) -> int:
        rows = await self._read("SELECT position FROM checkpoints WHERE name = ?", name)
        return int(rows[0][0]) if rows else 0

    async def commit(self, name: str, expected: int, position: int, changes: Changes) -> None:
        await self.commit_many([(name, expected, position, changes)])

    async def commit_many(self, commits: Sequence[tuple[str, int, int, Changes]]) -> None:
        """commit() of several projections in one transaction: all of them, or none."""
        changes = [change for *_, one in commits for change in one.items()]
        upserts = [(c, k, json.dumps(doc)) for (c, k), doc in changes if doc is not None]
        deletes = [(c, k) for (c, k), doc in changes if doc is None]
        async with self._transaction() as db:
            for name, expected, position, _ in commits:
                actual = await scalar(db, "SELECT position FROM checkpoints WHERE name = ?", name)
                if (actual or 0) != expected:
                    raise WrongExpectedVersion(name, expected, actual or 0)
                await db.execute(
                    "INSERT INTO checkpoints (name, position) VALUES (?, ?)"
                    " ON CONFLICT (name) DO UPDATE SET position = excluded.position",
                    (name, position),
                )
            await db.executemany(_UPSERT_DOCUMENT, upserts)
            await db.executemany("DELETE FROM documents WHERE collection = ? AND key = ?", deletes)

    async def get(self, collection: str, key: str) -> dict[str, Any] | None:
        sql = "SELECT doc FROM documents WHERE collection = ? AND key = ?"
        rows = await self._read(sql, collection, key)
        return dict(json.loads(rows[0][0])) if rows else None

    async def find(
        self,
        collection: str,
        where: Where | None = None,
        order_by: str | None = None,
        descending: bool = False,
        limit: int = 100,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        sql, params = find_sql("sqlite", collection, where, order_by, descending, limit, offset)
        return [dict(json.loads(row[0])) for row in await self._read(sql, *params)]

    async def count(self, collection: str, where: Where | None = None) -> int:
        sql, params = count_sql("sqlite", collection, where)
        return int((await self._read(sql, *params))[0][0])

    async def reset(self, name: str, collections: Sequence[str]) -> None:
        async with self._transaction() as db:
            await db.executemany(
                "DELETE FROM documents WHERE collection = ?", [(c,) for c in collections]
            )
            await db.execute("DELETE FROM checkpoints WHERE name = ?", (name,))
