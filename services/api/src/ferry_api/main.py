"""`ferry-api`: serve the API, migrate the store, create the first admin, audit the log, make
the key that signs the agents' commands.
(The embedded demo of `make run` is `ferry-demo`, in services/demo.)"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import re
import sys
from pathlib import Path

import structlog
import uvicorn
from ferry_events.backends import open_store
from ferry_events.logs import configure_logging
from ferry_events.signing import generate_key
from ferry_events.validation import USER_NAME

from ferry_api.audit.cli import add_audit_parser, anchor_defaults, run_audit
from ferry_api.bootstrap import running
from ferry_api.commands import accounts
from ferry_api.dead_letters_cli import add_dead_letters_parser, run_dead_letters
from ferry_api.domain.errors import Refused
from ferry_api.http.asgi import asgi_app
from ferry_api.settings import InsecureSettings, Settings

log = structlog.get_logger()

MIN_PASSWORD = 8


class CommandFailed(Exception):
    """A command refused its input; the message is for the operator."""


async def serve(settings: Settings) -> None:
    async with running(settings) as runtime:
        config = uvicorn.Config(
            asgi_app(runtime),
            host=settings.host,
            port=settings.port,
            log_config=None,
            access_log=False,
            proxy_headers=False,  # the app believes FERRY_TRUSTED_PROXIES alone (http/asgi.py)
        )
        await uvicorn.Server(config).serve()


async def migrate(settings: Settings) -> None:
    store = await open_store(settings.store_url())
    try:
        await store.migrate()
    finally:
        await store.close()
    print("schema is up to date")


def admin_password() -> str:
    """FERRY_ADMIN_PASSWORD, else asked twice on the terminal."""
    password = os.environ.get("FERRY_ADMIN_PASSWORD")
    if password is None:
        if not sys.stdin.isatty():
            raise CommandFailed("set FERRY_ADMIN_PASSWORD or run this on a terminal")
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            raise CommandFailed("the passwords differ")
    if len(password) < MIN_PASSWORD:
        raise CommandFailed(f"the password needs at least {MIN_PASSWORD} characters")
    return password


async def create_admin(settings: Settings, username: str, password: str) -> None:
    # No workers: the serving API processes project the new user from the log.
    async with running(settings, start_workers=False) as runtime:
        await accounts.create_user(runtime, username, "admin", password, by="cli", wait=False)
    print(f"admin '{username}' created")


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ferry-api", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="serve the REST API and web UI")
    sub.add_parser("migrate", help="create or upgrade the store's schema (idempotent)")
    admin = sub.add_parser(
        "create-admin",
        help="create an admin account (the first one); "
        "password from FERRY_ADMIN_PASSWORD or a prompt",
    )
    admin.add_argument("username")
    keys = sub.add_parser("signing-key", help="the key the API signs agents' commands with")
    key_actions = keys.add_subparsers(dest="key_command", required=True)
    generate = key_actions.add_parser(
        "generate",
        help="write a new Ed25519 key to PATH (0600, for FERRY_SIGNING_KEY_FILE) and its public "
        "key to PATH.pub (for the agents' trusted keys); print its key id",
    )
    generate.add_argument("path", type=Path)
    add_audit_parser(sub)
    add_dead_letters_parser(sub)
    return parser


def generate_signing_key(path: Path) -> None:
    """The key id on stdout (for scripts), what goes where on stderr."""
    try:
        key_id = generate_key(path)
    except FileExistsError:
        raise CommandFailed(f"{path} exists already; a key is never overwritten") from None
    except OSError as error:
        raise CommandFailed(f"cannot write {path}: {error.strerror}") from None
    print(key_id)
    print(
        f"private key {path}: FERRY_SIGNING_KEY_FILE of the API only; public key {path}.pub: "
        "the agents' trusted keys (FERRY_TRUSTED_KEYS, trusted_keys in agent.toml)",
        file=sys.stderr,
    )


def cli(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.command == "signing-key":  # needs no settings: it may run before any exist
        try:
            generate_signing_key(args.path)
        except CommandFailed as exc:
            sys.exit(f"ferry-api: {exc}")
        return
    settings = Settings()
    if args.command == "audit":
        # stdout carries --json and export output: library logs go to stderr, warnings only.
        configure_logging("ferry-api", "WARNING", json=False)
        sys.exit(run_audit(args, settings.store_url(), anchor_defaults(settings)))
    if args.command == "dead-letters":  # stdout carries the letters; logs go to stderr
        configure_logging("ferry-api", "WARNING", json=False)
        sys.exit(run_dead_letters(args, settings))
    configure_logging("api", settings.log_level)
    try:
        if args.command == "serve":
            asyncio.run(serve(settings.checked()))
        elif args.command == "migrate":
            asyncio.run(migrate(settings))
        elif args.command == "create-admin":
            if not re.match(USER_NAME, args.username):
                raise CommandFailed("a username is lowercase letters, digits and . _ -")
            asyncio.run(create_admin(settings, args.username, admin_password()))
    except (InsecureSettings, CommandFailed) as exc:
        sys.exit(f"ferry-api: {exc}")
    except Refused as exc:
        sys.exit(f"ferry-api: {exc.message}")
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    cli()
