"""Security tests: what each broker user may and may not do (a fresh vhost per test, provisioned
by deploy/broker/setup.py on the shared RabbitMQ), the broker's TLS (a private node), and the
API's web-facing leaks (a real API on a fresh database, with the API tests' helpers).

The session ends with one line, `security: tried N, held M` (tests/conftest.py).
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from broker_provisioning import HOSTS, Provisioned, rabbitmqctl
from ferry_events.topology import BrokerUsers

HERE = Path(__file__).resolve().parent
# The API tests' helpers (api_client: a real API; stand_in_agents: the agents' side of the bus).
sys.path.insert(0, str(HERE.parent / "integration"))


@pytest.fixture(scope="session")
def broker_users() -> Iterator[BrokerUsers]:
    """Users (global to the broker) with a prefix of this session's own, deleted at its end."""
    users = BrokerUsers(prefix=f"ferrysec-{uuid.uuid4().hex[:8]}-")
    yield users
    for row in json.loads(rabbitmqctl("list_users", "--formatter", "json")):
        if row["user"].startswith(users.prefix):
            rabbitmqctl("delete_user", row["user"])


@pytest.fixture(scope="session")
def password_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("broker-secrets") / "passwords"


@pytest.fixture
async def provisioned(broker_users: BrokerUsers, password_dir: Path) -> AsyncIterator[Provisioned]:
    """A fresh vhost with Ferry's users, permissions and queues, deleted afterwards."""
    vhost = f"ferry-security_{uuid.uuid4().hex[:12]}"
    broker = Provisioned(vhost, broker_users, password_dir)
    broker.setup(*HOSTS)
    yield broker
    for bus in broker.opened:
        await bus.close()
    rabbitmqctl("delete_vhost", vhost)
