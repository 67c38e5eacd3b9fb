"""Fault tests: the system under a store outage, a broker that is not up yet, a port already taken.
Each fault runs on a private server (a PostgreSQL cluster, a RabbitMQ node) or the test's own vhost:
the shared services are never stopped.

At the end of a session this folder prints one line, `faults: tried N, held M`: how many of its
tests ran and how many of those passed; tests added here later count too.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent

_reports: dict[str, list[pytest.TestReport]] = defaultdict(list)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if HERE in Path(str(report.fspath)).resolve().parents:
        _reports[report.nodeid].append(report)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    tried = [reports for reports in _reports.values() if not any(r.skipped for r in reports)]
    held = [
        reports
        for reports in tried
        if all(r.passed for r in reports) and any(r.when == "call" for r in reports)
    ]
    terminalreporter.write_line(f"faults: tried {len(tried)}, held {len(held)}")
