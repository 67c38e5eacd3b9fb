"""An app's releases, newest first: what each is, who asked and approved, which hosts run it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from ferry_events.validation import AppName

from ferry_api.commands.loading import load_app
from ferry_api.http.auth import CurrentUser
from ferry_api.http.deps import RuntimeDep
from ferry_api.http.schemas import ReleaseOut, ReleasePage
from ferry_api.readmodels.releases import RELEASES

router = APIRouter(prefix="/api/v1/apps", tags=["releases"])


@router.get("/{app}/releases")
async def list_releases(
    app: AppName,
    actor: CurrentUser,
    runtime: RuntimeDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
) -> ReleasePage:
    """Tagged releases: version, commit, tree, digest, ticket, author, approver, when, hosts."""
    await load_app(runtime.store, app)
    where = {"app": app}
    docs = await runtime.store.find(
        RELEASES, where, order_by="version", descending=True, limit=limit, offset=offset
    )
    total = await runtime.store.count(RELEASES, where)
    releases = [ReleaseOut.model_validate(doc) for doc in docs]
    return ReleasePage(app=app, releases=releases, total=total, limit=limit, offset=offset)
