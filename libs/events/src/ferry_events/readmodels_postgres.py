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
_UPSERT_DOCUMENT = (
    "INSERT INTO documents (collection, key, doc) VALUES ($1, $2, $3::jsonb)"
    " ON CONFLICT (collection, key) DO UPDATE SET doc = EXCLUDED.doc"
)


class PostgresReadModels:
    _pool: Any  # an asyncpg pool

    async def checkpoint(self, name: str) -> int:
        sql = "SELECT position FROM checkpoints WHERE name = $1"
        return int(await self._pool.fetchval(sql, name) or 0)

    async def commit(
        self,
        name: str,
        expected: int,
        position: int,
        changes: Mapping[DocKey, dict[str, Any] | None],
    ) -> None:
        upserts = [(c, k, json.dumps(doc)) for (c, k), doc in changes.items() if doc is not None]
        deletes = [(c, k) for (c, k), doc in changes.items() if doc is None]
        async with self._pool.acquire() as connection, connection.transaction():
            move = _CREATE_CHECKPOINT if expected == 0 else _MOVE_CHECKPOINT
            if not await connection.fetchval(move, name, expected, position):
                sql = "SELECT position FROM checkpoints WHERE name = $1"
                actual = await connection.fetchval(sql, name)
                raise WrongExpectedVersion(name, expected, int(actual or 0))
            await connection.executemany(_UPSERT_DOCUMENT, upserts)
            await connection.executemany(
                "DELETE FROM documents WHERE collection = $1 AND key = $2", deletes
            )

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
