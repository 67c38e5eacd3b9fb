"""The API anchors its log's head outside the database, and `ferry-api audit verify` checks the
anchors: a tail cut off the log, which the hash chain alone cannot see, fails with exit code 3."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest
from api_client import make_api_settings, serving_api
from ferry_events.anchors import open_sink
from ferry_events.signing import generate_key
from test_api_audit import ferry_api_audit

pytestmark = [pytest.mark.postgres]


async def wait_for_anchor(sink: Path, position: int) -> None:
    for _ in range(100):
        if [a for a in open_sink(str(sink)).read() if a.position >= position]:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"no anchor at or past position {position} in {sink}")


async def test_a_cut_tail_is_caught_by_the_anchors(
    pg_url: str, amqp_url: str, tmp_path: Path
) -> None:
    key, sink = tmp_path / "api.key", tmp_path / "anchors"
    generate_key(key)
    settings = make_api_settings(
        pg_url, amqp_url, tmp_path, signing_key_file=key, anchor_sink=str(sink)
    )
    async with serving_api(settings) as api:
        await api.user("alice")
        head = await api.runtime.store.last_position()
        await wait_for_anchor(sink, head)
    args = ("verify", "--anchors", str(sink), "--trusted-keys", f"{key}.pub")

    code, out, err = await ferry_api_audit(pg_url, *args)
    assert code == 0, out + err
    assert "anchors OK" in out

    connection = await asyncpg.connect(pg_url)
    try:
        await connection.execute("SET session_replication_role = replica")
        # What the attacker did: cut the tail and clear the read models with it.
        await connection.execute("DELETE FROM events WHERE position = $1", head)
        await connection.execute("DELETE FROM documents")
        await connection.execute("DELETE FROM checkpoints")
    finally:
        await connection.close()
    code, out, err = await ferry_api_audit(pg_url, *args)
    assert code == 3, out + err
    assert "hash chain intact" in out  # the chain alone says OK
    assert f"position {head}" in out and "cut" in out
