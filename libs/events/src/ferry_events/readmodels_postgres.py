"""ReadModels on PostgreSQL: projection documents (jsonb) and checkpoints, in the event store's
database; PostgresEventStore inherits this with its connection pool."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ferry_events.readmodels_sql import Where, count_sql, find_sql
from ferry_events.store import DocKey, WrongExpectedVersion

# Compare-and-set of a checkpoint. A later commit must find the row at `expected`; a first one may
# create it (ON CONFLICT makes a racing first commit wait for the winner, then fail the WHERE).
_MOVE_CHECKPOINT = (
    "UPDATE checkpoints SET position = $3 WHERE name = $1 AND position = $2 RETURNING true"
)
_CREATE_CHECKPOINT = (
    "INSERT INTO checkpoints (name, position) VALUES ($1, $3) ON CONFLICT (name) DO UPDATE"
    " SET position = EXCLUDED.position WHERE checkpoints.position = $2 RETURNING true"
)
# Several checkpoints at once: their rows locked in name order, so that two commits of overlapping
# sets take their locks in the same order and cannot deadlock, then moved by one UPDATE.
_LOCK_CHECKPOINTS = (
    "SELECT name, position FROM checkpoints WHERE name = ANY($1::text[]) ORDER BY name FOR UPDATE"
)
_MOVE_CHECKPOINTS = (
    "UPDATE checkpoints SET position = moves.position"
    " FROM unnest($1::text[], $2::bigint[]) AS moves (name, position)"
    " WHERE checkpoints.name = moves.name"
)
_UPSERT_DOCUMENT = (
    "INSERT INTO documents (collection, key, doc) VALUES ($1, $2, $3::jsonb)"
    " ON CONFLICT (collection, key) DO UPDATE SET doc = EXCLUDED.doc"
)
_CHECKPOINT = "SELECT position FROM checkpoints WHERE name = $1"
_DELETE_DOCUMENT = "DELETE FROM documents WHERE collection = $1 AND key = $2"
Changes = Mapping[DocKey, dict[str, Any] | None]


class PostgresReadModels:
    _pool: Any  # an asyncpg pool

    async def checkpoint(self, name: str) -> int:
        return int(await self._pool.fetchval(_CHECKPOINT, name) or 0)

    async def commit(self, name: str, expected: int, position: int, changes: Changes) -> None:
        await self.commit_many([(name, expected, position, changes)])

    async def commit_many(self, commits: Sequence[tuple[str, int, int, Changes]]) -> None:
        """commit() of several projections in one transaction: all of them, or none."""
        changes = [change for *_, one in commits for change in one.items()]
        upserts = [(c, k, json.dumps(doc)) for (c, k), doc in changes if doc is not None]
        deletes = [(c, k) for (c, k), doc in changes if doc is None]
        async with self._pool.acquire() as connection, connection.transaction():
            await _move_checkpoints(connection, commits)
            if upserts:
                await connection.executemany(_UPSERT_DOCUMENT, upserts)
            if deletes:
                await connection.executemany(_DELETE_DOCUMENT, deletes)

    async def get(self, collection: str, key: str) -> dict[str, Any] | None:
        sql = "SELECT doc FROM documents WHERE collection = $1 AND key = $2"
        doc = await self._pool.fetchval(sql, collection, key)
        return None if doc is None else dict(json.loads(doc))

    async def find(
        self,
        collection: str,
        where: Where | None = None,
        order_by: str | None = None,
        descending: bool = False,
        limit: int = 100,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        sql, params = find_sql("postgres", collection, where, order_by, descending, limit, offset)
        return [dict(json.loads(row["doc"])) for row in await self._pool.fetch(sql, *params)]

    async def count(self, collection: str, where: Where | None = None) -> int:
        sql, params = count_sql("postgres", collection, where)
        return int(await self._pool.fetchval(sql, *params))

    async def reset(self, name: str, collections: Sequence[str]) -> None:
        async with self._pool.acquire() as connection, connection.transaction():
            sql = "DELETE FROM documents WHERE collection = ANY($1::text[])"
            await connection.execute(sql, list(collections))
            await connection.execute("DELETE FROM checkpoints WHERE name = $1", name)


async def _move_checkpoints(connection: Any, commits: Sequence[tuple[str, int, int, Any]]) -> None:
    """Compare-and-set of every commit's checkpoint from `expected` to `position`."""
    if len(commits) == 1:
        name, expected, position, _ = commits[0]
        await _move_checkpoint(connection, name, expected, position)
        return
    commits = sorted(commits, key=lambda commit: commit[0])  # first commits insert in order too
    rows = await connection.fetch(_LOCK_CHECKPOINTS, [name for name, *_ in commits])
    actual = {row["name"]: int(row["position"]) for row in rows}
    for name, expected, _, _ in commits:
        if actual.get(name, 0) != expected:
            raise WrongExpectedVersion(name, expected, actual.get(name, 0))
    moved = [(name, position) for name, _, position, _ in commits if name in actual]
    if moved:
        await connection.execute(_MOVE_CHECKPOINTS, *map(list, zip(*moved, strict=True)))
    for name, expected, position, _ in commits:
        if name not in actual:  # a first commit (expected 0): no row to lock yet
            await _move_checkpoint(connection, name, expected, position)


async def _move_checkpoint(connection: Any, name: str, expected: int, position: int) -> None:
    move = _CREATE_CHECKPOINT if expected == 0 else _MOVE_CHECKPOINT
    if not await connection.fetchval(move, name, expected, position):
        actual = await connection.fetchval(_CHECKPOINT, name)
        raise WrongExpectedVersion(name, expected, int(actual or 0))
