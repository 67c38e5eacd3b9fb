"""Pull one release tree from the publisher's rsync daemon into a fresh directory."""

from __future__ import annotations

import asyncio
import os
import re
from dataclasses import dataclass
from pathlib import Path

# rsync as a plain copier: no owners, devices or specials from the publisher, and no symlink
# that points out of the tree (--safe-links); the tree is verified afterwards anyway.
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
    link_dest: Path | None = None  # an installed release: unchanged files become hard links
    password_file: Path | None = None
    timeout_seconds: int = 300
    bwlimit_kib: int | None = None
    checksum: bool = False  # compare contents, not size and mtime (which rsync takes to the second)

    def argv(self) -> list[str]:
        options = [*BASE_OPTIONS, f"--timeout={self.timeout_seconds}"]
        options.append(f"--contimeout={self.timeout_seconds}")
        if self.checksum:
            options.append("--checksum")
        if self.link_dest:
            options.append(f"--link-dest={self.link_dest}")
        if self.password_file:
            options.append(f"--password-file={self.password_file}")
        if self.bwlimit_kib:
            options.append(f"--bwlimit={self.bwlimit_kib}")
        return ["rsync", *options, "--", self.source_url, f"{self.destination}/"]


async def pull(request: Pull) -> int:
    """Run rsync; return the bytes it received over the wire (its --stats)."""
    process = await asyncio.create_subprocess_exec(
        *request.argv(),
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
    found = _RECEIVED.search(out)
    return int(re.sub(rb"\D", b"", found.group(1))) if found else 0
