"""The EventStore contract: every test runs against SqliteEventStore and PostgresEventStore (the
store_url fixture), so the embedded store is proven to behave like the production one."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from ferry_events.backends import open_store
from ferry_events.chain import GENESIS, canonical_event, canonical_json, format_time, link
from ferry_events.envelope import Metadata, NewEvent, StoredEvent
from ferry_events.registry import UnknownEvent
from ferry_events.store import DuplicateEvent, WrongExpectedVersion
from ferry_events.store_postgres import PostgresEventStore
from ferry_events.store_sqlite import SqliteEventStore

Store = PostgresEventStore | SqliteEventStore
Connect = Callable[[], Awaitable[Store]]


@pytest.fixture
async def connect(store_url: str) -> AsyncIterator[Connect]:
    """Opens stores on the test's database (each its own connections), closed at the end."""
    opened: list[Store] = []

    async def open_one() -> Store:
        opened.append(await open_store(store_url))
        return opened[-1]

    yield open_one
    for store in opened:
        await store.close()


@pytest.fixture
async def store(connect: Connect) -> Store:
    opened = await connect()
    await opened.migrate()
    return opened


def event(type_: str = "test.happened", **data: object) -> NewEvent:
    return NewEvent(type=type_, data=dict(data))


async def tamper(url: str, *statements: str) -> None:
    """Change the log behind the store's back, as whoever owns the database server could."""
    if url.startswith("sqlite://"):
        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite://"))) as db:
            db.isolation_level = None
            db.execute("DROP TRIGGER events_no_update")
            db.execute("DROP TRIGGER events_no_delete")
            for statement in statements:
                db.execute(statement)
        return
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("SET session_replication_role = replica")  # triggers off
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


async def test_round_trip_keeps_every_field(store: Store, connect: Connect) -> None:
    meta = Metadata(actor="alice", correlation_id="c-1", causation_id="m-9", request="r-7")
    first = NewEvent(
        type="ticket.submitted",
        schema_version=2,
        metadata=meta,
        data={"ticket_id": "t-1", "reason": "Grüße ☃", "hosts": ["a", "b"], "n": 1.5},
    )
    second = event("ticket.approved", ticket_id="t-1", by="bob")
    before = datetime.now(UTC)

    stored = await store.append("ticket-t-1", [first, second], 0)

    assert [(e.position, e.version, e.stream) for e in stored] == [
        (1, 1, "ticket-t-1"),
        (2, 2, "ticket-t-1"),
    ]
    assert stored[0].event_id == first.event_id and stored[1].event_id == second.event_id
    assert (stored[0].type, stored[0].schema_version) == ("ticket.submitted", 2)
    assert stored[0].data == first.data
    assert stored[0].metadata == meta and stored[0].metadata.model_extra == {"request": "r-7"}
    assert before - timedelta(seconds=5) < stored[0].recorded_at < before + timedelta(seconds=5)
    assert all(len(e.hash) == 64 and e.hash != GENESIS for e in stored)
    assert stored[0].hash != stored[1].hash
    assert await store.read_stream("ticket-t-1") == stored
    assert await store.read_stream("ticket-t-1", after_version=1) == stored[1:]
    assert await store.read_all() == stored
    assert await store.stream_version("ticket-t-1") == 2
    assert await store.stream_version("ticket-none") == 0
    assert await store.last_position() == 2
    reopened = await connect()
    assert await reopened.read_all() == stored


async def test_hash_is_the_chain_over_canonical_text(store: Store) -> None:
    stored = await store.append("app-shop", [event(b=2, a="é"), event(x=None)], 0)
    previous = GENESIS
    for e in stored:
        text = canonical_event(
            str(e.event_id),
            e.stream,
            e.version,
            e.type,
            e.schema_version,
            format_time(e.recorded_at),
            canonical_json(e.data),
            canonical_json(e.metadata.model_dump(mode="json", exclude_none=True)),
        )
        assert e.hash == link(previous, text)
        previous = e.hash


async def test_read_all_pages_in_global_order(store: Store) -> None:
    for n in range(5):
        await store.append(f"stream-{n % 2}", [event(n=n)], None)
    first, rest = await store.read_all(0, limit=2), await store.read_all(after=2, limit=100)
    assert [e.position for e in first] == [1, 2]
    assert [e.data["n"] for e in first + rest] == [0, 1, 2, 3, 4]
    assert await store.read_all(after=5) == []


