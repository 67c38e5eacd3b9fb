"""Pull a release from the publisher's rsync daemon: a whole tree into an empty directory, only
the listed paths into a seeded one, or a single file (the release's manifest)."""

from __future__ import annotations

import asyncio
import os
import re
from dataclasses import dataclass
from pathlib import Path

# rsync as a plain copier: no owners, devices or specials from the publisher, and no symlink
# that points out of the tree (--safe-links); the tree is verified afterwards anyway. Never
# --inplace (nor --append): a changed file must be written to a new inode and renamed, as the
# old one may be shared with an installed release.
BASE_OPTIONS = (
    "--archive",
    "--no-owner",
    "--no-group",
    "--no-devices",
    "--no-specials",
    "--delete",
    "--safe-links",
    "--stats",
    "--no-human-readable",
)
_RECEIVED = re.compile(rb"^Total bytes received: ([\d,.]+)", re.MULTILINE)


class RsyncFailed(Exception):
    """rsync exited non-zero; the message carries its last error line."""


@dataclass(frozen=True)
class Pull:
    source_url: str  # rsync://user@host:port/<module>/<N>/
    destination: Path
    password_file: Path | None = None
    timeout_seconds: int = 300
    bwlimit_kib: int | None = None
    files_from: Path | None = None  # only these paths (NUL-separated), into a seeded directory

    def argv(self) -> list[str]:
        options = [*BASE_OPTIONS, *self.timeouts()]
        if self.files_from:
            options = [o for o in options if o != "--delete"]  # what goes is removed by us
            options += ["--from0", f"--files-from={self.files_from}"]
        if self.password_file:
            options.append(f"--password-file={self.password_file}")
        if self.bwlimit_kib:
            options.append(f"--bwlimit={self.bwlimit_kib}")
        return ["rsync", *options, "--", self.source_url, f"{self.destination}/"]

    def timeouts(self) -> list[str]:
        return [f"--timeout={self.timeout_seconds}", f"--contimeout={self.timeout_seconds}"]


async def pull(request: Pull) -> int:
    """Run rsync; return the bytes it received over the wire (its --stats)."""
    out = await _run(request.argv())
    found = _RECEIVED.search(out)
    return int(re.sub(rb"\D", b"", found.group(1))) if found else 0


async def fetch_file(request: Pull) -> None:
    """Copy one file (source_url names it) to `destination`, a file path."""
    options = ["--no-motd", *request.timeouts()]
    if request.password_file:
        options.append(f"--password-file={request.password_file}")
    await _run(["rsync", *options, "--", request.source_url, str(request.destination)])


async def _run(argv: list[str]) -> bytes:
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "LC_ALL": "C"},  # stats in a format we can read
    )
    try:
        out, err = await process.communicate()
    finally:
        if process.returncode is None:  # cancelled: do not leave rsync writing behind us
            process.kill()
            await process.wait()
    if process.returncode != 0:
        lines = err.decode(errors="replace").strip().splitlines() or ["(no error output)"]
        errors = [line for line in lines if line.startswith("rsync")] or lines
        raise RsyncFailed(f"rsync exited {process.returncode}: {errors[0][:300]}")
    return out
