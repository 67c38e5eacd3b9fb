"""`ferry-api`: serve the API, run the embedded demo, migrate the store, create the first admin."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import re
import sys

import structlog
import uvicorn
from ferry_events.backends import open_store
from ferry_events.logs import configure_logging
from ferry_events.validation import USER_NAME

from ferry_api import accounts
from ferry_api.app import create_app
from ferry_api.demo import run_demo
from ferry_api.errors import ApiError
from ferry_api.runtime import running
from ferry_api.settings import InsecureSettings, Settings

log = structlog.get_logger()

MIN_PASSWORD = 8


class CommandFailed(Exception):
    """A command refused its input; the message is for the operator."""


async def serve(settings: Settings) -> None:
    async with running(settings) as runtime:
        config = uvicorn.Config(
            create_app(runtime),
            host=settings.host,
            port=settings.port,
            log_config=None,
            access_log=False,
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


def cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="ferry-api", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="serve the REST API and web UI")
    sub.add_parser("demo", help="everything in one process with demo data (`make run`)")
    sub.add_parser("migrate", help="create or upgrade the store's schema (idempotent)")
    admin = sub.add_parser(
        "create-admin",
        help="create an admin account (the first one); "
        "password from FERRY_ADMIN_PASSWORD or a prompt",
    )
    admin.add_argument("username")
    args = parser.parse_args(argv)
    settings = Settings()
    configure_logging("api", settings.log_level, json=args.command != "demo")
    try:
        if args.command == "serve":
            asyncio.run(serve(settings.checked()))
        elif args.command == "demo":
            asyncio.run(run_demo())
        elif args.command == "migrate":
            asyncio.run(migrate(settings))
        elif args.command == "create-admin":
            if not re.match(USER_NAME, args.username):
                raise CommandFailed("a username is lowercase letters, digits and . _ -")
            asyncio.run(create_admin(settings, args.username, admin_password()))
    except (InsecureSettings, CommandFailed) as exc:
        sys.exit(f"ferry-api: {exc}")
    except ApiError as exc:
        sys.exit(f"ferry-api: {exc.message}")
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    cli()
