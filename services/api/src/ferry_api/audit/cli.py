"""`ferry-api audit verify|replay|host|export`: read the event log directly (--database-url,
else the API's own FERRY_DATABASE_URL) and check, replay or export it. Exit codes of verify:
0 OK, 1 the hash chain is broken, 2 a read model differs, 3 an anchor is no longer in the log
(its tail was cut) or is not signed by a trusted key."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from ferry_events.anchors import AnchorError, check_anchors, open_sink
from ferry_events.backends import open_store
from ferry_events.chain import walk
from ferry_events.envelope import StoredEvent
from ferry_events.projection import LogWithReadModels
from ferry_events.signing import BadKey, load_public_keys
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ferry_api.audit.checks import events_until, first_difference, host_history, replay_state
from ferry_api.audit.scratch import fold, log_batches
from ferry_api.readmodels import all_projections

console = Console(stderr=True)
T = TypeVar("T")

CHAIN_BROKEN, PROJECTIONS_DIFFER, ANCHOR_BROKEN = 1, 2, 3
ATTEMPTS = 3  # comparisons while live projections keep moving


def add_audit_parser(commands: Any) -> None:
    """`audit` and its four commands, under ferry-api's subcommands."""
    audit = commands.add_parser("audit", help="verify, replay, host history, export of the log")
    sub = audit.add_subparsers(dest="audit", required=True)
    verify = sub.add_parser("verify", help="walk the hash chain, rebuild and compare read models")
    replay = sub.add_parser("replay", help="every ticket, release and host as of a moment")
    replay.add_argument("--at", required=True, type=_moment, help="ISO time with zone, or position")
    host = sub.add_parser("host", help="every version that went live on a host")
    host.add_argument("name", help="the host's name")
    host.add_argument("--from", dest="since", type=_aware, help="ISO time with zone")
    host.add_argument("--to", dest="until", type=_aware, help="ISO time with zone")
    export = sub.add_parser("export", help="the log as JSON lines, one event per line")
    export.add_argument("--after", type=int, default=0, help="only events after this position")
    for command in (verify, replay, host, export):
        command.add_argument(
            "--database-url", help="postgresql://… or sqlite:///… (default: the API's)"
        )
    for command in (replay, host):
        command.add_argument("--json", action="store_true", help="machine-readable output")
    verify.add_argument(
        "--anchors", help="anchor sink: a directory or git:/repo (default: the API's)"
    )
    verify.add_argument("--trusted-keys", help="the API's .pub file(s) or a directory of them")


def anchor_defaults(settings: Any) -> tuple[str | None, str | None]:
    """The API's own anchor sink and the public half of its signing key."""
    key = settings.signing_key_file
    return settings.anchor_sink, (f"{key}.pub" if key is not None else None)


def run_audit(
    args: argparse.Namespace,
    default_url: str,
    anchors: tuple[str | None, str | None] = (None, None),
) -> int:
    """Run the parsed audit command; its exit code."""
    url: str = args.database_url or default_url
    if args.audit == "verify":
        code, message = _run(url, _verify)
        print(message)
        sink, keys = args.anchors or anchors[0], args.trusted_keys or anchors[1]
        if code == 0 and sink:
            code, message = _run(url, lambda store: _verify_anchors(store, sink, keys))
            print(message)
        return code
    if args.audit == "replay":
        state = _run(url, lambda store: replay_state(store, args.at))
        _print_replay(state, json_output=args.json)
    elif args.audit == "host":
        rows = _run(url, lambda store: host_history(store, args.name, args.since, args.until))
        _print_host(args.name, rows, json_output=args.json)
    else:
        _run(url, lambda store: _export(store, args.after))
    return 0


