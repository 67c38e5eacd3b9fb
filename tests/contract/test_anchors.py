"""Anchors of the log's head, on both stores and both sinks: a tail cut off the log, which the
hash chain alone cannot see, fails the check; an intact log passes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from ferry_events.anchors import (
    Anchor,
    AnchorError,
    AnchorSink,
    anchor_head,
    check_anchors,
    make_anchor,
    open_sink,
)
from ferry_events.backends import open_store
from ferry_events.envelope import NewEvent
from ferry_events.signing import key_id_of
from test_store import tamper

pytestmark = pytest.mark.parametrize("store_url", ["sqlite", "postgres"], indirect=True)


@pytest.fixture(params=["directory", "git"])
def sink(request: pytest.FixtureRequest, tmp_path: Path) -> AnchorSink:
    if request.param == "directory":
        return open_sink(str(tmp_path / "anchors"))
    repo = tmp_path / "release-repo"
    subprocess.run(["git", "init", "-q", "--bare", str(repo)], check=True)
    return open_sink(f"git:{repo}")


async def test_a_cut_tail_fails_the_check_that_the_chain_passes(
    store_url: str, sink: AnchorSink
) -> None:
    key = Ed25519PrivateKey.generate()
    trusted = {key_id_of(key): key.public_key()}
    store = await open_store(store_url)
    try:
        await store.migrate()
        await store.append("s-1", [NewEvent(type="test.one", data={"n": i}) for i in range(3)], 0)
        first = await anchor_head(store, sink, key)
        await store.append("s-1", [NewEvent(type="test.two", data={})], 3)
        second = await anchor_head(store, sink, key)
        assert first is not None and second is not None
        assert [a.position for a in sink.read()] == [3, 4]
        assert (await check_anchors(store, sink.read(), trusted)).ok

        await tamper(store_url, "DELETE FROM events WHERE position = 4")

        assert (await store.verify()).ok  # the shorter chain is still whole
        report = await check_anchors(store, sink.read(), trusted)
        assert not report.ok and report.checked == 1
        assert "position 4" in str(report) and "cut" in str(report)
    finally:
        await store.close()


async def test_a_forged_or_foreign_anchor_is_refused(store_url: str, sink: AnchorSink) -> None:
    key, stranger = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    trusted = {key_id_of(key): key.public_key()}
    store = await open_store(store_url)
    try:
        await store.migrate()
        [stored] = await store.append("s-1", [NewEvent(type="test.one", data={})], 0)
        good = make_anchor(key, 1, stored.hash)
        forged = Anchor(1, "0" * 64, good.anchored_at, good.key_id, good.signature)
        foreign = make_anchor(stranger, 1, stored.hash)

        assert (await check_anchors(store, [good], trusted)).ok
        assert "bad signature" in str(await check_anchors(store, [forged], trusted))
        assert "unknown key" in str(await check_anchors(store, [foreign], trusted))
    finally:
        await store.close()


async def test_an_empty_log_anchors_nothing_and_a_file_that_is_no_anchor_is_named(
    store_url: str, tmp_path: Path
) -> None:
    sink = open_sink(str(tmp_path / "anchors"))
    store = await open_store(store_url)
    try:
        await store.migrate()
        assert await anchor_head(store, sink, Ed25519PrivateKey.generate()) is None
        assert sink.read() == []
        (tmp_path / "anchors").mkdir()
        (tmp_path / "anchors" / "000000000001.json").write_text("{not json")
        with pytest.raises(AnchorError, match="not an anchor"):
            sink.read()
    finally:
        await store.close()