async def test_expected_version_is_checked_and_a_conflict_writes_nothing(store: Store) -> None:
    await store.append("ticket-1", [event()], 0)
    with pytest.raises(WrongExpectedVersion) as raised:
        await store.append("ticket-1", [event(), event()], 0)
    assert (raised.value.stream, raised.value.expected, raised.value.actual) == ("ticket-1", 0, 1)
    with pytest.raises(WrongExpectedVersion):
        await store.append("ticket-1", [event()], 2)
    with pytest.raises(WrongExpectedVersion):
        await store.append("ticket-new", [event()], 1)
    assert await store.last_position() == 1
    await store.append("ticket-1", [event()], 1)
    await store.append("ticket-1", [event()], None)
    assert await store.stream_version("ticket-1") == 3
    assert (await store.verify()).ok


async def test_duplicate_event_id_is_refused_and_the_batch_writes_nothing(store: Store) -> None:
    original = event(n=1)
    await store.append("ticket-1", [original], 0)
    again = NewEvent(event_id=original.event_id, type="test.happened", data={"n": 2})

    with pytest.raises(DuplicateEvent) as raised:
        await store.append("ticket-2", [event(n=0), again], None)
    assert raised.value.event_id == str(original.event_id)
    twice = event(n=3)
    with pytest.raises(DuplicateEvent):
        await store.append("ticket-3", [twice, twice], 0)

    assert [e.data for e in await store.read_all()] == [{"n": 1}]
    assert await store.stream_version("ticket-2") == 0
    assert (await store.append("ticket-2", [event()], 0))[0].position == 2


async def test_racing_appends_to_one_stream_exactly_one_wins(
    store: Store, connect: Connect
) -> None:
    writers = [store, await connect(), await connect(), await connect()]
    for stream, expected in [("ticket-new", 0), ("ticket-new", 1), ("ticket-other", 0)]:
        results = await asyncio.gather(
            *(w.append(stream, [event(by=i)], expected) for i, w in enumerate(writers)),
            return_exceptions=True,
        )
        won = [r for r in results if isinstance(r, list)]
        assert len(won) == 1, results
        assert all(isinstance(r, WrongExpectedVersion) for r in results if r not in won)
        assert await store.stream_version(stream) == expected + 1
    assert [e.position for e in await store.read_all()] == [1, 2, 3]


async def test_concurrent_writers_get_dense_positions_and_an_intact_chain(
    store: Store, connect: Connect
) -> None:
    writers = [store, await connect(), await connect()]

    async def write(w: int) -> None:
        for i in range(10):
            await writers[w].append(f"stream-{w}-{i % 3}", [event(), event()], None)

    await asyncio.gather(*(write(w) for w in range(len(writers))))
    events = await store.read_all()
    assert [e.position for e in events] == list(range(1, 61))
    assert (await store.verify()).ok


async def test_concurrent_appends_on_one_store_succeed_or_fail_each_on_its_own(
    store: Store,
) -> None:
    """Appends that queue up behind each other may be written together (Postgres groups them
    into one transaction); a conflict or duplicate among them fails that append alone."""
    taken = event(n=0)
    await store.append("seed", [taken], 0)
    reused = NewEvent(event_id=taken.event_id, type="test.happened", data={})
    attempts = [store.append("contested", [event(i=i)], 0) for i in range(4)]
    attempts += [store.append(f"own-{i}", [event(), event()], 0) for i in range(6)]
    attempts += [store.append("dup", [event(), reused], None)]
    results = await asyncio.gather(*attempts, return_exceptions=True)

    contested, own, duplicate = results[:4], results[4:10], results[10]
    assert sum(isinstance(r, list) for r in contested) == 1, contested
    assert sum(isinstance(r, WrongExpectedVersion) for r in contested) == 3
    assert all(isinstance(r, list) and [e.version for e in r] == [1, 2] for r in own), own
    assert isinstance(duplicate, DuplicateEvent) and duplicate.event_id == str(taken.event_id)
    events = await store.read_all()
    assert [e.position for e in events] == list(range(1, 15))
    assert {e.stream for e in events} == {"seed", "contested"} | {f"own-{i}" for i in range(6)}
    returned = [e for r in results if isinstance(r, list) for e in r]
    assert sorted(returned, key=lambda e: e.position) == events[1:]
    assert (await store.verify()).ok


