"""`python -m ferry_cli`: the same as the `ferry` command."""

from ferry_cli.main import app

app()
