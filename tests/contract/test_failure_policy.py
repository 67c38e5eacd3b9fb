"""The consumers' failure policy on the errors real drivers raise: an outage of the store or the
broker is held (never dead-lettered), a message that can never succeed is dead-lettered at once,
anything else is a bug, retried a few times.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import asyncpg
import pytest
from ferry_events.bus import NotConfirmed, Refused, Unavailable, Undeliverable, Unroutable
from ferry_events.failure_policy import Verdict, verdict
from ferry_events.store import StoreError

pytestmark = [pytest.mark.postgres]


async def raised(coroutine: object) -> BaseException:
    try:
        await coroutine  # type: ignore[misc]
    except Exception as error:
        return error
    raise AssertionError("nothing was raised")


async def test_postgres_outages_are_held_and_its_refusals_are_bugs(pg_url: str) -> None:
    admin = await asyncpg.connect(pg_url)
    victim = await asyncpg.connect(pg_url)
    try:
        await admin.execute("CREATE TABLE t (id int PRIMARY KEY)")
        await admin.execute("INSERT INTO t VALUES (1)")
        duplicate = await raised(admin.execute("INSERT INTO t VALUES (1)"))
        missing = await raised(admin.execute("SELECT * FROM no_such_table"))
        await admin.execute("SELECT pg_terminate_backend($1)", victim.get_server_pid())
        terminated = await raised(victim.fetchval("SELECT 1"))
        after = await raised(victim.fetchval("SELECT 1"))  # the closed connection, used again
    finally:
        await admin.close()
        victim.terminate()
    refused = await raised(asyncpg.connect("postgresql://postgres@127.0.0.1:1/postgres"))

    assert [verdict(e) for e in (terminated, after, refused)] == [Verdict.UNAVAILABLE] * 3
    assert [verdict(e) for e in (duplicate, missing)] == [Verdict.FAILED] * 2


def test_sqlite_locked_is_held_and_a_syntax_error_is_a_bug(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (id int)")
    holder.execute("BEGIN IMMEDIATE")
    waiter = sqlite3.connect(path, timeout=0)
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked") as locked:
            waiter.execute("INSERT INTO t VALUES (1)")
        with pytest.raises(sqlite3.OperationalError, match="syntax") as syntax:
            waiter.execute("INSER INTO t VALUES (1)")
    finally:
        waiter.close()
        holder.close()
    assert verdict(locked.value) is Verdict.UNAVAILABLE
    assert verdict(syntax.value) is Verdict.FAILED


def wrapped(error: Exception, by: Exception) -> Exception:
    try:
        raise by from error
    except Exception as outer:
        return outer


def test_the_chain_decides_and_the_outermost_verdict_wins() -> None:
    assert verdict(Unavailable("store")) is Verdict.UNAVAILABLE
    assert verdict(NotConfirmed("lost")) is Verdict.UNAVAILABLE
    assert verdict(wrapped(TimeoutError(), StoreError("unconfirmed"))) is Verdict.UNAVAILABLE
    assert verdict(Undeliverable("unknown type")) is Verdict.UNDELIVERABLE
    refusal = wrapped(ConnectionError("lost"), Undeliverable("unknown type"))
    assert verdict(refusal) is Verdict.UNDELIVERABLE
    # A misconfiguration needs an operator: retried, then dead-lettered with the reason.
    assert verdict(Unroutable("no queue")) is Verdict.FAILED
    assert verdict(Refused("no grant")) is Verdict.FAILED
    assert verdict(FileNotFoundError(2, "No such file")) is Verdict.FAILED
    assert verdict(ValueError("bug")) is Verdict.FAILED
    hidden = ValueError("bug")
    hidden.__context__ = ConnectionError("lost")
    hidden.__suppress_context__ = True  # `raise ... from None`: the outage is not its cause
    assert verdict(hidden) is Verdict.FAILED
