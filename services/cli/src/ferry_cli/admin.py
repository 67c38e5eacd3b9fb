"""`ferry login`, `ferry apps`, `ferry hosts`, `ferry users`, `ferry tokens`."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from ferry_cli import config
from ferry_cli.client import Client
from ferry_cli.output import print_json, print_table

Json = Annotated[bool, typer.Option("--json", help="machine-readable output")]
apps = typer.Typer(help="Apps: their source, staging site and hosts.", no_args_is_help=True)
users = typer.Typer(help="Users (admin).", no_args_is_help=True)
tokens = typer.Typer(help="Your API tokens.", no_args_is_help=True)


def login(
    username: Annotated[str, typer.Option("--username", "-u", prompt=True)],
    password: Annotated[str, typer.Option("--password", "-p", prompt=True, hide_input=True)],
    url: Annotated[str | None, typer.Option("--url", help="the API (default: FERRY_URL)")] = None,
) -> None:
    """Log in and keep the session token in the config file (mode 0600)."""
    current = config.load()
    server = (url or current.url).rstrip("/")
    session = Client(config.Config(url=server, token=None)).post(
        "/auth/login", {"username": username, "password": password}
    )
    path = config.save(server, session["token"])
    Console().print(f"logged in to {server} as {username}; token kept in {path}", markup=False)


def hosts(json_output: Json = False) -> None:
    """Every agent, online or not, and the version of each app it runs."""
    rows = Client().get("/hosts")
    if json_output:
        print_json(rows)
    else:
        print_table("hosts", rows, ("host", "online", "last_seen", "agent_version", "apps"))


@apps.command("list")
def list_apps(json_output: Json = False) -> None:
    """Every app."""
    rows = Client().get("/apps")
    if json_output:
        print_json(rows)
    else:
        items = rows["apps"] if isinstance(rows, dict) else rows
        print_table("apps", items, ("name", "source", "hosts", "target_path", "staging_url"))


@apps.command("show")
def show_app(name: str, json_output: Json = False) -> None:
    """One app and its releases."""
    client = Client()
    app = client.get(f"/apps/{name}")
    releases = client.get(f"/apps/{name}/releases")
    if json_output:
        print_json({"app": app, "releases": releases})
        return
    print_table(f"app {name}", [app], ("name", "source", "hosts", "target_path", "keep_releases"))
    items = releases["releases"] if isinstance(releases, dict) else releases
    print_table("releases", items, ("version", "ticket_id", "digest", "published_at"))


@apps.command("create")
def create_app(
    name: str,
    source_url: Annotated[str, typer.Option("--source", help="git or svn URL")],
    source_type: Annotated[str, typer.Option("--type", help="git or svn")] = "git",
    host: Annotated[list[str] | None, typer.Option("--host", help="a production host")] = None,
    target_path: Annotated[str, typer.Option("--target-path")] = "",
    staging_url: Annotated[str, typer.Option("--staging-url")] = "",
    json_output: Json = False,
) -> None:
    """Create an app (admin)."""
    body = {
        "name": name,
        "source": {"type": source_type, "url": source_url},
        "hosts": host or [],
        "target_path": target_path,
        "staging_url": staging_url,
    }
    created = Client().post("/apps", body)
    if json_output:
        print_json(created)
    else:
        Console().print(f"created app {name}", markup=False)


@users.command("list")
def list_users(json_output: Json = False) -> None:
    """Every user."""
    rows = Client().get("/users")
    if json_output:
        print_json(rows)
    else:
        items = rows["users"] if isinstance(rows, dict) else rows
        print_table("users", items, ("username", "role", "disabled", "created_at"))


@users.command("create")
def create_user(
    username: str,
    role: Annotated[str, typer.Option("--role", help="developer, lead or admin")] = "developer",
    password: Annotated[str, typer.Option("--password", prompt=True, hide_input=True)] = "",
    json_output: Json = False,
) -> None:
    """Create a user (admin)."""
    created = Client().post("/users", {"username": username, "role": role, "password": password})
    if json_output:
        print_json(created)
    else:
        Console().print(f"created {role} {username}", markup=False)


@tokens.command("create")
def create_token(name: str, json_output: Json = False) -> None:
    """A new API token (shown once)."""
    created = Client().post("/tokens", {"name": name})
    if json_output:
        print_json(created)
    else:
        Console().print(created["token"], markup=False)


@tokens.command("list")
def list_tokens(json_output: Json = False) -> None:
    """Your API tokens."""
    rows = Client().get("/tokens")
    if json_output:
        print_json(rows)
    else:
        items = rows["tokens"] if isinstance(rows, dict) else rows
        print_table("tokens", items, ("id", "name", "created_at", "revoked"))


@tokens.command("revoke")
def revoke_token(token_id: str) -> None:
    """Revoke an API token."""
    Client().delete(f"/tokens/{token_id}")
    Console().print(f"revoked {token_id}", markup=False)
