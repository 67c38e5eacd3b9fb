"""Provision a RabbitMQ vhost for Ferry: one broker user per part (the API, the staging agent, the
publisher, one per production host) with least-privilege permissions, and the exchanges, queues
and bindings they use. Idempotent: run it again after adding a host. See README.md.

    uv run python deploy/broker/setup.py --vhost ferry --host web-1 --host web-2 \\
        --password-dir /etc/ferry/broker-secrets

A password is read from <password-dir>/<user>.password, or generated into that file (mode 0600)
for a user the broker does not have yet. Passwords never appear on a command line, in the output
or in a log; rabbitmqctl gets salted hashes on its standard input.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import stat
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from ferry_events.topology import BrokerUsers
from ferry_events.validation import HOST_NAME
from grants import definitions, grants

PREFIX = re.compile(r"^[A-Za-z0-9._-]*$")
ATTEMPTS = 3  # rabbitmqctl can fail for a moment on a busy node; both calls are idempotent


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vhost", required=True)
    parser.add_argument("--host", action="append", default=[], help="a production host")
    parser.add_argument("--prefix", default="ferry-", help="of every user name (ferry-)")
    parser.add_argument("--password-dir", type=Path, default=Path("broker-secrets"))
    parser.add_argument("--node", help="rabbitmqctl -n: the node to provision")
    parser.add_argument(
        "--write-definitions",
        type=Path,
        metavar="FILE",
        help="write the definitions (mode 0600) for a broker without rabbitmqctl, import nothing",
    )
    args = parser.parse_args(argv)
    bad = [h for h in args.host if not re.match(HOST_NAME, h)]
    if bad:
        parser.error(f"not a host name: {', '.join(map(repr, bad))}")
    if not PREFIX.match(args.prefix):
        parser.error("--prefix may hold only letters, digits, '.', '_' and '-'")
    if not args.vhost.strip():
        parser.error("--vhost must not be empty")
    return args


def rabbitmqctl(node: str | None, *args: str, stdin: str = "") -> str:
    command = ["rabbitmqctl", *(["-n", node] if node else []), "-q", *args]
    for attempt in range(1, ATTEMPTS + 1):
        done = subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=120)
        if done.returncode == 0:
            return done.stdout
        if attempt == ATTEMPTS:
            raise SystemExit(f"rabbitmqctl {args[0]} failed: {done.stderr.strip()}")
        time.sleep(2)
    raise AssertionError("unreachable")


def existing_users(node: str | None) -> set[str]:
    return {
        row["user"] for row in json.loads(rabbitmqctl(node, "list_users", "--formatter", "json"))
    }


def read_password(path: Path) -> str:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        print(f"warning: {path} is readable by others; chmod 600 it", file=sys.stderr)
    password = path.read_text().strip()
    if not password:
        raise SystemExit(f"{path} is empty")
    return password


def create_password(path: Path) -> str:
    password = secrets.token_urlsafe(32)  # URL-safe: it goes into amqps://user:password@…
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(password)  # no newline: `kubectl create secret --from-file` takes it as is
    return password


def passwords(names: list[str], folder: Path, existing: set[str] | None) -> dict[str, str]:
    """The passwords to set; a user the broker has, without a password file, keeps its own."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    chosen: dict[str, str] = {}
    for name in names:
        path = folder / f"{name}.password"
        if path.exists():
            chosen[name] = read_password(path)
            print(f"{name}: password from {path}")
        elif existing is not None and name in existing:
            print(f"{name}: kept its current password (no {path})")
        else:
            chosen[name] = create_password(path)
            print(f"{name}: new password in {path}")
    return chosen


def write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(text)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    users = BrokerUsers(args.prefix)
    wanted = grants(users, args.host)
    offline = args.write_definitions is not None
    existing = None if offline else existing_users(args.node)
    chosen = passwords([g.user for g in wanted], args.password_dir, existing)
    document = json.dumps(definitions(args.vhost, wanted, chosen, args.host), indent=1)
    if offline:
        write_private(args.write_definitions, document)
        print(f"definitions for vhost {args.vhost!r} written to {args.write_definitions}")
        return
    rabbitmqctl(args.node, "import_definitions", stdin=document)
    print(f"vhost {args.vhost!r}: {len(wanted)} users, their permissions and queues provisioned")


if __name__ == "__main__":
    main()
