"""The publisher's side for the rsync agent's tests: release trees and manifests served by a
real rsync daemon; a host's agent config; one command handed to the agent."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ferry_events import manifest
from ferry_events.manifest import entry_from_disk
from ferry_events.registry import Event
from ferry_events.schemas import HostSyncRequested
from ferry_rsync_agent.config import AgentConfig
from ferry_rsync_agent.handlers import sync_release
from ferry_rsync_agent.housekeeping import tidy
from ferry_rsync_agent.releases import Layout

from ..agent_bus import trusted_key_file

REPO = Path(__file__).resolve().parents[3]
HOST = "web-1"


def published_manifest(root: Path) -> str:
    """The manifest the publisher serves for this tree: every file and symlink, as git sees it."""
    entries = []
    for directory, dirs, files in os.walk(root):
        for name in files + [d for d in dirs if (Path(directory) / d).is_symlink()]:
            relative = (Path(directory) / name).relative_to(root).as_posix()
            entries.append(entry_from_disk(root, relative))
    return manifest.render(entries)


def published_digest(root: Path) -> str:
    return hashlib.sha256(published_manifest(root).encode()).hexdigest()


def random_files(count: int, size: int, seed: int = 1) -> dict[str, bytes]:
    rng = random.Random(seed)
    return {f"dir{i % 10}/file{i}.dat": rng.randbytes(size) for i in range(count)}


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Publisher:
    """The publisher's side: exports `<root>/<app>/<N>/` served by a real rsync daemon."""

    exports: Path
    url: str
    password_file: Path
    daemon: subprocess.Popen[bytes]
    manifests: bool = True  # serve `<N>.manifest` beside `<N>/`, as ferry-publisher does

    def seal(self, app: str, version: int) -> str:
        """Publish release N's manifest for its tree as it is now; return its digest."""
        root = self.exports / app / str(version)
        if self.manifests:
            (root.parent / f"{version}.manifest").write_text(published_manifest(root))
        return published_digest(root)

    def export(
        self, app: str, version: int, files: dict[str, bytes], links: dict[str, str] | None = None
    ) -> str:
        """Write release N's tree and return its digest."""
        root = self.exports / app / str(version)
        for relative, content in files.items():
            (root / relative).parent.mkdir(parents=True, exist_ok=True)
            (root / relative).write_bytes(content)
        for relative, target in (links or {}).items():
            os.symlink(target, root / relative)
        root.mkdir(parents=True, exist_ok=True)
        return self.seal(app, version)

    def export_changed(self, app: str, version: int, files: dict[str, bytes]) -> str:
        """Release N as a copy of N-1 (timestamps kept, as a git export of one tree would be)
        with these files changed or added."""
        previous = self.exports / app / str(version - 1)
        shutil.copytree(previous, self.exports / app / str(version), symlinks=True)
        return self.export(app, version, files)

    def stop(self) -> None:
        self.daemon.terminate()
        self.daemon.wait(timeout=10)


def agent_config(tmp_path: Path, publisher: Publisher, **app_settings: object) -> AgentConfig:
    (tmp_path / "host" / "shop").mkdir(parents=True, exist_ok=True)
    return AgentConfig.model_validate(
        {
            "host": HOST,
            "rsync_source": publisher.url,
            "password_file": publisher.password_file,
            "state_dir": tmp_path / "state",
            "trusted_keys": [trusted_key_file(tmp_path / "keys")],
            "apps": {"shop": {"target": tmp_path / "host" / "shop", "keep": 3, **app_settings}},
        }
    )


async def sync(config: AgentConfig, version: int, digest: str, app: str = "shop") -> Event:
    """Hand the agent one command; return its one report."""
    reports: list[Event] = []

    async def report(event: Event) -> None:
        reports.append(event)

    command = HostSyncRequested(
        ticket_id=f"t-{version}", app=app, host=HOST, version=version, digest=digest, attempt=2
    )
    await sync_release(command, config, report)
    tidy(config)  # what the agent does once idle: prune, make the next spare
    assert len(reports) == 1, reports
    return reports[0]


def shop(config: AgentConfig) -> Layout:
    return Layout(config.apps["shop"].target)


def tree_of(root: Path) -> dict[str, bytes | str]:
    found: dict[str, bytes | str] = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            found[path.relative_to(root).as_posix()] = os.readlink(path)
        elif path.is_file():
            found[path.relative_to(root).as_posix()] = path.read_bytes()
    return found


FIRST = {**random_files(200, 4096), "bin/run": b"#!/bin/sh\necho run\n", "index.html": b"<h1>1"}
