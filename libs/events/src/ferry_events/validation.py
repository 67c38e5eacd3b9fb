"""Names, refs and URLs as the wire accepts them: checked at the API's edge and again by agents.

Nothing here may ever be read by git, svn or rsync as an option: no value starts with `-`, and
refs and URLs use a small safe alphabet.
"""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, StringConstraints

APP_NAME = r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$"
HOST_NAME = r"^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$"
USER_NAME = r"^[a-z][a-z0-9._-]{0,63}$"

AppName = Annotated[str, StringConstraints(pattern=APP_NAME)]
HostName = Annotated[str, StringConstraints(pattern=HOST_NAME)]
UserName = Annotated[str, StringConstraints(pattern=USER_NAME)]

_REF = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._/@+-]{0,254}$")
_SVN_REV = re.compile(r"^(\d+|HEAD)$")
SOURCE_SCHEMES = {"git": {"https", "ssh", "file"}, "svn": {"https", "svn", "svn+ssh", "file"}}
# `scheme://userinfo@`: greedy up to the authority's last '@', as URL parsers split it.
_USERINFO = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]*://)([^/?#\s]+)@")
# Over ssh a user name is a login (the key authenticates), so ssh://git@host shows no secret;
# elsewhere a user part alone may be a token (https://TOKEN@host).
_LOGIN_SCHEMES = frozenset({"ssh", "svn+ssh"})
CREDENTIALS_ADVICE = (
    "configure repository credentials for the staging agent in its own environment instead: "
    "a git credential helper or ~/.netrc for https, an ssh key (user names in ~/.ssh/config) "
    "for ssh, svn's auth directory (~/.subversion/auth) for svn; see deploy/README.md"
)


def check_ref(ref: str) -> str:
    """A git ref (branch, tag, commit) or an svn path with an optional @revision."""
    if not _REF.fullmatch(ref):
        raise ValueError("ref may hold only letters, digits and . _ / @ + -, and not start with -")
    if ".." in ref or "//" in ref or "@{" in ref or ref.endswith((".lock", "/", ".")):
        raise ValueError("ref may not contain '..', '//' or '@{', nor end with '/', '.' or '.lock'")
    if "@" in ref:
        _, _, rev = ref.rpartition("@")
        if not _SVN_REV.fullmatch(rev):
            raise ValueError("an svn revision after '@' must be a number or HEAD")
    return ref


def check_source_url(url: str, kind: str, allow_file: bool = False) -> str:
    """A repository URL of an allowed scheme whose host part cannot be read as an option."""
    allowed = SOURCE_SCHEMES.get(kind)
    if allowed is None:
        raise ValueError(f"source type must be one of {sorted(SOURCE_SCHEMES)}")
    if any(c.isspace() or ord(c) < 32 for c in url) or "::" in url.split("/")[0]:
        raise ValueError("URL may not contain whitespace, control characters or a transport '::'")
    parts = urlsplit(url)
    if parts.scheme not in allowed or (parts.scheme == "file" and not allow_file):
        names = sorted(allowed - ({"file"} if not allow_file else set()))
        raise ValueError(f"URL scheme must be one of {names}")
    if parts.scheme == "file":
        if parts.netloc or not parts.path.startswith("/"):
            raise ValueError("a file URL must be file:///absolute/path")
        return url
    host = parts.hostname or ""
    if not host or host.startswith("-") or (parts.username or "").startswith("-"):
        raise ValueError("URL needs a host, and neither host nor user may start with '-'")
    if parts.path.startswith("-") or "/-" in parts.path[:2]:
        raise ValueError("URL path may not start with '-'")
    return url


def _redact_match(match: re.Match[str]) -> str:
    scheme, userinfo = match.group(1), match.group(2)
    if scheme[:-3].lower() in _LOGIN_SCHEMES and ":" not in userinfo:
        return match.group(0)
    return f"{scheme}***@"


def redact_credentials(text: str) -> str:
    """`https://user:TOKEN@host/...` -> `https://***@host/...` wherever a URL in `text` carries
    a secret in its user part (an ssh login name alone is kept)."""
    return _USERINFO.sub(_redact_match, text)


def redact_credentials_in(value: Any) -> Any:
    """`value` (JSON: dicts, lists, strings) with redact_credentials applied to every string."""
    if isinstance(value, str):
        return redact_credentials(value)
    if isinstance(value, dict):
        return {key: redact_credentials_in(item) for key, item in value.items()}
    if isinstance(value, list):
        return [redact_credentials_in(item) for item in value]
    return value


def check_no_credentials(url: str) -> str:
    """Refuse a URL with a password or token in it: it would be shown to every user and kept
    for ever in the append-only log."""
    if redact_credentials(url) != url:
        raise ValueError(
            f"URL may not carry credentials (user:password@ or a token@); {CREDENTIALS_ADVICE}"
        )
    return url


SourceRef = Annotated[str, AfterValidator(check_ref)]
