"""`ferry audit …`: read the event log directly (FERRY_DATABASE_URL) and check or replay it."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any, TypeVar

import typer
from ferry_events.backends import open_store
from ferry_events.chain import walk
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ferry_cli.audit_checks import events_until, first_difference, host_history, replay_state
from ferry_cli.output import print_json, print_table
from ferry_cli.scratch import fold, log_batches

app = typer.Typer(
    help="Audit the event log: verify, replay, host history, export.", no_args_is_help=True
)
console = Console(stderr=True)
T = TypeVar("T")

DatabaseUrl = Annotated[
    str,
    typer.Option(
        "--database-url", envvar="FERRY_DATABASE_URL", help="postgresql://… or sqlite:///…"
    ),
]
Json = Annotated[bool, typer.Option("--json", help="machine-readable output")]

CHAIN_BROKEN, PROJECTIONS_DIFFER = 1, 2
ATTEMPTS = 3  # comparisons while live projections keep moving


def _run(database_url: str, work: Callable[[Any], Awaitable[T]]) -> T:
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


@app.command()
def verify(database_url: DatabaseUrl) -> None:
    """Walk the hash chain, rebuild every projection from position 0 and compare with the live
    read models. Exit 0: OK; 1: the chain is broken; 2: a read model differs."""
    code, message = _run(database_url, _verify)
    print(message)
    raise typer.Exit(code)


async def _verify(store: Any) -> tuple[int, str]:
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


async def _checkpoints(store: Any) -> dict[str, int]:
    from ferry_api.projections import all_projections

    return {p.name: await store.checkpoint(p.name) for p in all_projections()}


async def _compare(store: Any, limits: dict[str, int], progress: Progress) -> str | None:
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


async def _tracked(batches: Any, progress: Progress, task: Any) -> Any:
    async for events in batches:
        yield events
        progress.update(task, completed=events[-1].position)


@app.command()
def replay(
    at: Annotated[str, typer.Option("--at", help="an ISO time with zone, or a log position")],
    database_url: DatabaseUrl,
    json_output: Json = False,
) -> None:
    """Every ticket, app release and host as of that moment."""
    try:
        included = events_until(at)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--at") from None
    state = _run(database_url, lambda store: replay_state(store, included))
    if json_output:
        print_json(state)
        return
    print_table("tickets", state["tickets"], ("id", "app", "kind", "state", "author", "version"))
    print_table("releases", state["releases"], ("app", "version", "ticket_id", "digest"))
    print_table("hosts", state["hosts"], ("host", "apps"))


@app.command()
def host(
    name: Annotated[str, typer.Argument(help="the host's name")],
    database_url: DatabaseUrl,
    since: Annotated[datetime | None, typer.Option("--from", help="ISO time")] = None,
    until: Annotated[datetime | None, typer.Option("--to", help="ISO time")] = None,
    json_output: Json = False,
) -> None:
    """Every version that went live on a host: when, ticket, approver, digest check."""
    rows = _run(database_url, lambda store: host_history(store, name, _aware(since), _aware(until)))
    if json_output:
        print_json(
            [
                {
                    "at": row.at.isoformat(),
                    "app": row.app,
                    "version": row.version,
                    "ticket_id": row.ticket_id,
                    "approved_by": row.approved_by,
                    "digest": row.digest,
                    "released_digest": row.released_digest,
                    "digest_ok": row.digest_ok,
                }
                for row in rows
            ]
        )
        return
    table = Table(title=f"went live on {name}")
    for column in ("at", "app", "version", "ticket", "approved by", "digest"):
        table.add_column(column)
    for row in rows:
        check = "[green]matches release[/]" if row.digest_ok else "[red]DIFFERS from release[/]"
        approved = ", ".join(row.approved_by) or "[red]nobody[/]"
        table.add_row(row.at.isoformat(), row.app, str(row.version), row.ticket_id, approved, check)
    Console().print(table)


def _aware(moment: datetime | None) -> datetime | None:
    if moment is not None and moment.tzinfo is None:
        raise typer.BadParameter("give the time with its zone, e.g. 2026-01-31T12:00:00+00:00")
    return moment


@app.command()
def export(
    database_url: DatabaseUrl,
    after: Annotated[int, typer.Option("--after", help="only events after this position")] = 0,
) -> None:
    """The log as JSON lines, one event (with its chain hash) per line, streamed in batches."""
    _run(database_url, lambda store: _export(store, after))


async def _export(store: Any, after: int) -> None:
    out = sys.stdout
    while True:
        events = await store.read_all(after=after, limit=1000)
        if not events:
            break
        out.write("".join(event.model_dump_json() + "\n" for event in events))
        out.flush()
        after = events[-1].position
