"""The slow path of the rsync daemon's pre-xfer hook: a host asked for release N of an app whose
export was pruned (a rollback to an old release, a new host), so it is rebuilt from tag N before
the transfer starts. Exports' lock makes concurrent requests build it once.

    python -m ferry_publisher.reexport <repos dir> <app's exports dir> <app> <N>

A failure is printed on stdout, which rsyncd shows the host when it refuses the transfer.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import structlog
from ferry_events.git_blobs import TreeError
from ferry_events.logs import configure_logging
from ferry_events.validation import APP_NAME

from ferry_publisher.exports import Exports
from ferry_publisher.gitrepo import GitError, ReleaseRepo


def rebuild(repos_dir: Path, exports_root: Path, app: str, version: str) -> str | None:
    """Rebuild the export of `version` from its tag; None once it is there, else why not."""
    if not re.match(APP_NAME, app) or not version.isdigit():
        return f"refused: app {app!r}, version {version!r}"
    repo = ReleaseRepo(repos_dir / f"{app}.git")
    commit = repo.tag_commit(int(version)) if repo.exists() else None
    if commit is None:
        return f"{app} has no release {version}"
    with structlog.contextvars.bound_contextvars(app=app, version=int(version)):
        try:
            Exports(exports_root, repo).build(int(version), commit)
        except (GitError, TreeError, OSError) as e:
            structlog.get_logger().error("export.rebuild_failed", reason=str(e))
            return f"release {version} of {app} could not be exported again: {e}"
    return None


def main() -> None:
    configure_logging("publisher")
    repos_dir, exports_root, app, version = sys.argv[1:5]
    failure = rebuild(Path(repos_dir), Path(exports_root), app, version)
    if failure:
        print(failure)
        sys.exit(1)


if __name__ == "__main__":
    main()
