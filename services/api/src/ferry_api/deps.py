"""Annotated dependencies that read like types: RuntimeDep (and CurrentUser in auth.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ferry_api.runtime import Runtime


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
