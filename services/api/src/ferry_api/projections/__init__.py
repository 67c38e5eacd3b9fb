"""The API's read models; each is rebuildable from position 0 to the same state."""

from __future__ import annotations

from ferry_events.projection import Projection


def all_projections() -> list[Projection]:
    from ferry_api.projections.apps import AppsProjection
    from ferry_api.projections.hosts import HostsProjection
    from ferry_api.projections.releases import ReleasesProjection
    from ferry_api.projections.tickets import TicketsProjection
    from ferry_api.projections.users import UsersProjection

    return [
        UsersProjection(),
        AppsProjection(),
        HostsProjection(),
        TicketsProjection(),
        ReleasesProjection(),
    ]
