"""Provisioning for the security tests: deploy/broker/setup.py run as an operator runs it, and
connections to the provisioned vhost as each of its users."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ferry_events.bus_rabbitmq import RabbitMqBus
from ferry_events.topology import BrokerUsers

SETUP = Path(__file__).resolve().parents[2] / "deploy" / "broker" / "setup.py"
HOSTS = ("web-1", "web-2")
AMQP_HOST = os.environ.get("FERRY_TEST_AMQP_HOST", "127.0.0.1:5672")  # as tests/conftest.py


def rabbitmqctl(*args: str) -> str:
    done = subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)
    return done.stdout.decode()


def run_setup(*args: str) -> subprocess.CompletedProcess[str]:
    """deploy/broker/setup.py as an operator runs it."""
    return subprocess.run(
        [sys.executable, str(SETUP), *args], check=True, capture_output=True, text=True, timeout=180
    )


@dataclass
class Provisioned:
    """A vhost provisioned for HOSTS, and connections to it as its users."""

    vhost: str
    users: BrokerUsers
    password_dir: Path
    opened: list[RabbitMqBus] = field(default_factory=list)

    def url(self, user: str) -> str:
        password = (self.password_dir / f"{user}.password").read_text().strip()
        return f"amqp://{user}:{password}@{AMQP_HOST}/{self.vhost}"

    async def bus(self, user: str) -> RabbitMqBus:
        bus = await RabbitMqBus.connect(self.url(user), name=f"ferry-security-{user}")
        self.opened.append(bus)
        return bus

    def setup(self, *hosts: str) -> subprocess.CompletedProcess[str]:
        hosts_args = [arg for host in hosts for arg in ("--host", host)]
        return run_setup(
            "--vhost", self.vhost, "--prefix", self.users.prefix,
            "--password-dir", str(self.password_dir), *hosts_args,
        )  # fmt: skip
