"""Fixtures of the end-to-end tests: Ferry's services as real processes on a fresh PostgreSQL
database, RabbitMQ vhost and directory tree; the users admin, lead and dev over REST; real git
and svn sources. When a test fails, its report carries the log of every process it started."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Generator, Sequence
from pathlib import Path

import pytest
from cluster import HOSTS, Cluster, HostSpec, MakeCluster, ferry_cluster
from ferry_rest import Ferry, as_users
from processes import Service
from source_repos import GitSource, SvnSource, make_git_source, make_svn_source

PROCESSES = pytest.StashKey[list[Service]]()


def watch(request: pytest.FixtureRequest, *services: Service) -> None:
    """Attach these processes' logs to the test's report if it fails."""
    request.node.stash.setdefault(PROCESSES, []).extend(services)


@pytest.fixture
def watch_logs(request: pytest.FixtureRequest) -> Callable[[Service], None]:
    """For a test that starts processes of its own: their logs go with its failure report."""
    return lambda service: watch(request, service)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        for service in item.stash.get(PROCESSES, []):
            report.sections.append((f"log of {service.name} ({service.log})", service.log_tail()))
    return report


@pytest.fixture
async def make_cluster(
    request: pytest.FixtureRequest, pg_url: str, amqp_url: str, tmp_path: Path
) -> AsyncIterator[MakeCluster]:
    """Start the whole system with these rsync hosts (one cluster per test)."""
    started: list[Cluster] = []

    async def make(hosts: Sequence[HostSpec] = HOSTS) -> Cluster:
        cluster = ferry_cluster(tmp_path / "cluster", pg_url, amqp_url, hosts)
        started.append(cluster)
        watch(request, *cluster.services.values())
        await cluster.start()
        return cluster

    yield make
    for cluster in started:
        await cluster.stop()


@pytest.fixture
async def cluster(make_cluster: MakeCluster) -> Cluster:
    return await make_cluster(HOSTS)


@pytest.fixture
async def ferry(cluster: Cluster) -> AsyncIterator[Ferry]:
    client = await as_users(cluster.api_url, cluster.admin_password)
    yield client
    await client.close()


@pytest.fixture
def git_source(tmp_path: Path) -> GitSource:
    return make_git_source(tmp_path / "sources" / "shop")


@pytest.fixture
def svn_source(tmp_path: Path) -> SvnSource:
    return make_svn_source(tmp_path / "sources" / "blog")
