"""`ferry tickets …`: file, list, read, act on and watch release tickets."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from ferry_cli.client import Client
from ferry_cli.output import print_json, print_table
from ferry_cli.watch import watch_ticket

app = typer.Typer(help="Release tickets.", no_args_is_help=True)
Json = Annotated[bool, typer.Option("--json", help="machine-readable output")]
TicketId = Annotated[str, typer.Argument(help="the ticket's id")]
Comment = Annotated[str, typer.Option("--comment", "-c", help="a comment kept with the step")]
Reason = Annotated[str, typer.Option("--reason", "-r", help="why")]
COLUMNS = ("id", "app", "kind", "state", "author", "ref", "version", "updated_at")


def show_ticket(ticket: dict[str, Any], json_output: bool) -> None:
    if json_output:
        print_json(ticket)
        return
    out = Console()
    head = f"{ticket['id']} {ticket['app']} {ticket['kind']}: {ticket['state']}"
    out.print(escape(head), style="bold")
    for name in ("author", "reason", "ref", "version", "commit", "tree", "staging_url"):
        if ticket.get(name) not in (None, ""):
            out.print(f"  {name}: {ticket[name]}", highlight=False, markup=False)
    hosts = [{"host": host, **row} for host, row in (ticket.get("hosts") or {}).items()]
    if hosts:
        print_table("hosts", hosts, ("host", "state", "version", "attempt", "error"))
    actions = ", ".join(ticket.get("allowed_actions") or []) or "none"
    out.print(f"  you may: {actions}", highlight=False, markup=False)


@app.command()
def submit(
    app_name: Annotated[str, typer.Argument(metavar="APP", help="the app to release")],
    reason: Annotated[str, typer.Option("--reason", "-r", help="why this release")],
    ref: Annotated[
        str | None, typer.Option("--ref", help="deploy: git ref or svn path[@rev]")
    ] = None,
    rollback_to: Annotated[
        int | None, typer.Option("--rollback-to", help="rollback: a released version")
    ] = None,
    json_output: Json = False,
) -> None:
    """File a deploy ticket (--ref) or a rollback ticket (--rollback-to N)."""
    body: dict[str, Any] = {"app": app_name, "reason": reason}
    if rollback_to is not None:
        body.update(kind="rollback", version=rollback_to)
    else:
        body.update(kind="deploy", ref=ref)
    show_ticket(Client().post("/tickets", body), json_output)


@app.command("list")
def list_tickets(
    app_name: Annotated[str | None, typer.Option("--app", help="only this app")] = None,
    state: Annotated[str | None, typer.Option("--state", help="only this state")] = None,
    author: Annotated[str | None, typer.Option("--author", help="only this author")] = None,
    limit: Annotated[int, typer.Option("--limit", help="at most this many")] = 50,
    json_output: Json = False,
) -> None:
    """Tickets, newest first."""
    page = Client().get("/tickets", app=app_name, state=state, author=author, limit=limit)
    if json_output:
        print_json(page)
    else:
        print_table(f"tickets ({page['total']})", page["tickets"], COLUMNS)


@app.command()
def show(ticket_id: TicketId, json_output: Json = False) -> None:
    """One ticket: its state, per-host progress and the actions you may take."""
    show_ticket(Client().get(f"/tickets/{ticket_id}"), json_output)


@app.command()
def watch(ticket_id: TicketId) -> None:
    """Follow a ticket live (per-host progress) until it settles."""
    raise typer.Exit(watch_ticket(Client(), ticket_id))


def _act(ticket_id: str, action: str, json_output: bool, **body: Any) -> None:
    given = {k: v for k, v in body.items() if v not in (None, "")}
    show_ticket(Client().post(f"/tickets/{ticket_id}/{action}", given or None), json_output)


def _register_comment_action(action: str, help_text: str) -> None:
    def command(ticket_id: TicketId, comment: Comment = "", json_output: Json = False) -> None:
        _act(ticket_id, action, json_output, comment=comment)

    command.__doc__ = help_text
    app.command(action)(command)


def _register_reason_action(action: str, help_text: str) -> None:
    def command(ticket_id: TicketId, reason: Reason = "", json_output: Json = False) -> None:
        _act(ticket_id, action, json_output, reason=reason)

    command.__doc__ = help_text
    app.command(action)(command)


for _action, _help in (
    ("return", "Send the ticket back to its author."),
    ("pass-tests", "Record that the staged tree passed its tests."),
    ("approve", "Approve the release (a lead, not the author)."),
    ("publish", "Release the approved tree to every host."),
    ("retry", "Sync again the hosts that failed."),
):
    _register_comment_action(_action, _help)
for _action, _help in (
    ("reject", "Refuse the release, with a reason."),
    ("cancel", "Cancel the ticket."),
):
    _register_reason_action(_action, _help)


@app.command()
def resubmit(
    ticket_id: TicketId,
    reason: Reason = "",
    ref: Annotated[str | None, typer.Option("--ref", help="a new ref (default: the same)")] = None,
    json_output: Json = False,
) -> None:
    """Stage the ticket again (optionally a new ref); earlier approvals are cleared."""
    _act(ticket_id, "resubmit", json_output, reason=reason, ref=ref)
