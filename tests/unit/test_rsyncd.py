"""The publisher's rsync daemon, real `rsync --daemon` on a free loopback port."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from ferry_publisher.rsyncd import RsyncDaemon
from ferry_rsync_agent.rsync import Pull

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


def make_daemon(
    tmp_path: Path, exports: Path, hosts_allow: str = "127.0.0.1", chroot: bool | None = None
) -> RsyncDaemon:
    return RsyncDaemon(
        exports,
        tmp_path / "run",
        address="127.0.0.1",
        port=free_port(),
        user="ferry",
        password=PASSWORD,
        hosts_allow=hosts_allow,
        chroot=chroot,
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


@pytest.fixture
def readable_by_all() -> Iterator[Path]:
    """A directory any user may read: a daemon that starts as root without chroot serves its
    modules as `nobody`, who cannot enter pytest's private tmp_path."""
    base = Path(tempfile.mkdtemp(prefix="ferry-rsyncd-"))
    base.chmod(0o755)
    yield base
    shutil.rmtree(base)


IN_TREE_LINKS = {"home": "index.html", "lib": "static", "static/up": "../index.html"}


def release_with_links(exports: Path) -> Path:
    release = exports / "shop" / "1"
    (release / "static").mkdir(parents=True)
    (release / "index.html").write_text("release 1\n")
    (release / "static" / "app.js").write_text("js\n")
    for link, target in IN_TREE_LINKS.items():
        (release / link).symlink_to(target)
    (release / "etc").symlink_to("/etc")  # no export holds one (tree_rules); the daemon's own
    (release / "up").symlink_to("../../../../../../../../etc")  # guard is tested with them
    for directory in (exports, exports / "shop", release, release / "static"):
        directory.chmod(0o755)
    return release


@pytest.mark.parametrize("chroot", [True, False], ids=["chroot", "no-chroot"])
async def test_in_tree_symlinks_reach_a_host_verbatim_and_nothing_is_read_through_a_link_out(
    readable_by_all: Path, chroot: bool
) -> None:
    if chroot and os.geteuid() != 0:
        pytest.skip("chroot needs root")
    release_with_links(readable_by_all / "exports")
    password_file = readable_by_all / "password"
    password_file.write_text(PASSWORD + "\n")
    password_file.chmod(0o600)
    names = readable_by_all / "names"
    names.write_bytes(b"".join(f"1/./{link}".encode() + b"\0" for link in IN_TREE_LINKS))
    async with make_daemon(readable_by_all, readable_by_all / "exports", chroot=chroot) as daemon:
        assert f"use chroot = {'yes' if chroot else 'no'}" in daemon.config.read_text()
        assert "munge symlinks = no" in daemon.config.read_text()
        whole = Pull(url(daemon, "shop/1/"), readable_by_all / "whole", password_file)
        listed = readable_by_all / "listed"
        by_list = replace(
            whole, source_url=url(daemon, "shop/"), destination=listed, files_from=names
        )
        listed.mkdir()
        for pull in (whole, by_list):  # as the agent pulls: a whole tree, or a delta's list
            done = subprocess.run(pull.argv(), capture_output=True, text=True, check=False)
            assert done.returncode == 0, done.stderr
        through = [
            rsync("-a", url(daemon, f"shop/1/{link}/hostname"), str(readable_by_all / link))
            for link in ("etc", "up")
        ]
    for host in ("whole", "listed"):
        received = {link: os.readlink(readable_by_all / host / link) for link in IN_TREE_LINKS}
        assert received == IN_TREE_LINKS  # not munged, not dropped
    assert (readable_by_all / "whole" / "lib" / "app.js").read_text() == "js\n"
    assert not os.path.lexists(readable_by_all / "whole" / "etc")  # --safe-links on the host
    for link, refused in zip(("etc", "up"), through, strict=True):
        assert refused.returncode != 0
        assert not os.path.lexists(readable_by_all / link)
