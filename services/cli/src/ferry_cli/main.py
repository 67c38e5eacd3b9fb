"""The `ferry` command: a REST client of the API (tickets, apps, hosts, users, tokens)."""

from __future__ import annotations

import typer
from ferry_events.logs import configure_logging

from ferry_cli import admin, audit, tickets

app = typer.Typer(
    name="ferry",
    help="Ferry: release tickets, apps, hosts, users and API tokens.",
    no_args_is_help=True,
)


@app.callback()
def _logs() -> None:
    # stdout carries --json and export output: logs of the libraries go to stderr, warnings only.
    configure_logging("ferry-cli", "WARNING", json=False)


app.command()(admin.login)
app.command()(admin.hosts)
app.add_typer(tickets.app, name="tickets")
app.add_typer(admin.apps, name="apps")
app.add_typer(admin.users, name="users")
app.add_typer(admin.tokens, name="tokens")
app.command(
    "audit",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)(audit.moved)
