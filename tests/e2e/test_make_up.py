"""`make up` as a user runs it: deploy/local/stack.py starts the API, the staging agent, the
publisher and two rsync agents as processes on a database, vhost and directory of its own, with
`make run`'s demo data; a ticket on main goes live on both demo hosts; SIGTERM stops them all."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from ferry_rest import Ferry
from processes import Service, clean_env, free_port
from source_repos import GitSource, snapshot

REPO = Path(__file__).resolve().parents[2]
STACK = REPO / "deploy" / "local" / "stack.py"
PG_SERVER = "postgresql://postgres@127.0.0.1:5432"
PASSWORD = "make-up-password-e2e"
PROCESSES = ("api", "staging-agent", "publisher", "rsync-agent-demo-1", "rsync-agent-demo-2")
STARTUP_SECONDS = 240.0
STOP_SECONDS = 60.0


@dataclass(frozen=True)
class Up:
    service: Service  # the stack.py process itself
    root: Path
    url: str
    state: dict[str, Any]  # stack.json: pids, logs, source, hosts


async def drop_database(name: str) -> None:
    conn = await asyncpg.connect(f"{PG_SERVER}/postgres")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def delete_vhost(vhost: str) -> None:
    """The vhost and its broker users (`<vhost>-api`, ...), which the stack made; absent if the
    stack failed before that."""
    subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], capture_output=True, timeout=60)
    listed = subprocess.run(
        ["rabbitmqctl", "-q", "list_users", "--formatter", "json"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    for user in json.loads(listed.stdout):
        if user["user"].startswith(f"{vhost}-"):
            subprocess.run(["rabbitmqctl", "-q", "delete_user", user["user"]], timeout=60)


def stack_service(root: Path, database: str, vhost: str, port: int) -> Service:
    env = clean_env(
        FERRY_STACK_DIR=str(root),
        FERRY_STACK_DATABASE=database,
        FERRY_STACK_VHOST=vhost,
        FERRY_PORT=str(port),
        FERRY_RSYNC_PORT=str(free_port()),
        FERRY_DEMO_PASSWORD=PASSWORD,
    )

    async def up() -> bool:  # written once everything answers and the demo data is in
        return (root / "stack.json").exists()

    argv = [sys.executable, str(STACK)]  # what `make up` runs, with the tests' venv
    return Service("make-up", argv, env, root.parent / "cwd", root.parent / "make-up.log", up)


@pytest.fixture
async def up(tmp_path: Path, watch_logs: Callable[[Service], None]) -> AsyncIterator[Up]:
    suffix = uuid.uuid4().hex[:12]
    database, vhost, port = f"ferry_up_{suffix}", f"ferry-up-{suffix}", free_port()
    root = tmp_path / "stack"
    service = stack_service(root, database, vhost, port)
    watch_logs(service)
    for name in PROCESSES:  # their logs go with a failure report too
        watch_logs(Service(name, [], {}, root, root / "logs" / f"{name}.log"))
    service.start()
    try:
        await service.wait_ready(STARTUP_SECONDS)
        state = json.loads((root / "stack.json").read_text())
        yield Up(service, root, f"http://127.0.0.1:{port}", state)
    finally:
        service.stop(STOP_SECONDS)
        await drop_database(database)
        delete_vhost(vhost)


def group_alive(pgid: int) -> bool:
    """Whether any process of this group (a child of the stack and its own children) lives."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def assert_banner(up: Up) -> None:
    """What `make up` prints: the URL, each process with its pid and log, the logins."""
    printed = up.service.log.read_text()
    assert f"Ferry stack is up at {up.url}" in printed, printed
    assert [p["name"] for p in up.state["processes"]] == list(PROCESSES)
    for process in up.state["processes"]:
        row = f"{process['name']:<18}  {process['pid']:>7}  {process['log']}"
        assert row in printed, f"no row for {process['name']}:\n{printed}"
    for user, role in (("admin", "admin"), ("lead", "lead"), ("dev", "developer")):
        assert f"    {user:<6} {role:<10} password: {PASSWORD}\n" in printed, printed


async def publish_main(up: Up) -> None:
    """dev files a ticket on main, tests it, lead approves, dev publishes: live on both hosts."""
    ferry = Ferry(up.url)
    try:
        for user in ("admin", "lead", "dev"):
            await ferry.login(user, PASSWORD)
        expected = GitSource(Path(up.state["source"])).tree("main")
        published = await ferry.deploy("dev", "lead", "demo", "main", timeout=120)
        assert published["version"] == 1, published
        assert sorted(up.state["hosts"]) == ["demo-1", "demo-2"]
        for host, target in up.state["hosts"].items():
            current = Path(target) / "current"
            assert os.readlink(current) == "releases/1", host
            assert snapshot(current) == expected, host
        verified = await ferry.ok("admin", "GET", "/events/verify")
        assert verified["ok"], verified
        # Strict: each report is recorded as said by its agent's own broker user.
        events = (await ferry.ok("admin", "GET", "/events?limit=1000"))["events"]
        vhost = up.state["vhost"]
        synced = {e["metadata"]["actor"] for e in events if e["type"] == "host.sync_completed"}
        assert synced == {f"{vhost}-host-demo-1", f"{vhost}-host-demo-2"}, synced
        tagged = [e["metadata"]["actor"] for e in events if e["type"] == "release.tagged"]
        assert tagged == [f"{vhost}-publisher"], tagged
    finally:
        await ferry.close()


async def stop(up: Up) -> int:
    """SIGTERM to stack.py, as Ctrl-C or systemd would: its exit code."""
    assert up.service.process is not None
    up.service.process.send_signal(signal.SIGTERM)
    try:
        return await asyncio.to_thread(up.service.process.wait, STOP_SECONDS)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"stack.py did not exit {STOP_SECONDS:.0f} s after SIGTERM") from None


async def test_make_up_publishes_the_demo_to_both_hosts_and_stops_every_process(up: Up) -> None:
    assert_banner(up)
    pids = {p["name"]: p["pid"] for p in up.state["processes"]}
    assert all(group_alive(pid) for pid in pids.values()), pids

    await publish_main(up)

    assert await stop(up) == 0, up.service.log_tail(40)
    left = [name for name, pid in pids.items() if group_alive(pid)]
    assert not left, f"still running after the stack exited: {left}"
    printed = up.service.log.read_text()
    for name, pid in pids.items():
        assert f"stack: {name} (pid {pid}) stopped" in printed, printed[-3000:]
    assert not (up.root / "stack.json").exists()
