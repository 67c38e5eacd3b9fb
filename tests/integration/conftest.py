"""Fixtures of the API tests: `api` is the real API (fresh PostgreSQL database, fresh RabbitMQ
vhost, its background workers) with an in-process HTTP client; see api_client.Api."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from api_client import Api, make_api_settings, serving_api
from ferry_api.settings import Settings


@pytest.fixture
def api_settings(pg_url: str, amqp_url: str, tmp_path: Path) -> Settings:
    return make_api_settings(pg_url, amqp_url, tmp_path)


@pytest.fixture
async def api(api_settings: Settings) -> AsyncIterator[Api]:
    async with serving_api(api_settings) as running_api:
        yield running_api
