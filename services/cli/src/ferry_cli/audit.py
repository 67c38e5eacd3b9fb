"""`ferry audit …`: moved to `ferry-api audit`, which reads the event log directly where the API
is installed; this command only says so."""

from __future__ import annotations

import typer

MOVED = (
    "the audit commands read the database directly: run `ferry-api audit verify|replay|host|export`"
    " where ferry-api is installed"
)


def moved() -> None:
    """Moved: run `ferry-api audit verify|replay|host|export` where ferry-api is installed."""
    typer.echo(MOVED, err=True)
    raise typer.Exit(1)
