"""Refs, URLs and names as the edge accepts them: nothing a tool could read as an option."""

from __future__ import annotations

import pytest
from ferry_events.validation import check_ref, check_source_url


@pytest.mark.parametrize(
    "ref",
    ["main", "release/1.2", "v1.2.3", "a94a8fe5ccb1", "trunk@12", "branches/x@HEAD", "feat_x"],
)
def test_good_refs_pass(ref: str) -> None:
    assert check_ref(ref) == ref


@pytest.mark.parametrize(
    "ref",
    [
        "--upload-pack=touch /tmp/x",
        "-x",
        "$(touch x)",
        "`id`",
        "a..b",
        "a b",
        "main;id",
        "x@{1}",
        "refs/heads/x.lock",
        "trunk@abc",
        "",
        "a//b",
        "x\n",
    ],
)
def test_bad_refs_are_refused(ref: str) -> None:
    with pytest.raises(ValueError):
        check_ref(ref)


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("https://git.example.com/shop.git", "git"),
        ("ssh://git@git.example.com/shop.git", "git"),
        ("svn://svn.example.com/repo", "svn"),
        ("svn+ssh://svn.example.com/repo", "svn"),
    ],
)
def test_good_urls_pass(url: str, kind: str) -> None:
    assert check_source_url(url, kind) == url


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("ext::sh -c touch% /tmp/pwned", "git"),
        ("ssh://-oProxyCommand=touch /tmp/x/y", "git"),
        ("ssh://-oProxyCommand=x@host/y", "git"),
        ("http://git.example.com/x.git", "git"),
        ("file:///srv/repo.git", "git"),
        ("svn://svn.example.com/repo", "git"),
        ("git://h/x", "git"),
        ("https://", "git"),
        ("https://h/x y", "git"),
        ("fd::17", "git"),
    ],
)
def test_bad_urls_are_refused(url: str, kind: str) -> None:
    with pytest.raises(ValueError):
        check_source_url(url, kind)


def test_file_urls_only_where_allowed() -> None:
    assert check_source_url("file:///srv/repo.git", "git", allow_file=True)
    with pytest.raises(ValueError):
        check_source_url("file://remote/srv/repo.git", "git", allow_file=True)
