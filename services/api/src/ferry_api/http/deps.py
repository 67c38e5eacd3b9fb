"""Annotated dependencies that read like types: RuntimeDep (and CurrentUser in auth.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ferry_api.runtime import Runtime


async def get_runtime(request: Request) -> Runtime:
    # async although it awaits nothing: FastAPI runs a plain def dependency in a worker thread,
    # a thread hop on every request.
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
