"""`ferry-api`: serve the API, run the embedded demo, migrate the store, create the first admin."""

from __future__ import annotations

import argparse
import asyncio
import sys

import structlog
import uvicorn

from ferry_api.app import create_app
from ferry_api.runtime import running
from ferry_api.settings import InsecureSettings, Settings
from ferry_events.backends import open_store
from ferry_events.logs import configure_logging

log = structlog.get_logger()


async def serve(settings: Settings) -> None:
    async with running(settings) as runtime:
        config = uvicorn.Config(create_app(runtime), host=settings.host, port=settings.port,
                                log_config=None, access_log=False)
        await uvicorn.Server(config).serve()


async def migrate(settings: Settings) -> None:
    store = await open_store(settings.store_url())
    try:
        await store.migrate()
    finally:
        await store.close()
    print("schema is up to date")


def cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="ferry-api", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="serve the REST API and web UI")
    sub.add_parser("migrate", help="create or upgrade the store's schema (idempotent)")
    args = parser.parse_args(argv)
    settings = Settings()
    configure_logging("api", settings.log_level)
    try:
        if args.command == "serve":
            asyncio.run(serve(settings.checked()))
        elif args.command == "migrate":
            asyncio.run(migrate(settings))
    except InsecureSettings as exc:
        sys.exit(f"ferry-api: {exc}")
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    cli()
