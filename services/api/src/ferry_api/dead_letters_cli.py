"""`ferry-api dead-letters list|show ID|replay ID|replay --all`: the messages the API's and the
agents' consumers gave up on, with the reason, read from the broker (FERRY_BROKER_URL, or
--broker-url); a replay puts them back where they were going, as their first sender.

The queues looked at: --queue (any number of times), else the API's, the staging agent's, the
publisher's and the queue of every host of a configured app (read from the store). Exit codes: 0
done, 1 nothing matched or the broker refused (a replay, a read), 2 no connection.

The broker user needs read on the `.dead` queues and write where the letters go; a replay as
the first sender (the default: the API takes a report only from its agent) needs the
`impersonator` tag. The least-privilege API user has neither: use an operator's login.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from ferry_events.backends import open_store
from ferry_events.dead_letters import (
    DeadLetter,
    DeadLetterError,
    DeadLetters,
    find,
    known_queues,
    open_dead_letters,
)

from ferry_api.readmodels.apps import APPS
from ferry_api.settings import Settings

NOT_FOUND, UNREACHABLE = 1, 2


def add_dead_letters_parser(commands: Any) -> None:
    """`dead-letters` and its three commands, under ferry-api's subcommands."""
    dead = commands.add_parser("dead-letters", help="list, show, replay what consumers gave up")
    sub = dead.add_subparsers(dest="dead_letters", required=True)
    listing = sub.add_parser("list", help="every dead letter: queue, id, type, when, why")
    show = sub.add_parser("show", help="one dead letter, its headers and body")
    show.add_argument("id", help="the message id")
    replay = sub.add_parser("replay", help="publish it again where it was going, then drop it")
    which = replay.add_mutually_exclusive_group(required=True)
    which.add_argument("id", nargs="?", help="the message id")
    which.add_argument("--all", action="store_true", help="every dead letter of the queues")
    replay.add_argument(
        "--as-me",
        action="store_true",
        help="publish as the broker URL's user, not as the first sender (which the broker "
        "allows only a user tagged impersonator); the API takes a report only from its agent",
    )
    for command in (listing, show, replay):
        command.add_argument("--queue", action="append", help="a work queue (not its .dead)")
        command.add_argument("--broker-url", help="amqp(s)://… (default: the API's)")
    for command in (listing, show):
        command.add_argument("--json", action="store_true", help="JSON instead of text")


def run_dead_letters(args: argparse.Namespace, settings: Settings) -> int:
    return asyncio.run(_run(args, settings))


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    url = args.broker_url or settings.broker_url
    queues = args.queue or await _default_queues(settings)
    try:
        letters = await open_dead_letters(url)
    except (ValueError, OSError) as error:
        print(f"ferry-api: cannot read dead letters: {error}", file=sys.stderr)
        return UNREACHABLE
    try:
        return await _command(args, letters, queues)
    except DeadLetterError as error:
        print(f"ferry-api: {error}", file=sys.stderr)
        return NOT_FOUND
    finally:
        await letters.close()


async def _command(args: argparse.Namespace, letters: DeadLetters, queues: list[str]) -> int:
    if args.dead_letters == "replay":
        replayed = await letters.replay(
            queues, None if args.all else args.id, as_sender=not args.as_me
        )
        for letter in replayed:
            print(f"replayed {letter.message_id} to {letter.exchange} {letter.routing_key}")
        if not replayed and not args.all:
            raise DeadLetterError(f"no dead letter {args.id!r} in {', '.join(queues)}")
        return 0
    found = await letters.list_letters(queues)
    if args.dead_letters == "show":
        found = find(found, args.id)
    for letter in found:
        print(_shown(letter, args.json, full=args.dead_letters == "show"))
    return 0


def _shown(letter: DeadLetter, as_json: bool, *, full: bool) -> str:
    fields = letter.summary()
    if full:
        fields |= {"headers": letter.headers, "body": _body(letter.body)}
    if as_json:
        return json.dumps(fields, ensure_ascii=False)
    if not full:
        return "\t".join(
            str(fields[k]) for k in ("queue", "message_id", "type", "dead_at", "reason")
        )
    return "\n".join(
        f"{k}: {json.dumps(v, ensure_ascii=False) if k == 'body' else v}" for k, v in fields.items()
    )


def _body(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return body.decode(errors="replace")


async def _default_queues(settings: Settings) -> list[str]:
    """Every Ferry work queue; the hosts' from the apps in the store, when there is one."""
    if not settings.database_url:
        return known_queues()
    try:
        store = await open_store(settings.store_url())
    except Exception as error:  # the broker's letters are still worth listing
        print(
            f"ferry-api: hosts' queues left out, the store is unreadable: {error}", file=sys.stderr
        )
        return known_queues()
    try:
        apps = await store.find(APPS, limit=100_000)
    finally:
        await store.close()
    return known_queues(host for app in apps for host in app.get("hosts", []))
