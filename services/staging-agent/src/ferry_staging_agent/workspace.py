"""An app's staging workspace: `site` is a symlink, switched atomically to a fully built tree.

Layout under <data_dir>/staging/<app>/: site -> trees/<id>, trees/<id>/ (the files only),
trees/<id>.json (what that tree is), repo.git (source mirror and staged commits).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError


class StagedTree(BaseModel):
    """What a tree directory holds: enough to re-report it on a redelivered command."""

    model_config = ConfigDict(frozen=True)

    ticket_id: str
    attempt: int
    commit: str
    tree: str
    source_revision: str
    files: int
    diff_summary: dict[str, int]


class Workspace:
    def __init__(self, root: Path, keep_trees: int = 3) -> None:
        self.root = root
        self.site = root / "site"
        self.trees = root / "trees"
        self.repo = root / "repo.git"
        self.keep_trees = max(keep_trees, 1)

    def current(self) -> StagedTree | None:
        """The staged tree the site serves now, if any."""
        try:
            name = Path(os.readlink(self.site)).name
            return StagedTree.model_validate_json((self.trees / f"{name}.json").read_bytes())
        except (OSError, ValidationError):
            return None

    def holds(self, ticket_id: str, attempt: int) -> StagedTree | None:
        staged = self.current()
        if staged and staged.ticket_id == ticket_id and staged.attempt == attempt:
            return staged
        return None

    def new_tree_dir(self) -> Path:
        """A fresh path for the next tree; time first so names sort by age."""
        self.trees.mkdir(parents=True, exist_ok=True)
        return self.trees / f"{time.time_ns()}-{secrets.token_hex(4)}"

    def switch(self, tree_dir: Path, staged: StagedTree) -> None:
        """Record what tree_dir holds, then point the site at it in one rename."""
        record = self.trees / f"{tree_dir.name}.json"
        temporary = record.with_suffix(".json.tmp")
        temporary.write_text(staged.model_dump_json())
        os.replace(temporary, record)
        link = self.root / f".site-{secrets.token_hex(4)}"
        os.symlink(Path("trees") / tree_dir.name, link)
        os.replace(link, self.site)
        self.prune()

    def prune(self) -> None:
        """Keep the served tree and the newest few others; drop half-built leftovers."""
        serving = ""
        with contextlib.suppress(OSError):
            serving = Path(os.readlink(self.site)).name
        others = sorted(
            (
                p.name
                for p in self.trees.iterdir()
                if p.is_dir() and p.name != serving and p.with_suffix(".json").exists()
            ),
            reverse=True,
        )
        kept = {serving, *others[: self.keep_trees - 1]}
        for path in self.trees.iterdir():
            name = path.name.removesuffix(".json.tmp").removesuffix(".json")
            if name in kept:
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
