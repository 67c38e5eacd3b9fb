"""The demo's data directory (its SQLite store with password hashes, its kept secret key and
password) is readable by its owner alone: the directory 0700, the store's files 0600, whatever
the umask, and also when an earlier version left them open.
"""

from __future__ import annotations

import os
import stat
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from ferry_api.bootstrap import running
from ferry_demo.seed import demo_settings, ensure_user, prepare


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    previous = os.umask(0o002)  # as on many desktops: group-writable, world-readable
    yield
    os.umask(previous)


@asynccontextmanager
async def demo(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[None]:
    """The demo's start: settings, its data, the store open with a user written."""
    monkeypatch.setenv("FERRY_DATA_DIR", str(data_dir))
    monkeypatch.delenv("FERRY_DATABASE_URL", raising=False)
    settings = demo_settings()
    setup = prepare(settings)
    async with running(settings) as runtime:
        await ensure_user(runtime, "admin", "admin", setup.password)
        yield


def assert_private(data_dir: Path) -> None:
    """Checked while the store is open: SQLite removes its -wal and -shm files at the close."""
    assert mode(data_dir) == 0o700
    store_files = [data_dir / f"ferry.db{suffix}" for suffix in ("", "-wal", "-shm")]
    for path in [*store_files, data_dir / "demo-secret-key", data_dir / "demo-password"]:
        assert mode(path) == 0o600, (path.name, oct(mode(path)))


@pytest.mark.usefixtures("open_umask")
async def test_a_new_demo_keeps_its_data_to_its_owner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = tmp_path / "demo-data"
    async with demo(data_dir, monkeypatch):
        assert_private(data_dir)


@pytest.mark.usefixtures("open_umask")
async def test_an_open_data_dir_of_an_earlier_start_is_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = tmp_path / "demo-data"
    async with demo(data_dir, monkeypatch):
        data_dir.chmod(0o755)
        for path in data_dir.glob("*"):
            if path.is_file():
                path.chmod(0o644)
    async with demo(data_dir, monkeypatch):
        assert_private(data_dir)
