"""The PostgreSQL schema of the event store and read models: tables, the one-round-trip append
function (hash chain in SQL, same canonical text as chain.py), the append-only trigger, the role."""

from __future__ import annotations

import hashlib
import re
from typing import Any

from ferry_events.store import StoreError

APPEND_LOCK = 7_146_865_301  # pg_advisory_xact_lock key that serialises every append
MIGRATE_LOCK = 7_146_865_302  # held while migrating, so two processes cannot interleave DDL
EXCLUSIVE_LOCKS = 714_686  # classid of the two-int advisory locks behind exclusive(name)
CHANNEL = "ferry_events"  # NOTIFY channel; the payload is the last appended position
VERSION_CONFLICT = "FE409"  # SQLSTATE raised by ferry_append; DETAIL is the actual version

_ROLE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")

TABLES = """
CREATE TABLE IF NOT EXISTS events (
    position        bigint      PRIMARY KEY,
    stream          text        NOT NULL,
    version         integer     NOT NULL,
    event_id        uuid        NOT NULL UNIQUE,
    type            text        NOT NULL,
    schema_version  integer     NOT NULL,
    data            json        NOT NULL,   -- json, not jsonb: keeps the exact text that was hashed
    metadata        json        NOT NULL,
    recorded_at     timestamptz NOT NULL,
    hash            text        NOT NULL,
    UNIQUE (stream, version)
);
CREATE TABLE IF NOT EXISTS documents (
    collection  text  NOT NULL,
    key         text  NOT NULL,
    doc         jsonb NOT NULL,
    PRIMARY KEY (collection, key)  -- also the index find() and count() use for a collection
);
CREATE TABLE IF NOT EXISTS checkpoints (
    name      text   PRIMARY KEY,
    position  bigint NOT NULL
);
"""

# Ordering (see store_postgres.py): the transaction-level advisory lock makes appends take turns,
# so position = last + 1 is dense and a position is visible only after every lower one.
APPEND_FUNCTION = f"""
CREATE OR REPLACE FUNCTION ferry_append(
    p_stream text, p_expected integer, p_event_ids uuid[], p_types text[],
    p_schema_versions integer[], p_datas text[], p_metadatas text[],
    -- One row, not a set: a set-returning plpgsql function pays for a tuplestore.
    OUT last_position bigint, OUT last_version integer, OUT recorded_at timestamptz,
    OUT hashes text[]
) LANGUAGE plpgsql AS $fn$
DECLARE
    v_count integer := coalesce(cardinality(p_event_ids), 0);
    v_version integer;
    v_position bigint;
    v_hash text;
    v_hashes text[] := '{{}}';
    v_at timestamptz;
    v_at_text text;
BEGIN
    PERFORM pg_advisory_xact_lock({APPEND_LOCK});
    SELECT coalesce(max(e.version), 0) INTO v_version FROM events e WHERE e.stream = p_stream;
    IF p_expected IS NOT NULL AND p_expected <> v_version THEN
        RAISE EXCEPTION 'stream % is at version %, expected %', p_stream, v_version, p_expected
            USING ERRCODE = '{VERSION_CONFLICT}', DETAIL = v_version::text;
    END IF;
    SELECT e.position, e.hash INTO v_position, v_hash
    FROM events e ORDER BY e.position DESC LIMIT 1;
    v_position := coalesce(v_position, 0);
    v_hash := coalesce(v_hash, repeat('0', 64));
    v_at := clock_timestamp();
    v_at_text := to_char(v_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"');
    FOR i IN 1 .. v_count LOOP
        v_hash := encode(sha256(decode(v_hash, 'hex') || convert_to(concat_ws(E'\\n',
            p_event_ids[i]::text, p_stream, (v_version + i)::text, p_types[i],
            p_schema_versions[i]::text, v_at_text, p_datas[i], p_metadatas[i]), 'UTF8')), 'hex');
        v_hashes[i] := v_hash;
    END LOOP;
    -- One INSERT for the whole batch: a row-by-row INSERT costs a statement per event.
    INSERT INTO events (position, stream, version, event_id, type, schema_version, data, metadata,
                        recorded_at, hash)
    SELECT v_position + i, p_stream, v_version + i, p_event_ids[i], p_types[i],
           p_schema_versions[i], p_datas[i]::json, p_metadatas[i]::json, v_at, v_hashes[i]
    FROM generate_series(1, v_count) AS i;
    IF v_count > 0 THEN
        PERFORM pg_notify('{CHANNEL}', (v_position + v_count)::text);
    END IF;
    last_position := v_position + v_count;
    last_version := v_version + v_count;
    recorded_at := v_at;
    hashes := v_hashes;
END
$fn$;
"""

