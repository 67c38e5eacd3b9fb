"""`python -m ferry_demo`: the same as `ferry-demo`."""

from ferry_demo.main import cli

cli()