def _moment(text: str) -> Callable[[StoredEvent], bool]:
    try:
        return events_until(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _aware(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(
            "give the time with its zone, e.g. 2026-01-31T12:00:00+00:00"
        )
    return moment


def _run(database_url: str, work: Callable[[LogWithReadModels], Awaitable[T]]) -> T:
    async def main() -> T:
        store = await open_store(database_url)
        try:
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(main())


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


async def _verify(store: LogWithReadModels) -> tuple[int, str]:
    end = await store.last_position()
    with _progress() as progress:
        task = progress.add_task("hash chain", total=end)
        report = await walk(_tracked(log_batches(store, end), progress, task))
        if not report.ok:
            return CHAIN_BROKEN, str(report)
        for _ in range(ATTEMPTS):
            limits = await _checkpoints(store)
            difference = await _compare(store, limits, progress)
            # A live projection that moved while we compared is no evidence: compare again.
            if difference is None or await _checkpoints(store) == limits:
                break
    if difference is not None:
        return PROJECTIONS_DIFFER, difference
    return 0, f"OK: {report.events} events, hash chain intact, {len(limits)} projections match"


async def _verify_anchors(store: LogWithReadModels, sink: str, keys: str | None) -> tuple[int, str]:
    if keys is None:
        return ANCHOR_BROKEN, "anchors: --trusted-keys names no key to check them with"
    try:
        trusted = load_public_keys(keys)
        report = await check_anchors(store, open_sink(sink).read(), trusted)
    except (AnchorError, BadKey) as error:
        return ANCHOR_BROKEN, f"anchors: {error}"
    return (0 if report.ok else ANCHOR_BROKEN), str(report)


async def _checkpoints(store: LogWithReadModels) -> dict[str, int]:
    return {p.name: await store.checkpoint(p.name) for p in all_projections()}


async def _compare(
    store: LogWithReadModels, limits: dict[str, int], progress: Progress
) -> str | None:
    """Rebuild each projection up to its live checkpoint; the first difference, if any."""
    until = max(limits.values(), default=0)
    task = progress.add_task("rebuild", total=until)
    models, projections = await fold(
        log_batches(store, until), limits, lambda at: progress.update(task, completed=at)
    )
    progress.remove_task(task)
    for projection in projections:
        for collection in projection.collections:
            difference = await first_difference(store, models, collection)
            if difference is not None:
                return f"{difference} (projection {projection.name})"
    return None


async def _tracked(
    batches: AsyncIterator[list[StoredEvent]], progress: Progress, task: Any
) -> AsyncIterator[list[StoredEvent]]:
    async for events in batches:
        yield events
        progress.update(task, completed=events[-1].position)


async def _export(store: LogWithReadModels, after: int) -> None:
    out = sys.stdout
    while True:
        events = await store.read_all(after=after, limit=1000)
        if not events:
            break
        out.write("".join(event.model_dump_json() + "\n" for event in events))
        out.flush()
        after = events[-1].position


def _print_replay(state: dict[str, list[dict[str, Any]]], *, json_output: bool) -> None:
    if json_output:
        print(json.dumps(state, indent=2, ensure_ascii=False, default=str))
        return
    _table("tickets", state["tickets"], ("id", "app", "kind", "state", "author", "version"))
    _table("releases", state["releases"], ("app", "version", "ticket_id", "digest"))
    _table("hosts", state["hosts"], ("host", "apps"))


def _print_host(name: str, rows: Sequence[Any], *, json_output: bool) -> None:
    if json_output:
        print(json.dumps([row.as_json() for row in rows], indent=2, ensure_ascii=False))
        return
    table = Table(title=f"went live on {name}")
    for column in ("at", "app", "version", "ticket", "approved by", "digest"):
        table.add_column(column)
    for row in rows:
        check = "[green]matches release[/]" if row.digest_ok else "[red]DIFFERS from release[/]"
        approved = ", ".join(row.approved_by) or "[red]nobody[/]"
        table.add_row(row.at.isoformat(), row.app, str(row.version), row.ticket_id, approved, check)
    Console().print(table)


def _table(title: str, rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(escape(_cell(row.get(column))) for column in columns))
    Console().print(table)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False)
    return str(value)
