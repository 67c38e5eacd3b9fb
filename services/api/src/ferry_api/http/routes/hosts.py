"""Production hosts: every host known from apps' configs or agents' heartbeats, online or not,
and for each app the version it runs against the version it should run (drift)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from ferry_api.http.auth import CurrentUser
from ferry_api.http.deps import RuntimeDep
from ferry_api.readmodels.hosts import APP_HOSTS, HOSTS
from ferry_api.readmodels.releases import RELEASES
from ferry_api.runtime import Runtime
from ferry_api.workers.heartbeats import HEARTBEATS

router = APIRouter(prefix="/api/v1", tags=["hosts"])


class HostApp(BaseModel):
    app: str
    configured: bool = Field(description="the app's config lists this host")
    current: int | None = Field(description="the release live on the host (`current`)")
    target: int | None = Field(
        description="the release the app's latest publish or rollback "
        "asked for (else its latest release)"
    )
    latest: int | None = Field(description="the app's highest released version")
    drift: bool = Field(description="a configured host that does not run `target`")


class HostOut(BaseModel):
    host: str
    online: bool
    last_seen: datetime | None
    agent: str | None
    agent_version: str | None
    apps: list[HostApp]


async def _latest_release(runtime: Runtime, app: str) -> int | None:
    found = await runtime.store.find(
        RELEASES, {"app": app}, order_by="version", descending=True, limit=1
    )
    return int(found[0]["version"]) if found else None


class _Releases:
    """Per-app target and latest version, each read once per request."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.known: dict[str, tuple[int | None, int | None]] = {}

    async def of(self, app: str) -> tuple[int | None, int | None]:
        if app not in self.known:
            latest = await _latest_release(self.runtime, app)
            config = await self.runtime.store.get(APP_HOSTS, app) or {}
            target = config.get("target_version")
            self.known[app] = (latest if target is None else int(target), latest)
        return self.known[app]


async def _host_apps(
    known: dict[str, Any], beat: dict[str, Any], releases: _Releases
) -> list[HostApp]:
    live: dict[str, int | None] = beat.get("apps", {})
    rows = []
    for app in sorted(set(known.get("apps", {})) | set(live)):
        entry = known.get("apps", {}).get(app, {})
        current = live[app] if app in live else entry.get("synced_version")
        target, latest = await releases.of(app)
        configured = bool(entry.get("configured"))
        drift = configured and target is not None and current != target
        rows.append(
            HostApp(
                app=app,
                configured=configured,
                current=current,
                target=target,
                latest=latest,
                drift=drift,
            )
        )
    return rows


@router.get("/hosts")
async def list_hosts(_: CurrentUser, runtime: RuntimeDep) -> list[HostOut]:
    known = {h["host"]: h for h in await runtime.store.find(HOSTS, limit=100_000)}
    beats = {b["host"]: b for b in await runtime.store.find(HEARTBEATS, limit=100_000)}
    timeout = timedelta(seconds=runtime.settings.heartbeat_timeout_seconds)
    now, releases = datetime.now(UTC), _Releases(runtime)
    hosts = []
    for name in sorted(set(known) | set(beats)):
        beat = beats.get(name, {})
        seen = datetime.fromisoformat(beat["received_at"]) if beat else None
        hosts.append(
            HostOut(
                host=name,
                online=seen is not None and now - seen < timeout,
                last_seen=seen,
                agent=beat.get("agent"),
                agent_version=beat.get("agent_version"),
                apps=await _host_apps(known.get(name, {}), beat, releases),
            )
        )
    return hosts
