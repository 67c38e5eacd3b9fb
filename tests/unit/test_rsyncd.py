"""The publisher's rsync daemon, real `rsync --daemon` on a free loopback port."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from ferry_publisher.rsyncd import RsyncDaemon

PASSWORD = "s3cret-pw"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rsync(*args: str, password: str | None = PASSWORD) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "RSYNC_PASSWORD"}
    if password is not None:
        env["RSYNC_PASSWORD"] = password
    return subprocess.run(
        ["rsync", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def exports(tmp_path: Path) -> Path:
    release = tmp_path / "exports" / "shop" / "1"
    (release / "static").mkdir(parents=True)
    (release / "index.html").write_text("release 1\n")
    (release / "static" / "app.js").write_text("js\n")
    (release / "current-link").symlink_to("index.html")
    return tmp_path / "exports"


def make_daemon(tmp_path: Path, exports: Path, hosts_allow: str = "127.0.0.1") -> RsyncDaemon:
    return RsyncDaemon(
        exports,
        tmp_path / "run",
        address="127.0.0.1",
        port=free_port(),
        user="ferry",
        password=PASSWORD,
        hosts_allow=hosts_allow,
    )


@pytest.fixture
async def daemon(tmp_path: Path, exports: Path) -> AsyncIterator[RsyncDaemon]:
    async with make_daemon(tmp_path, exports) as running:
        yield running


def url(daemon: RsyncDaemon, path: str) -> str:
    return f"rsync://ferry@127.0.0.1:{daemon.port}/{path}"


async def test_pulls_a_release_with_the_password(daemon: RsyncDaemon, tmp_path: Path) -> None:
    pulled = rsync("-a", url(daemon, "shop/1/"), str(tmp_path / "host"))
    assert pulled.returncode == 0, pulled.stderr
    assert (tmp_path / "host" / "index.html").read_text() == "release 1\n"
    assert (tmp_path / "host" / "static" / "app.js").read_text() == "js\n"
    assert os.readlink(tmp_path / "host" / "current-link") == "index.html"  # not munged
    assert stat.S_IMODE(os.stat(daemon.secrets).st_mode) == 0o600
    assert PASSWORD not in daemon.config.read_text()


async def test_refuses_a_wrong_password_and_another_user(
    daemon: RsyncDaemon, tmp_path: Path
) -> None:
    wrong = rsync("-a", url(daemon, "shop/1/"), str(tmp_path / "a"), password="wrong")
    assert wrong.returncode != 0
    assert "auth failed" in wrong.stderr
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD + "\n")
    password_file.chmod(0o600)
    other_user = f"rsync://intruder@127.0.0.1:{daemon.port}/shop/1/"
    intruder = rsync(
        f"--password-file={password_file}", "-a", other_user, str(tmp_path / "b"), password=None
    )
    assert intruder.returncode != 0
    assert "auth failed" in intruder.stderr
    assert not (tmp_path / "a" / "index.html").exists()
    assert not (tmp_path / "b" / "index.html").exists()


async def test_refuses_writes_and_lists_nothing(
    daemon: RsyncDaemon, tmp_path: Path, exports: Path
) -> None:
    upload = tmp_path / "upload"
    upload.mkdir()
    (upload / "evil.html").write_text("defaced\n")
    pushed = rsync("-a", f"{upload}/", url(daemon, "shop/1/"))
    assert pushed.returncode != 0
    assert "read only" in pushed.stderr
    assert not (exports / "shop" / "1" / "evil.html").exists()

    listing = rsync(f"rsync://127.0.0.1:{daemon.port}/", password=None)
    assert "shop" not in listing.stdout


async def test_a_new_app_is_served_without_a_restart(
    daemon: RsyncDaemon, tmp_path: Path, exports: Path
) -> None:
    (exports / "blog" / "7").mkdir(parents=True)
    (exports / "blog" / "7" / "post.html").write_text("hello\n")
    before = rsync("-a", url(daemon, "blog/7/"), str(tmp_path / "early"))
    assert before.returncode != 0  # no such module yet

    daemon.write_config()
    after = rsync("-a", url(daemon, "blog/7/"), str(tmp_path / "late"))
    assert after.returncode == 0, after.stderr
    assert (tmp_path / "late" / "post.html").read_text() == "hello\n"


async def test_refuses_hosts_not_allowed(tmp_path: Path, exports: Path) -> None:
    async with make_daemon(tmp_path, exports, hosts_allow="127.0.0.2") as only_other_host:
        pulled = rsync("-a", url(only_other_host, "shop/1/"), str(tmp_path / "host"))
    assert pulled.returncode != 0
    # rsync 3.5 hides a module from a host it may not serve; older ones say "access denied".
    assert "access denied" in pulled.stderr or "Unknown module 'shop'" in pulled.stderr
    assert not (tmp_path / "host" / "index.html").exists()
