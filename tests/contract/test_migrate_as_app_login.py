"""The production recipe: the API logs in as its own role holding only `ferry_app`, after the
owner migrated once. Starting (migrate on start) must then work, and a schema that needs DDL
must say in one line who has to migrate."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from ferry_events.envelope import NewEvent
from ferry_events.schema_postgres import SchemaNotCurrent
from ferry_events.store_postgres import PostgresEventStore


@pytest.fixture
async def api_login(pg_url: str) -> AsyncIterator[str]:
    """A LOGIN role granted ferry_app, as the README tells ops to make; the URL it connects with."""
    name = f"ferry_api_{uuid.uuid4().hex[:8]}"
    owner = await PostgresEventStore.connect(pg_url)
    await owner.migrate(app_role="ferry_app")
    await owner.close()
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute(f"CREATE ROLE {name} LOGIN")
        await conn.execute(f"GRANT ferry_app TO {name}")
        host, database = pg_url.split("@", 1)[1].rsplit("/", 1)
        yield f"postgresql://{name}@{host}/{database}"
    finally:
        await conn.execute(f"REVOKE ferry_app FROM {name}")
        await conn.close()
        # The database (and the role's rights in it) go with pg_url; the role is cluster-wide.
        cleanup = await asyncpg.connect(pg_url.rsplit("/", 1)[0] + "/postgres")
        try:
            await cleanup.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            await cleanup.execute(f"DROP ROLE IF EXISTS {name}")
        finally:
            await cleanup.close()


async def test_the_app_login_starts_on_a_current_schema_and_appends(api_login: str) -> None:
    store = await PostgresEventStore.connect(api_login)
    try:
        await store.migrate(app_role="ferry_app")  # what FERRY_MIGRATE_ON_START=true does
        await store.append("s-1", [NewEvent(type="test.one", data={})], 0)
        assert await store.last_position() == 1 and (await store.verify()).ok
    finally:
        await store.close()


async def test_an_out_of_date_schema_names_who_must_migrate(pg_url: str, api_login: str) -> None:
    conn = await asyncpg.connect(pg_url)
    await conn.execute("UPDATE ferry_schema SET fingerprint = 'an older schema'")
    await conn.close()
    store = await PostgresEventStore.connect(api_login)
    try:
        with pytest.raises(SchemaNotCurrent, match="ferry-api migrate"):
            await store.migrate(app_role="ferry_app")
    finally:
        await store.close()
