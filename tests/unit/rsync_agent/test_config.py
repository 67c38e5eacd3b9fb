"""The agent's local TOML config and what the environment overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
from ferry_rsync_agent.config import AgentConfig, AppConfig, PostSyncHook, load_config
from pydantic import ValidationError

from .publishing import (
    HOST,
    REPO,
)


def test_example_config_is_valid_and_the_broker_url_comes_from_the_environment() -> None:
    example = REPO / "deploy/systemd/agent.example.toml"

    config = load_config(
        environ={"FERRY_AGENT_CONFIG": str(example), "FERRY_BROKER_URL": "memory://"}
    )

    assert config.broker_url == "memory://" and config.host == "web-1"
    assert config.apps["shop"].post_sync == PostSyncHook(
        argv=["/usr/local/bin/shop-post-sync", "--quiet"], timeout_seconds=30
    )
    assert config.apps["blog"] == AppConfig(target=Path("/srv/www/blog"))
    assert config.release_url("shop", 7) == "rsync://ferry@publisher.internal:873/shop/7/"


@pytest.mark.parametrize(
    "change",
    [
        {"rsync_source": "rsync://-oProxyCommand=x/"},
        {"rsync_source": "ssh://publisher/"},
        {"rsync_source": "rsync://publisher/exports"},
        {"apps": {"shop": {"target": "relative/path"}}},
        {"apps": {"Shop!": {"target": "/srv/www/shop"}}},
        {"apps": {"shop": {"target": "/srv/www/shop", "post_sync": {"argv": []}}}},
        {"host": "-bad"},
    ],
)
def test_config_refuses_what_could_be_misread(change: dict[str, object]) -> None:
    good = {"host": HOST, "rsync_source": "rsync://ferry@publisher:873/", "apps": {}}

    with pytest.raises(ValidationError):
        AgentConfig.model_validate({**good, **change})


def test_metrics_port_comes_from_the_environment() -> None:
    example = REPO / "deploy/systemd/agent.example.toml"

    default = load_config(environ={"FERRY_AGENT_CONFIG": str(example)})
    config = load_config(environ={"FERRY_AGENT_CONFIG": str(example), "FERRY_METRICS_PORT": "9464"})

    assert default.metrics_port == 0  # off unless asked for
    assert (config.metrics_port, config.metrics_address) == (9464, "127.0.0.1")
