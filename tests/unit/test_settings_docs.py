"""Each service's README documents its settings: the Settings table and the code agree both ways."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from ferry_api.settings import Settings as ApiSettings
from ferry_publisher.settings import Settings as PublisherSettings
from ferry_rsync_agent import config as rsync_config
from ferry_staging_agent.settings import Settings as StagingSettings
from pydantic import BaseModel
from pydantic_settings import BaseSettings

SERVICES = Path(__file__).resolve().parents[2] / "services"
# A table row's first cell: `NAME`.
ROW = re.compile(r"^\|\s*`([^`]+)`\s*\|", re.MULTILINE)


def settings_table(service: str) -> list[str]:
    """The names in the first column of the tables of the README's `## Settings` section."""
    text = (SERVICES / service / "README.md").read_text()
    match = re.search(r"^## Settings\n(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)
    assert match, f"services/{service}/README.md has no '## Settings' section"
    return ROW.findall(match.group(1))


def env_names(settings: type[BaseSettings]) -> set[str]:
    """The environment variable of each field: its alias, else the prefix and its name."""
    prefix = settings.model_config.get("env_prefix", "")
    names = set()
    for name, field in settings.model_fields.items():
        alias = field.validation_alias or field.alias
        names.add(alias.upper() if isinstance(alias, str) else f"{prefix}{name}".upper())
    return names


def read_in_source(service: str, name: str) -> bool:
    """An extra variable is real only if the service's code names it."""
    sources = (SERVICES / service / "src").rglob("*.py")
    return any(f'"{name}"' in path.read_text() for path in sources)


def keys(*models: type[BaseModel]) -> set[str]:
    return {name for model in models for name in model.model_fields}


# Variables a service reads itself, beside its settings class (checked against its source).
EXTRA = {"api": {"FERRY_ADMIN_PASSWORD"}, "demo": {"FERRY_RSYNC_PORT"}}


@pytest.mark.parametrize(
    ("service", "settings"),
    [("api", ApiSettings), ("staging-agent", StagingSettings), ("publisher", PublisherSettings)],
)
def test_settings_table_lists_exactly_the_settings_fields(
    service: str, settings: type[BaseSettings]
) -> None:
    documented = settings_table(service)
    assert len(documented) == len(set(documented)), "a setting is listed twice"
    extra = EXTRA.get(service, set())
    assert all(read_in_source(service, name) for name in extra)
    undocumented = env_names(settings) - set(documented)
    assert not undocumented, f"services/{service}/README.md misses {sorted(undocumented)}"
    unknown = set(documented) - env_names(settings) - extra
    assert not unknown, f"services/{service}/README.md lists no such setting {sorted(unknown)}"


def test_rsync_agent_readme_lists_every_toml_key_and_variable() -> None:
    documented = settings_table("rsync-agent")
    models = (rsync_config.AgentConfig, rsync_config.AppConfig, rsync_config.PostSyncHook)
    variables = {rsync_config.CONFIG_ENV, rsync_config.BROKER_ENV, *rsync_config.METRICS_ENV}
    expected = keys(*models) | variables
    missing, unknown = expected - set(documented), set(documented) - expected
    assert not missing, f"services/rsync-agent/README.md misses {sorted(missing)}"
    assert not unknown, f"services/rsync-agent/README.md lists no such key {sorted(unknown)}"
    # A key name shared by two tables would hide a missing row.
    assert len(documented) == len(set(documented)) == len(keys(*models)) + len(variables)


def test_demo_readme_lists_only_real_settings() -> None:
    documented = set(settings_table("demo"))
    assert documented, "the demo's README lists no settings"
    assert all(read_in_source("demo", name) for name in EXTRA["demo"])
    unknown = documented - env_names(ApiSettings) - EXTRA["demo"]
    assert not unknown, f"services/demo/README.md lists no such setting {sorted(unknown)}"
