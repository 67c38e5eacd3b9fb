"""`ferry tickets watch`: the ticket's per-host progress, redrawn on every event of the ticket
from the API's event stream, until nothing is left for the system to do."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from ferry_cli.client import Client

MOVING = frozenset({"staging_pending", "staging", "publishing"})  # the system acts next
FAILED = frozenset({"staging_failed", "publish_failed"})


def watch_ticket(client: Client, ticket_id: str) -> int:
    """Returns the exit code: 0 once the ticket settles well, 1 if it settled as failed."""
    # Stream from the ticket's last event on: nothing that happens after this read is missed.
    timeline = client.get(f"/tickets/{ticket_id}/events")["events"]
    after = timeline[-1]["position"] if timeline else 0
    ticket = client.get(f"/tickets/{ticket_id}")
    with Live(_render(ticket), auto_refresh=False) as live:
        if ticket["state"] in MOVING:
            for event in client.stream_events(after):
                if _concerns(event, ticket_id):
                    ticket = client.get(f"/tickets/{ticket_id}")
                    live.update(_render(ticket), refresh=True)
                    if ticket["state"] not in MOVING:
                        break
        live.refresh()
    return 1 if ticket["state"] in FAILED else 0


def _concerns(event: dict[str, Any], ticket_id: str) -> bool:
    data = event.get("data") or {}
    return event.get("stream") == f"ticket-{ticket_id}" or data.get("ticket_id") == ticket_id


def _render(ticket: dict[str, Any]) -> Group:
    title = Text(f"{ticket['id']} {ticket['app']}: {ticket['state']}", style="bold")
    table = Table("host", "state", "version", "attempt", "files", "seconds", "error")
    for host, row in sorted((ticket.get("hosts") or {}).items()):
        table.add_row(
            host,
            _coloured(row.get("state")),
            *(_text(row.get(name)) for name in ("version", "attempt", "files", "seconds", "error")),
        )
    return Group(title, table)


def _coloured(state: Any) -> str:
    colour = {"completed": "green", "failed": "red"}.get(str(state), "yellow")
    return f"[{colour}]{escape(_text(state))}[/]"


def _text(value: Any) -> str:
    return "" if value is None else str(value)
