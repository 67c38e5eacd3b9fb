"""Anchors: signed checkpoints of the log's head, kept where the database's owner cannot rewrite
them, so that a tail cut off the log shows.

The hash chain proves that nothing inside the log was changed, reordered or deleted, but not that
nothing was cut off its END: delete the last events and the shorter chain is still whole. An
anchor is (position, hash of that event, time) signed with the API's Ed25519 key and written to a
sink outside the database: a directory on other storage (`DirectoryAnchors`) or a ref in a git
repository, e.g. the release repository (`GitAnchors`). `check_anchors` asks the log whether every
anchored position still holds the anchored hash.

What a passing check proves: at each anchor's time the log held at least that many events, the
last of them the one hashed, and the log still holds them unchanged. What it does not prove:
anything about events appended after the newest anchor (a cut within that window goes unseen,
so anchors are written every minute and at every release), nor anything if one person controls
the database, the sink and the key together.

Errors:
    AnchorError          a sink that cannot be read or written, or an anchor that is not one
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import subprocess
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ferry_events.chain import canonical_json
from ferry_events.signing import key_id_of
from ferry_events.store import EventStore

FORMAT = "ferry-log-anchor/1"
GIT_REF = "refs/ferry/anchors"


class AnchorError(Exception):
    """A sink that cannot be used, or a file in it that is not an anchor."""


@dataclass(frozen=True)
class Anchor:
    position: int
    hash: str
    anchored_at: str  # ISO 8601, UTC
    key_id: str
    signature: str  # base64 Ed25519 over signed_text()

    def signed_text(self) -> bytes:
        return _signed(self.position, self.hash, self.anchored_at)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Anchor:
        try:
            fields = json.loads(text)
            return cls(
                position=int(fields["position"]),
                hash=str(fields["hash"]),
                anchored_at=str(fields["anchored_at"]),
                key_id=str(fields["key_id"]),
                signature=str(fields["signature"]),
            )
        except (ValueError, KeyError, TypeError) as error:
            raise AnchorError(f"not an anchor: {error}") from error


def _signed(position: int, hash_: str, anchored_at: str) -> bytes:
    return canonical_json([FORMAT, position, hash_, anchored_at]).encode()


def make_anchor(
    key: Ed25519PrivateKey, position: int, hash_: str, now: datetime | None = None
) -> Anchor:
    anchored_at = (now or datetime.now(UTC)).astimezone(UTC).isoformat()
    signature = key.sign(_signed(position, hash_, anchored_at))
    return Anchor(
        position, hash_, anchored_at, key_id_of(key), base64.b64encode(signature).decode()
    )


class AnchorSink(Protocol):
    def write(self, anchor: Anchor) -> None: ...

    def read(self) -> list[Anchor]:
        """Every anchor the sink holds, oldest position first."""


class DirectoryAnchors:
    """One file per anchor, created exclusively and flushed: mount the directory from storage
    the database's owner cannot write (another host, a WORM bucket mount)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, anchor: Anchor) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        target = self.path / f"{anchor.position:012d}.json"
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        except FileExistsError:
            return  # this position is anchored already; an anchor is never rewritten
        with os.fdopen(fd, "w") as file:
            file.write(anchor.to_json() + "\n")
            file.flush()
            os.fsync(file.fileno())

    def read(self) -> list[Anchor]:
        if not self.path.is_dir():
            return []
        return [Anchor.from_json(p.read_text()) for p in sorted(self.path.glob("*.json"))]


class GitAnchors:
    """A chain of commits under refs/ferry/anchors in a git repository (e.g. the release
    repository), one anchor per commit message: git's own hashes make a rewrite visible to
    every clone that fetched the ref before."""

    def __init__(self, repo: Path, ref: str = GIT_REF) -> None:
        self.repo, self.ref = repo, ref

    def write(self, anchor: Anchor) -> None:
        parent = self._git("rev-parse", "--verify", "--quiet", f"{self.ref}^{{commit}}", ok=(0, 1))
        tree = self._git("mktree", stdin="")
        parents = ["-p", parent] if parent else []
        commit = self._git("commit-tree", tree, *parents, stdin=anchor.to_json() + "\n")
        self._git("update-ref", self.ref, commit, *([parent] if parent else []))

    def read(self) -> list[Anchor]:
        if not self._git("rev-parse", "--verify", "--quiet", self.ref, ok=(0, 1)):
            return []
        log = self._git("log", "--format=%B%x00", self.ref, "--")
        anchors = [Anchor.from_json(text) for text in log.split("\x00") if text.strip()]
        return sorted(anchors, key=lambda a: a.position)

    def _git(self, *args: str, stdin: str | None = None, ok: tuple[int, ...] = (0,)) -> str:
        env = {
            **os.environ,
            "GIT_AUTHOR_NAME": "ferry",
            "GIT_AUTHOR_EMAIL": "ferry@localhost",
            "GIT_COMMITTER_NAME": "ferry",
            "GIT_COMMITTER_EMAIL": "ferry@localhost",
        }
        done = subprocess.run(
            ["git", "-C", str(self.repo), *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        if done.returncode not in ok:
            raise AnchorError(f"git {args[0]} in {self.repo}: {done.stderr.strip()}")
        return done.stdout.strip() if done.returncode == 0 else ""


def open_sink(spec: str) -> AnchorSink:
    """`git:/path/to/repo` for a ref in that git repository; anything else is a directory."""
    if spec.startswith("git:"):
        return GitAnchors(Path(spec.removeprefix("git:")))
    return DirectoryAnchors(Path(spec))


@dataclass(frozen=True)
class AnchorReport:
    ok: bool
    checked: int
    problem: str | None = None

    def __str__(self) -> str:
        if self.ok:
            return f"anchors OK: {self.checked} checkpoints still in the log"
        return f"anchors BROKEN after {self.checked} good checkpoints: {self.problem}"


async def anchor_head(store: EventStore, sink: AnchorSink, key: Ed25519PrivateKey) -> Anchor | None:
    """Anchor the log's current last event (None for an empty log)."""
    last = await store.last_position()
    if last == 0:
        return None
    head = await store.read_all(after=last - 1, limit=1)
    anchor = make_anchor(key, head[0].position, head[0].hash)
    sink.write(anchor)
    return anchor


async def check_anchors(
    store: EventStore, anchors: list[Anchor], trusted: dict[str, Ed25519PublicKey]
) -> AnchorReport:
    """Every anchor must be signed by a trusted key and its position still hold its hash."""
    last = await store.last_position()
    for checked, anchor in enumerate(sorted(anchors, key=lambda a: a.position)):
        problem = _signature_problem(anchor, trusted)
        if problem is None and anchor.position > last:
            problem = (
                f"position {anchor.position}, anchored at {anchor.anchored_at}, is gone: "
                f"the log ends at {last} (its tail was cut)"
            )
        if problem is None:
            event = await store.read_all(after=anchor.position - 1, limit=1)
            if not event or event[0].hash != anchor.hash:
                problem = f"position {anchor.position} no longer holds the anchored event"
        if problem is not None:
            return AnchorReport(False, checked, problem)
    return AnchorReport(True, len(anchors))


def _signature_problem(anchor: Anchor, trusted: dict[str, Ed25519PublicKey]) -> str | None:
    key = trusted.get(anchor.key_id)
    if key is None:
        return f"anchor of position {anchor.position} is signed by unknown key {anchor.key_id}"
    try:
        key.verify(base64.b64decode(anchor.signature, validate=True), anchor.signed_text())
    except (InvalidSignature, binascii.Error, ValueError):
        return f"anchor of position {anchor.position} has a bad signature"
    return None
