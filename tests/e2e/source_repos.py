"""Real source repositories for the e2e tests (git on branch main with a tag; svn over file://),
and trees as {path: (kind, digest or link target, executable)} to compare file by file."""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

Tree = dict[str, tuple[str, str, bool]]
Change = Mapping[str, str | bytes | None]  # path -> new content, or None to delete it

GIT_IDENTITY = ["-c", "user.name=E2E", "-c", "user.email=e2e@ferry.invalid"]


def run(*argv: str, cwd: Path | None = None) -> str:
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, timeout=120, check=False)
    if proc.returncode != 0:
        raise AssertionError(f"{argv} failed: {proc.stderr.decode(errors='replace')}")
    return proc.stdout.decode(errors="replace")


def write_files(root: Path, change: Change) -> None:
    for relative, content in change.items():
        path = root / relative
        if content is None:
            path.unlink()
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        data = content.encode() if isinstance(content, str) else content
        path.write_bytes(data)


@dataclass
class GitSource:
    path: Path

    @property
    def url(self) -> str:
        return self.path.as_uri()

    def git(self, *args: str) -> str:
        return run("git", "-C", str(self.path), *GIT_IDENTITY, *args)

    def commit(self, change: Change, message: str) -> str:
        write_files(self.path, change)
        self.git("add", "--all")
        self.git("commit", "--quiet", f"--message={message}")
        return self.git("rev-parse", "HEAD").strip()

    def tree(self, ref: str) -> Tree:
        """The files of `ref` as git stores them, read blob by blob."""
        listing = self.git("ls-tree", "-r", "-z", "--end-of-options", ref)
        tree: Tree = {}
        for record in filter(None, listing.split("\0")):
            meta, _, path = record.partition("\t")
            mode, _, oid = meta.split()
            blob = subprocess.run(
                ["git", "-C", str(self.path), "cat-file", "blob", oid],
                capture_output=True,
                check=True,
            ).stdout
            if mode == "120000":
                tree[path] = ("link", blob.decode(), False)
            else:
                tree[path] = ("file", hashlib.sha256(blob).hexdigest(), mode == "100755")
        return tree


def make_git_source(root: Path) -> GitSource:
    """Three commits on main, tag v1.0 on the second; an executable, a symlink, a space."""
    source = GitSource(root)
    root.mkdir(parents=True)
    source.git("init", "--quiet", "--initial-branch=main")
    source.commit(
        {
            "index.html": "<h1>shop v0</h1>\n",
            "static/app.js": "let v = 0;\n",
            "docs/old.txt": "to be deleted\n",
        },
        "first",
    )
    source.commit(
        {
            "static/app.js": "let v = 1;\n",
            "data/with space.txt": "spaced\n",
            "bin/run.sh": "#!/bin/sh\necho run\n",
            "docs/old.txt": None,
        },
        "second",
    )
    (root / "bin" / "run.sh").chmod(0o755)
    (root / "latest").symlink_to("index.html")
    source.git("add", "--all")
    source.git("commit", "--quiet", "--message=executable and link")
    source.git("tag", "--annotate", "--message=first stable", "v1.0")
    source.commit({"index.html": "<h1>shop v2</h1>\n"}, "third")
    return source


@dataclass
class SvnSource:
    repo: Path
    checkout: Path

    @property
    def url(self) -> str:
        return self.repo.as_uri()

    def commit(self, change: Change, message: str) -> int:
        """Write, add and delete under the working copy's root; the new revision."""
        for relative, content in change.items():
            if content is None:
                run("svn", "delete", "--quiet", "--", relative, cwd=self.checkout)
        write_files(self.checkout, {k: v for k, v in change.items() if v is not None})
        run("svn", "add", "--quiet", "--force", "--parents", "--", ".", cwd=self.checkout)
        run("svn", "commit", "--quiet", "-m", message, cwd=self.checkout)
        info = run("svn", "info", "--show-item", "revision", "--", self.url)
        return int(info.strip())

    def tree(self, path: str, revision: int, into: Path) -> Tree:
        run("svn", "export", "--quiet", "--", f"{self.url}/{path}@{revision}", str(into))
        return snapshot(into)


def make_svn_source(root: Path) -> SvnSource:
    """`svnadmin create`, a trunk with a few commits (revisions 1-3)."""
    repo, checkout = root / "repo", root / "wc"
    root.mkdir(parents=True)
    run("svnadmin", "create", str(repo))
    source = SvnSource(repo, checkout)
    run("svn", "checkout", "--quiet", source.url, str(checkout))
    source.commit(
        {"trunk/index.php": "<?php echo 'blog 1';\n", "trunk/lib/db.php": "<?php\n"}, "first"
    )
    source.commit(
        {"trunk/index.php": "<?php echo 'blog 2';\n", "trunk/css/site.css": "p{}\n"}, "second"
    )
    source.commit({"trunk/lib/db.php": None, "trunk/lib/cache.php": "<?php // cache\n"}, "third")
    return source


def snapshot(root: Path) -> Tree:
    """Every file and symlink under root (directories are not entries, as in git)."""
    tree: Tree = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            relative = path.relative_to(root).as_posix()
            if path.is_symlink():
                tree[relative] = ("link", os.readlink(path), False)
            elif path.is_file():
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                tree[relative] = ("file", digest, bool(path.stat().st_mode & 0o100))
    return tree


def random_files(count: int, size: int, prefix: str = "big") -> dict[str, bytes]:
    """Incompressible files: rsync has to move every byte."""
    return {f"{prefix}/blob-{i:02d}.bin": os.urandom(size) for i in range(count)}