# Appends that queued up in one process while another was being written go in one transaction
# (one WAL flush for all: group commit). Each is its own subtransaction, so a conflict or a
# duplicate fails only that one; its SQLSTATE and DETAIL come back in errors[i] and details[i].
APPEND_GROUP_FUNCTION = """
CREATE OR REPLACE FUNCTION ferry_append_group(
    p_streams text[], p_expected integer[], p_counts integer[], p_event_ids uuid[],
    p_types text[], p_schema_versions integer[], p_datas text[], p_metadatas text[],
    OUT errors text[], OUT details text[], OUT last_positions bigint[],
    OUT last_versions integer[], OUT recorded_ats timestamptz[], OUT hashes text[]
) LANGUAGE plpgsql AS $fn$
DECLARE
    v_from integer := 1;
    v_to integer;
    v_appended record;
    v_error text;
    v_detail text;
    v_requests integer[] := ARRAY[cardinality(p_streams)];
BEGIN
    errors := array_fill(NULL::text, v_requests);  -- one slot per request, NULL = appended
    details := array_fill(NULL::text, v_requests);
    last_positions := array_fill(NULL::bigint, v_requests);
    last_versions := array_fill(NULL::integer, v_requests);
    recorded_ats := array_fill(NULL::timestamptz, v_requests);
    hashes := '{}';
    FOR r IN 1 .. cardinality(p_streams) LOOP
        v_to := v_from + p_counts[r] - 1;
        BEGIN
            SELECT * INTO v_appended FROM ferry_append(p_streams[r], p_expected[r],
                p_event_ids[v_from:v_to], p_types[v_from:v_to], p_schema_versions[v_from:v_to],
                p_datas[v_from:v_to], p_metadatas[v_from:v_to]);
            last_positions[r] := v_appended.last_position;
            last_versions[r] := v_appended.last_version;
            recorded_ats[r] := v_appended.recorded_at;
            hashes := hashes || v_appended.hashes;
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS v_error = RETURNED_SQLSTATE, v_detail = PG_EXCEPTION_DETAIL;
            errors[r] := v_error;
            details[r] := v_detail;
        END;
        v_from := v_to + 1;
    END LOOP;
END
$fn$;
"""

APPEND_ONLY_TRIGGER = """
CREATE OR REPLACE FUNCTION ferry_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    RAISE EXCEPTION 'the event log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$fn$;
CREATE OR REPLACE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION ferry_refuse_change();
CREATE OR REPLACE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION ferry_refuse_change();
"""


def role_statements(role: str) -> str:
    """Create the NOLOGIN application role if missing and grant it what the API needs.

    Roles are cluster-wide while the migrate lock is per database, so CREATE ROLE can still race
    with a migration of another database: losing that race is caught and ignored.
    """
    if not _ROLE_NAME.fullmatch(role):
        raise ValueError(f"role name {role!r} must be a plain lower-case SQL identifier")
    return f"""
DO $do$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN
        CREATE ROLE {role} NOLOGIN;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;  -- another migration created it a moment ago
END
$do$;
GRANT USAGE ON SCHEMA public TO {role};
GRANT SELECT, INSERT ON events TO {role};
REVOKE UPDATE, DELETE, TRUNCATE ON events FROM {role};
GRANT ALL ON documents, checkpoints TO {role};
GRANT EXECUTE ON FUNCTION ferry_append(text, integer, uuid[], text[], integer[], text[], text[])
    TO {role};
GRANT EXECUTE ON FUNCTION ferry_append_group(text[], integer[], integer[], uuid[], text[],
    integer[], text[], text[]) TO {role};
"""


class SchemaNotCurrent(StoreError):
    """The schema needs a migration that this database login may not run."""


def fingerprint(app_role: str) -> str:
    """Names the exact DDL a migration runs: equal fingerprints need no migration."""
    ddl = (
        TABLES,
        APPEND_FUNCTION,
        APPEND_GROUP_FUNCTION,
        APPEND_ONLY_TRIGGER,
        role_statements(app_role),
    )
    return hashlib.sha256("\n".join(ddl).encode()).hexdigest()


SCHEMA_MARK_TABLE = """
CREATE TABLE IF NOT EXISTS ferry_schema (
    id          integer PRIMARY KEY CHECK (id = 1),
    fingerprint text    NOT NULL
)"""
SCHEMA_MARK_SET = """
INSERT INTO ferry_schema (id, fingerprint) VALUES (1, $1)
    ON CONFLICT (id) DO UPDATE SET fingerprint = excluded.fingerprint"""


async def migrate(conn: Any, app_role: str) -> None:
    """Create or upgrade everything in one transaction, one migration at a time. A schema that is
    already current is left untouched, so a login holding only the application role (which may
    not run DDL) can start with migrate-on-start as well."""
    wanted = fingerprint(app_role)
    if await _current_fingerprint(conn) == wanted:
        return
    try:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATE_LOCK)
            await conn.execute(TABLES)
            await conn.execute(APPEND_FUNCTION)
            await conn.execute(APPEND_GROUP_FUNCTION)
            await conn.execute(APPEND_ONLY_TRIGGER)
            await conn.execute(role_statements(app_role))
            await conn.execute(SCHEMA_MARK_TABLE)
            await conn.execute(SCHEMA_MARK_SET, wanted)
            await conn.execute(f"GRANT SELECT ON ferry_schema TO {app_role}")
    except Exception as error:
        if getattr(error, "sqlstate", None) == "42501":  # insufficient_privilege
            raise SchemaNotCurrent(
                "the database schema is missing or out of date and this login may not change "
                "it: run `ferry-api migrate` once as the database owner"
            ) from error
        raise


async def _current_fingerprint(conn: Any) -> str | None:
    if await conn.fetchval("SELECT to_regclass('ferry_schema')") is None:
        return None
    value = await conn.fetchval("SELECT fingerprint FROM ferry_schema WHERE id = 1")
    return str(value) if value is not None else None
