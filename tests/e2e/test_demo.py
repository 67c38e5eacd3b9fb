"""`ferry-demo` (`make run`) as a user starts it: one process with the embedded store and
bus, whose staging agent, publisher and two rsync agents take a demo ticket all the way to
published on demo-1 and demo-2, a second release, and back by a rollback."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from ferry_rest import Ferry
from processes import BIN, Service, answers_ready, clean_env, free_port
from source_repos import GitSource, Tree, snapshot

PASSWORD = "demo-password-e2e"
HOSTS = ("demo-1", "demo-2")


@dataclass(frozen=True)
class Demo:
    data_dir: Path
    url: str


@pytest.fixture
async def demo(tmp_path: Path, watch_logs: Callable[[Service], None]) -> AsyncIterator[Demo]:
    """A running demo."""
    data_dir, port = tmp_path / "data", free_port()
    env = clean_env(
        FERRY_DATA_DIR=str(data_dir),
        FERRY_PORT=str(port),
        FERRY_RSYNC_PORT=str(free_port()),
        FERRY_DEMO_PASSWORD=PASSWORD,
    )
    argv = [str(BIN / "ferry-demo")]
    url = f"http://127.0.0.1:{port}"
    service = Service(
        "demo", argv, env, tmp_path / "cwd", tmp_path / "demo.log", answers_ready(url)
    )
    watch_logs(service)
    service.start()
    try:
        await service.wait_ready()
        yield Demo(data_dir, url)
    finally:
        service.stop()


def assert_live(data_dir: Path, version: int, expected: Tree) -> None:
    for host in HOSTS:
        current = data_dir / "hosts" / host / "demo" / "current"
        assert os.readlink(current) == f"releases/{version}", host
        assert snapshot(current) == expected, host


async def test_the_demo_publishes_to_both_hosts_and_rolls_back(demo: Demo) -> None:
    ferry = Ferry(demo.url)
    for user in ("dev", "lead"):
        await ferry.login(user, PASSWORD)
    source = GitSource(demo.data_dir / "sources" / "demo")
    first = source.tree("main")

    published = await ferry.deploy("dev", "lead", "demo", "main")
    assert published["version"] == 1
    assert_live(demo.data_dir, 1, first)

    source.commit({"app.js": "document.getElementById('v').textContent = 'two';\n"}, "two")
    second = source.tree("main")
    assert (await ferry.deploy("dev", "lead", "demo", "main"))["version"] == 2
    assert_live(demo.data_dir, 2, second)

    rollback = await ferry.submit("dev", "demo", version=1, reason="back to one")
    await ferry.wait_state("dev", rollback["id"], "awaiting_approval")
    await ferry.act("lead", rollback["id"], "approve")
    await ferry.act("dev", rollback["id"], "publish")
    await ferry.wait_state("dev", rollback["id"], "published")
    assert_live(demo.data_dir, 1, first)
    await ferry.close()
