"""Pull one release tree from the publisher's rsync daemon into a directory seeded with
hard links to the current release, and list beforehand what rsync would change in place."""

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
_ESCAPED = re.compile(rb"\\#([0-7]{3})")  # how rsync prints a byte it deems unprintable


class RsyncFailed(Exception):
    """rsync exited non-zero; the message carries its last error line."""


@dataclass(frozen=True)
class Pull:
    source_url: str  # rsync://user@host:port/<module>/<N>/
    destination: Path
    password_file: Path | None = None
    timeout_seconds: int = 300
    bwlimit_kib: int | None = None
    checksum: bool = False  # compare contents, not size and mtime (which rsync takes to the second)

    def argv(self, *extra: str) -> list[str]:
        options = [*BASE_OPTIONS, *extra, f"--timeout={self.timeout_seconds}"]
        options.append(f"--contimeout={self.timeout_seconds}")
        if self.checksum:
            options.append("--checksum")
        if self.password_file:
            options.append(f"--password-file={self.password_file}")
        if self.bwlimit_kib:
            options.append(f"--bwlimit={self.bwlimit_kib}")
        return ["rsync", *options, "--", self.source_url, f"{self.destination}/"]


async def pull(request: Pull) -> int:
    """Run rsync; return the bytes it received over the wire (its --stats)."""
    out = await _run(request.argv())
    found = _RECEIVED.search(out)
    return int(re.sub(rb"\D", b"", found.group(1))) if found else 0


async def changed_in_place(request: Pull) -> list[str]:
    """The files and symlinks a pull would keep but change the attributes of (mode, mtime) with
    chmod/utime on their existing inode, by a dry run: relative paths."""
    out = await _run(request.argv("--dry-run", "--out-format=%i %n"))
    paths = []
    for line in out.splitlines():
        item, name = line[:11], line[12:]  # "%i" is 11 characters, some of them maybe spaces
        # ".f..t......": a kept file whose attributes change; ">f" or "c" make a new inode.
        if item[:1] == b"." and item[1:2] in (b"f", b"L") and item[2:].strip(b". ") and name:
            paths.append(os.fsdecode(_ESCAPED.sub(lambda m: bytes([int(m[1], 8)]), name)))
    return paths


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
