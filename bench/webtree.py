"""A generated web tree for the deploy benchmark: fixed seed, mixed sizes, nested dirs, symlinks;
and its changes from one release to the next (the same on every copy of it)."""

from __future__ import annotations

import os
import random
from pathlib import Path

TEXT = (".html", ".css", ".js", ".json", ".txt")
BINARY = (".png", ".jpg", ".woff2", ".gz")
SYMLINKS = 8


def layout(files: int, seed: int = 7) -> list[tuple[str, int]]:
    """(path, size) of each file: sizes log-normal (many small, a few large), paths 1-4 deep."""
    rng = random.Random(seed)
    sections = ["assets", "static", "media", "docs", "blog", "shop", "api", "vendor"]
    paths = []
    for i in range(files):
        depth = rng.choice((1, 2, 2, 3, 4))
        parts = [rng.choice(sections)] + [f"d{rng.randrange(12)}" for _ in range(depth - 1)]
        ext = rng.choice(TEXT + BINARY)
        paths.append((f"{'/'.join(parts)}/f{i}{ext}", max(16, int(rng.lognormvariate(8.5, 1.5)))))
    return paths


def generate(root: Path, files: int, total_bytes: int, seed: int = 7) -> None:
    """Write the tree under `root`: text files compress, binary ones do not, as in a web tree."""
    entries = layout(files, seed)
    factor = total_bytes / sum(size for _, size in entries)
    rng = random.Random(seed + 1)
    for path, size in entries:
        write(root / path, max(16, int(size * factor)), rng)
    for i in range(SYMLINKS):  # relative links inside one directory, as a site's aliases are
        path = Path(entries[i * 97 % files][0])
        os.symlink(path.name, root / path.parent / f"alias{i}{path.suffix}")


def write(path: Path, size: int, rng: random.Random) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix in TEXT:
        words = b" ".join(rng.choice(WORDS) for _ in range(64)) + b"\n"
        content = (words * (size // len(words) + 1))[:size]
    else:
        content = rng.randbytes(size)
    path.write_bytes(content)


def change_files(
    root: Path, files: int, version: int, *, fraction: float = 0.0, count: int = 0
) -> None:
    """Rewrite `count` (or `fraction` of the) files, chosen by `version`, at their size."""
    entries = layout(files)
    rng = random.Random(version)
    chosen = rng.sample(entries, count or max(1, int(files * fraction)))
    for path, _ in chosen:
        write(root / path, (root / path).stat().st_size, rng)


WORDS = [w.encode() for w in "ferry release ticket deploy static asset page shop news".split()]
