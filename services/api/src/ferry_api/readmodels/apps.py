"""Each app's current configuration: the fields of AppCreated, as later AppUpdated changed them."""

from __future__ import annotations

from collections.abc import Sequence

from ferry_events.envelope import StoredEvent
from ferry_events.projection import DocumentBatch
from ferry_events.schemas import AppCreated, AppUpdated

APPS = "apps"


class AppsProjection:
    name = "apps"
    collections: Sequence[str] = (APPS,)

    async def apply(self, docs: DocumentBatch, event: StoredEvent) -> None:
        payload = event.payload()
        at = event.recorded_at.isoformat()
        if isinstance(payload, AppCreated):
            config = payload.model_dump(mode="json")
            docs.put(
                APPS,
                payload.name,
                {
                    **config,
                    "created_by": payload.by,
                    "created_at": at,
                    "updated_by": payload.by,
                    "updated_at": at,
                },
            )
        elif isinstance(payload, AppUpdated):
            app = await docs.get(APPS, payload.name)
            if app is not None:
                docs.put(
                    APPS,
                    payload.name,
                    {
                        **app,
                        **payload.changes,
                        "updated_by": payload.by,
                        "updated_at": at,
                    },
                )
