"""Each test's own rsync daemon serving the apps `shop` and `blog`, and the agent's config."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from ferry_rsync_agent.config import AgentConfig

from ..agent_bus import free_port
from .publishing import (
    Publisher,
    agent_config,
    listening,
)


@pytest.fixture
def publisher(tmp_path: Path) -> Iterator[Publisher]:
    exports, password = tmp_path / "exports", uuid.uuid4().hex
    secrets, password_file = tmp_path / "rsyncd.secrets", tmp_path / "agent.password"
    for path, text in ((secrets, f"ferry:{password}\n"), (password_file, f"{password}\n")):
        path.write_text(text)
        path.chmod(0o600)
    lines = ["use chroot = no", f"pid file = {tmp_path / 'rsyncd.pid'}"]
    if os.getuid() == 0:  # a root daemon would drop to `nobody`, who cannot read tmp_path
        lines += ["uid = 0", "gid = 0"]
    for app in ("shop", "blog"):
        (exports / app).mkdir(parents=True)
        lines += [f"[{app}]", f"path = {exports / app}", "read only = yes"]
        lines += ["auth users = ferry", f"secrets file = {secrets}"]
    (tmp_path / "rsyncd.conf").write_text("\n".join(lines) + "\n")
    port = free_port()
    config, log = tmp_path / "rsyncd.conf", tmp_path / "rsyncd.log"
    address = ["--address=127.0.0.1", f"--port={port}"]
    daemon = subprocess.Popen(
        ["rsync", "--daemon", "--no-detach", f"--config={config}", f"--log-file={log}", *address]
    )
    deadline = time.monotonic() + 10
    while not listening(port):
        assert time.monotonic() < deadline and daemon.poll() is None, "rsync daemon did not start"
        time.sleep(0.05)
    served = Publisher(exports, f"rsync://ferry@127.0.0.1:{port}/", password_file, daemon)
    yield served
    if daemon.poll() is None:
        served.stop()


@pytest.fixture
def config(tmp_path: Path, publisher: Publisher) -> AgentConfig:
    return agent_config(tmp_path, publisher)