class SlowWriter:
    """Writer A: appends one event in a transaction it keeps open until told to commit."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.event_id = uuid.uuid4()
        self._pg: asyncpg.Connection | None = None
        self._pg_transaction: asyncpg.transaction.Transaction | None = None
        self._sqlite: sqlite3.Connection | None = None

    async def begin_and_append(self) -> None:
        if self.url.startswith("sqlite://"):
            self._sqlite = sqlite3.connect(self.url.removeprefix("sqlite://"))
            self._sqlite.isolation_level = None
            self._sqlite.execute("BEGIN IMMEDIATE")
            at = format_time(datetime.now(UTC))
            text = canonical_event(str(self.event_id), "slow", 1, "test.slow", 1, at, "{}", "{}")
            self._sqlite.execute(
                "INSERT INTO events VALUES (1, 'slow', 1, ?, 'test.slow', 1, '{}', '{}', ?, ?)",
                (str(self.event_id), at, link(GENESIS, text)),
            )
            return
        self._pg = await asyncpg.connect(self.url)
        self._pg_transaction = self._pg.transaction()
        await self._pg_transaction.start()
        await self._pg.fetchrow(
            "SELECT * FROM ferry_append('slow', NULL, $1, '{test.slow}', '{1}', '{\"{}\"}',"
            " '{\"{}\"}')",
            [self.event_id],
        )

    async def commit(self) -> None:
        if self._sqlite is not None:
            self._sqlite.execute("COMMIT")
            self._sqlite.close()
        if self._pg is not None and self._pg_transaction is not None:
            await self._pg_transaction.commit()
            await self._pg.close()


async def test_tailing_reader_never_skips_an_event_that_commits_late(
    store: Store, store_url: str
) -> None:
    writer_a = SlowWriter(store_url)
    await writer_a.begin_and_append()
    seen: list[StoredEvent] = []
    stop = asyncio.Event()

    async def tail() -> None:
        while not stop.is_set():
            seen.extend(await store.read_all(after=seen[-1].position if seen else 0))
            await asyncio.sleep(0.01)

    reader = asyncio.create_task(tail())
    writer_b = asyncio.create_task(store.append("fast", [event("test.fast")], None))
    await asyncio.sleep(0.5)
    assert not writer_b.done(), "B must wait for A's open transaction"
    assert seen == [], "nothing is visible while A is open"

    await writer_a.commit()
    b_events = await asyncio.wait_for(writer_b, 10)
    await asyncio.sleep(0.1)
    stop.set()
    await reader

    assert [(e.position, e.stream) for e in seen] == [(1, "slow"), (2, "fast")]
    assert seen[0].event_id == writer_a.event_id and seen[1] == b_events[0]
    assert (await store.verify()).ok


@pytest.mark.parametrize(
    ("statements", "problem"),
    [
        (["UPDATE events SET data = '{\"amount\":1000}' WHERE position = 2"], "modified"),
        (["DELETE FROM events WHERE position = 2"], "missing"),
        (
            [
                "UPDATE events SET position = -1 WHERE position = 2",
                "UPDATE events SET position = 2 WHERE position = 3",
                "UPDATE events SET position = 3 WHERE position = -1",
            ],
            "reordered",
        ),
    ],
    ids=["edit", "delete", "reorder"],
)
async def test_verify_names_the_first_tampered_event(
    store: Store, store_url: str, statements: list[str], problem: str
) -> None:
    for amount in (1, 2, 3, 4):
        await store.append("app-shop", [event(amount=amount)], None)
    assert (await store.verify()).ok and (await store.verify()).events == 4

    await tamper(store_url, *statements)

    report = await store.verify()
    assert not report.ok
    assert report.position == 2 and report.events == 1
    assert problem in (report.problem or "")
    assert "position 2" in str(report)


async def test_the_log_refuses_update_and_delete(store: Store, store_url: str) -> None:
    await store.append("app-shop", [event()], 0)
    for statement in ("UPDATE events SET type = 'x'", "DELETE FROM events"):
        if store_url.startswith("sqlite://"):
            with contextlib.closing(sqlite3.connect(store_url.removeprefix("sqlite://"))) as db:
                with pytest.raises(sqlite3.DatabaseError, match="append-only"):
                    db.execute(statement)
        else:
            conn = await asyncpg.connect(store_url)
            try:
                with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
                    await conn.execute(statement)
            finally:
                await conn.close()
    assert (await store.verify()).ok


async def test_migrate_is_idempotent_also_when_two_run_at_once(connect: Connect) -> None:
    first, second = await connect(), await connect()
    await asyncio.gather(first.migrate(), second.migrate())
    await first.migrate()
    await first.append("app-shop", [event()], 0)
    await second.migrate()
    assert [e.stream for e in await second.read_all()] == ["app-shop"]


async def test_unknown_event_types_round_trip_untouched(store: Store) -> None:
    foreign = NewEvent(
        type="someone.elses",
        schema_version=7,
        data={"nested": {"list": [1, "two", None, True]}, "big": 2**62},
    )
    await store.append("other-1", [foreign], 0)
    (stored,) = await store.read_all()
    assert (stored.type, stored.schema_version, stored.data) == ("someone.elses", 7, foreign.data)
    payload = stored.payload()
    assert isinstance(payload, UnknownEvent) and payload.data == foreign.data


async def test_subscribe_yields_the_backlog_then_wakes_at_once_on_append(store: Store) -> None:
    await store.append("app-shop", [event(n=1)], 0)
    subscription = store.subscribe(after=0, poll_seconds=30)
    assert [e.data for e in await anext(subscription)] == [{"n": 1}]

    waiting = asyncio.ensure_future(anext(subscription))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    started = asyncio.get_running_loop().time()
    await store.append("app-shop", [event(n=2)], 1)
    batch = await asyncio.wait_for(waiting, 10)
    assert [e.data for e in batch] == [{"n": 2}]
    assert asyncio.get_running_loop().time() - started < 2
    await subscription.aclose()


async def test_subscribe_sees_another_writers_appends(store: Store, connect: Connect) -> None:
    other = await connect()
    subscription = store.subscribe(after=0, poll_seconds=0.2)
    waiting = asyncio.ensure_future(anext(subscription))
    await asyncio.sleep(0.3)
    await other.append("app-shop", [event()], 0)
    assert [e.stream for e in await asyncio.wait_for(waiting, 10)] == ["app-shop"]
    await subscription.aclose()


async def test_exclusive_admits_one_holder_at_a_time(store: Store, connect: Connect) -> None:
    other = await connect()
    async with store.exclusive("relay") as held:
        assert held
        async with other.exclusive("relay") as also:
            assert not also
        async with other.exclusive("projection-x") as different:
            assert different
    async with other.exclusive("relay") as after_release:
        assert after_release


async def test_memory_store_is_a_throwaway() -> None:
    first, second = await open_store("sqlite:///:memory:"), await open_store("sqlite:///:memory:")
    try:
        await first.migrate()
        await second.migrate()
        await first.append("app-shop", [event()], 0)
        assert await first.last_position() == 1 and await second.last_position() == 0
        async with first.exclusive("relay") as held, first.exclusive("relay") as again:
            assert held and not again
        assert (await first.verify()).ok
    finally:
        await first.close()
        await second.close()


# --- PostgreSQL only: the application role ----------------------------------------------------


async def test_app_role_may_append_and_read_but_not_change_the_log(pg_url: str) -> None:
    owner = await PostgresEventStore.connect(pg_url)
    app = await PostgresEventStore.connect(pg_url + "?role=ferry_app")  # as the API connects
    conn = await asyncpg.connect(pg_url)
    try:
        await owner.migrate(app_role="ferry_app")
        await owner.migrate(app_role="ferry_app")
        await app.append("ticket-1", [event(n=1)], 0)
        await app.commit("tickets", 0, 1, {("tickets", "t-1"): {"state": "new"}})
        assert [e.data for e in await app.read_all()] == [{"n": 1}]

        await conn.execute("SET ROLE ferry_app")
        assert await conn.fetchval("SELECT current_user") == "ferry_app"
        for statement in ("UPDATE events SET type = 'x'", "DELETE FROM events", "TRUNCATE events"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
                await conn.execute(statement)
        await conn.execute("UPDATE documents SET doc = '{}'")
        await conn.execute("DELETE FROM checkpoints")
        await conn.execute(
            "SELECT * FROM ferry_append('ticket-2', 0, $1, '{test.x}', '{1}',"
            " '{\"{}\"}', '{\"{}\"}')",
            [uuid.uuid4()],
        )
        assert await owner.last_position() == 2 and (await owner.verify()).ok
    finally:
        await conn.close()
        await app.close()
        await owner.close()


async def test_role_is_not_a_login_role(pg_url: str) -> None:
    store = await PostgresEventStore.connect(pg_url)
    try:
        await store.migrate(app_role="ferry_app")
    finally:
        await store.close()
    conn = await asyncpg.connect(pg_url)
    try:
        assert (
            await conn.fetchval("SELECT rolcanlogin FROM pg_roles WHERE rolname = 'ferry_app'")
            is False
        )
    finally:
        await conn.close()
