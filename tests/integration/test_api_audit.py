"""`ferry-api audit` against a real log (Postgres, the real API and its workers): verify names the
first tampered event or differing read-model document, replay gives what the API said at each
moment, host history, and export streams 100k events in bounded memory."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest
from api_client import Api
from ferry_events.backends import open_store
from ferry_events.envelope import NewEvent
from stand_in_agents import Ferry, stand_ins

pytestmark = [pytest.mark.postgres]

EXPORT_EVENTS, EXPORT_BATCH = 100_000, 1000
PEAK_RSS_BOUND_MB = 150


@pytest.fixture
async def ferry(api: Api) -> AsyncIterator[Ferry]:
    async with stand_ins(api) as stack:
        yield stack


async def ferry_api_audit(database_url: str, *args: str) -> tuple[int, str, str]:
    """Run `ferry-api audit …` as its own process: (exit code, stdout, stderr)."""
    env = {**os.environ, "FERRY_DATABASE_URL": database_url}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ferry_api.main",
        "audit",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def database_url(ferry: Ferry) -> str:
    return ferry.runtime.settings.database_url


async def test_verify_names_a_changed_document_then_a_tampered_event(ferry: Ferry) -> None:
    await ferry.add_app("shop")
    published = await ferry.to_state("published", "shop")
    await ferry.to_state("testing", "shop")
    await ferry.runtime.projector.catch_up()
    url = database_url(ferry)

    code, out, err = await ferry_api_audit(url, "verify")
    assert code == 0, out + err
    assert out.startswith("OK:")

    connection = await asyncpg.connect(url)
    try:
        await connection.execute(
            "UPDATE documents SET doc = jsonb_set(doc, '{state}', '\"cancelled\"')"
            " WHERE collection = 'tickets' AND key = $1",
            published,
        )
        code, out, err = await ferry_api_audit(url, "verify")
        assert code == 2, out + err
        assert f"collection 'tickets', key '{published}', field 'state'" in out
        assert "live 'cancelled', rebuilt 'published'" in out

        await connection.execute("SET session_replication_role = replica")
        await connection.execute(
            'UPDATE events SET data = \'{"reason":"forged"}\' WHERE position = 5'
        )
        code, out, err = await ferry_api_audit(url, "verify")
    finally:
        await connection.close()
    assert code == 1, out + err
    assert "BROKEN at position 5" in out


async def test_replay_gives_each_ticket_as_the_api_showed_it_then(ferry: Ferry) -> None:
    await ferry.add_app("shop")
    ticket_id = await ferry.submit("dev", "shop")
    seen: list[tuple[str, dict[str, object]]] = []

    timeline = (await ferry.get("dev", f"/tickets/{ticket_id}/events")).json()["events"]
    seen.append((str(timeline[-1]["position"]), await ferry.ticket(ticket_id)))
    await ferry.stage(ticket_id)
    seen.append((datetime.now(UTC).isoformat(), await ferry.ticket(ticket_id)))
    await ferry.act("dev", ticket_id, "pass-tests")
    await ferry.act("lead", ticket_id, "approve", comment="looks good")
    seen.append((datetime.now(UTC).isoformat(), await ferry.ticket(ticket_id)))
    await ferry.act("dev", ticket_id, "publish")
    await ferry.tag(ticket_id)
    for host in ("web-1", "web-2"):
        await ferry.sync(ticket_id, host)
    await ferry.wait_state(ticket_id, "published")

    states = []
    for at, shown in seen:
        code, out, err = await ferry_api_audit(database_url(ferry), "replay", "--at", at, "--json")
        assert code == 0, out + err
        replayed = {doc["id"]: doc for doc in json.loads(out)["tickets"]}[ticket_id]
        assert replayed == {name: shown[name] for name in replayed}
        states.append(replayed["state"])
    assert states == ["staging_pending", "testing", "approved"]

    code, out, err = await ferry_api_audit(database_url(ferry), "host", "web-2", "--json")
    assert code == 0, out + err
    [went_live] = json.loads(out)
    assert (went_live["ticket_id"], went_live["version"], went_live["approved_by"]) == (
        ticket_id,
        1,
        ["lead"],
    )
    assert went_live["digest_ok"] is True


async def append_filler(url: str) -> None:
    store = await open_store(url)
    try:
        await store.migrate()
        for batch in range(EXPORT_EVENTS // EXPORT_BATCH):
            events = [
                NewEvent(type="test.filler", data={"batch": batch, "n": n, "pad": "x" * 200})
                for n in range(EXPORT_BATCH)
            ]
            await store.append(f"filler-{batch}", events, expected_version=0)
    finally:
        await store.close()


def peak_rss_kib(pid: int) -> int:
    """The process's own peak RSS (VmHWM); 0 once it has exited. Not getrusage: a child's
    ru_maxrss counts the parent's pages it shared before exec."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except FileNotFoundError:
        pass
    return 0


async def test_export_streams_the_whole_log_in_bounded_memory(pg_url: str) -> None:
    await append_filler(pg_url)

    def export() -> tuple[int, int, int, str]:
        env = {**os.environ, "FERRY_DATABASE_URL": pg_url}
        command = [sys.executable, "-m", "ferry_api.main", "audit", "export"]
        with subprocess.Popen(command, env=env, stdout=subprocess.PIPE) as process:
            assert process.stdout is not None
            lines, last, peak_kib = 0, "", 0
            for line in process.stdout:
                lines, last = lines + 1, line.decode()
                if lines % 5000 == 0:
                    peak_kib = max(peak_kib, peak_rss_kib(process.pid))
            peak_kib = max(peak_kib, peak_rss_kib(process.pid))
            return process.wait(), lines, peak_kib, last

    code, lines, peak_kib, last = await asyncio.to_thread(export)
    print(f"export of {lines} events: peak RSS {peak_kib / 1024:.1f} MiB")
    assert peak_kib > 0
    assert code == 0
    assert lines == EXPORT_EVENTS
    final = json.loads(last)
    assert final["position"] == EXPORT_EVENTS and len(final["hash"]) == 64
    assert peak_kib / 1024 < PEAK_RSS_BOUND_MB
