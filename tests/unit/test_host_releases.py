"""The host layout on real directories: atomic switch, leftovers, pruning, and reading a release
tree back into its manifest (incrementally, refusing anything that reaches outside)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from ferry_events import manifest
from ferry_events.manifest import Entry, entry_from_disk
from ferry_rsync_agent.releases import (
    Layout,
    discard,
    install,
    manifest_text,
    prepare,
    prune,
    switch_current,
)
from ferry_rsync_agent.tree import UnsafeTree, inventory


def write_tree(root: Path, files: dict[str, bytes], links: dict[str, str] | None = None) -> None:
    for relative, content in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(content)
    for relative, target in (links or {}).items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, root / relative)


def entries_on_disk(root: Path) -> list[Entry]:
    """What the publisher's manifest would hold for this tree, file by file."""
    found = []
    for directory, dirs, files in os.walk(root):
        for name in files + [d for d in dirs if (Path(directory) / d).is_symlink()]:
            found.append(
                entry_from_disk(root, (Path(directory) / name).relative_to(root).as_posix())
            )
    return sorted(found)


def installed(layout: Layout, version: int, files: dict[str, bytes] | None = None) -> Path:
    """A verified release as the agent installs it: tree in N.tmp, manifest, rename."""
    prepare(layout)
    write_tree(layout.incoming(version), files or {"index.html": f"v{version}".encode()})
    install(layout, version, manifest.render(entries_on_disk(layout.incoming(version))))
    return layout.release(version)


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    (tmp_path / "app").mkdir()
    return Layout(tmp_path / "app")


def test_install_names_the_tree_and_keeps_its_manifest(layout: Layout) -> None:
    release = installed(layout, 1, {"a.txt": b"a", "lib/b.py": b"b"})

    assert release.is_dir() and not layout.incoming(1).exists()
    assert manifest_text(layout.manifest_file(1)) == manifest.render(entries_on_disk(release))
    assert layout.versions() == [1]


def test_switch_replaces_current_with_a_relative_link_and_remembers_the_previous(
    layout: Layout,
) -> None:
    installed(layout, 1)
    installed(layout, 2)

    switch_current(layout, 1)
    assert layout.previous_version() is None
    switch_current(layout, 2)
    switch_current(layout, 2)  # a repeated switch changes nothing

    assert os.readlink(layout.current) == "releases/2"
    assert (layout.current / "index.html").read_text() == "v2"
    assert (layout.current_version(), layout.previous_version()) == (2, 1)


def test_prepare_removes_what_an_interrupted_attempt_left(layout: Layout) -> None:
    installed(layout, 1)
    switch_current(layout, 1)
    write_tree(layout.incoming(2), {"half.txt": b"half"})
    write_tree(layout.releases / "3.discard", {"x": b"x"})
    os.symlink("releases/2.tmp", layout.target / ".current.tmp")
    (layout.manifests / "2.tmp").write_text("partial")

    prepare(layout)

    assert sorted(p.name for p in layout.releases.iterdir()) == ["1"]
    assert sorted(p.name for p in layout.manifests.iterdir()) == ["1"]
    assert not os.path.lexists(layout.target / ".current.tmp")
    assert layout.current_version() == 1


def test_prune_keeps_the_newest_and_never_current_or_previous(layout: Layout) -> None:
    for version in range(1, 7):
        installed(layout, version)
    switch_current(layout, 2)
    switch_current(layout, 1)  # rolled back: current 1, previous 2

    removed = prune(layout, keep=3)

    assert sorted(removed) == [3, 4, 5]
    assert layout.versions() == [1, 2, 6]
    assert sorted(int(p.name) for p in layout.manifests.iterdir()) == [1, 2, 6]


def test_prune_to_one_still_keeps_current_and_previous(layout: Layout) -> None:
    for version in (1, 2, 3):
        installed(layout, version)
    switch_current(layout, 1)
    switch_current(layout, 2)

    assert prune(layout, keep=1) == [3]
    assert layout.versions() == [1, 2]


def test_discard_leaves_no_release_and_no_manifest(layout: Layout) -> None:
    installed(layout, 4)

    discard(layout, 4)

    assert layout.versions() == [] and manifest_text(layout.manifest_file(4)) is None
    assert list(layout.releases.iterdir()) == []


def test_inventory_is_the_manifest_git_would_give(tmp_path: Path) -> None:
    write_tree(tmp_path, {"a.txt": b"hello\n", "bin/run": b"#!/bin/sh\n", "d/e/f": b""})
    (tmp_path / "bin/run").chmod(0o755)
    os.symlink("../a.txt", tmp_path / "d/link")

    found = inventory(tmp_path)

    assert sorted(found.entries) == entries_on_disk(tmp_path)
    assert {e.path: e.mode for e in found.entries} == {
        "a.txt": manifest.REGULAR,
        "bin/run": manifest.EXECUTABLE,
        "d/e/f": manifest.REGULAR,
        "d/link": manifest.SYMLINK,
    }
    # git hash-object of "hello\n": the publisher's blob id for the same content
    oids = {e.path: e.oid for e in found.entries}
    assert oids["a.txt"] == "ce013625030ba8dba906f756967f9e9ca394464a"
    assert found.hashed == 3


def test_inventory_reuses_the_base_entry_only_for_a_hard_link_into_the_base(
    tmp_path: Path,
) -> None:
    base, new = tmp_path / "1", tmp_path / "2"
    write_tree(base, {"same.txt": b"same", "copied.txt": b"copy", "changed.txt": b"old"})
    base_entries = {e.path: e for e in entries_on_disk(base)}
    new.mkdir()
    os.link(base / "same.txt", new / "same.txt")
    write_tree(new, {"copied.txt": b"copy", "changed.txt": b"new!", "added.txt": b"+"})
    # A base entry that no longer matches its file shows which entries were reused unread.
    base_entries["same.txt"] = Entry("same.txt", manifest.REGULAR, "0" * 40, 4)

    found = inventory(new, base, base_entries)

    by_path = {e.path: e for e in found.entries}
    assert by_path["same.txt"].oid == "0" * 40  # the hard link: reused, not read
    assert by_path["copied.txt"] == entry_from_disk(new, "copied.txt")  # same bytes, new inode
    assert by_path["changed.txt"] == entry_from_disk(new, "changed.txt")
    assert set(by_path) == {"same.txt", "copied.txt", "changed.txt", "added.txt"}
    assert found.hashed == 3


@pytest.mark.parametrize(
    "links",
    [
        {"etc": "/etc"},
        {"up": "../outside"},
        {"sub/deep": "../../outside"},
        # each link looks contained on its own; followed, sub/e reaches the parent of the root
        {"sub/s": "..", "sub/e": "s/../.."},
    ],
)
def test_inventory_refuses_a_symlink_out_of_the_release(
    tmp_path: Path, links: dict[str, str]
) -> None:
    root = tmp_path / "release"
    write_tree(root, {"index.html": b"x", "sub/a": b"a"}, links)

    with pytest.raises(UnsafeTree, match="symlink"):
        inventory(root)


def test_inventory_accepts_links_that_stay_inside(tmp_path: Path) -> None:
    write_tree(tmp_path, {"sub/a": b"a"}, {"top": "sub", "sub/self": "../sub/a", "gone": "nothing"})

    assert {e.path for e in inventory(tmp_path).entries} == {"sub/a", "top", "sub/self", "gone"}


def test_inventory_refuses_special_files(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")

    with pytest.raises(UnsafeTree, match="pipe"):
        inventory(tmp_path)
