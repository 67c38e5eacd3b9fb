"""The API's read models: projections of the log into documents (each rebuildable from position
0 to the same state), the Projector that keeps them current, and the collection names the
queries read."""

from __future__ import annotations

from ferry_events.projection import Projection

from ferry_api.readmodels.apps import AppsProjection
from ferry_api.readmodels.hosts import HostsProjection
from ferry_api.readmodels.releases import ReleasesProjection
from ferry_api.readmodels.tickets import TicketsProjection
from ferry_api.readmodels.users import UsersProjection


def all_projections() -> list[Projection]:
    return [
        UsersProjection(),
        AppsProjection(),
        HostsProjection(),
        TicketsProjection(),
        ReleasesProjection(),
    ]
