"""Least-privilege RabbitMQ grants for each part of Ferry, and the vhost definitions (users,
permissions, topic permissions, exchanges, queues, bindings) that `rabbitmqctl
import_definitions` applies in one idempotent step. See README.md for the table.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ferry_events.bus import DEAD, EVENTS, REPORTS, dead_letter_queue
from ferry_events.rabbitmq_topology import EXCHANGE_TYPES, QUORUM, queue_arguments
from ferry_events.registry import Event
from ferry_events.topology import (
    HEARTBEATS_QUEUE,
    HOST_REPORTS,
    PUBLISHER_QUEUE,
    PUBLISHER_REPORTS,
    REPORTS_QUEUE,
    STAGING_QUEUE,
    STAGING_REPORTS,
    BrokerUsers,
    QueueSpec,
    agent_queues,
    api_queues,
    host_queue,
)

NOTHING = "^$"
ANYTHING = ".*"


def exactly(*names: str) -> str:
    """A permission regex matching these names and nothing else."""
    return "^(" + "|".join(re.escape(name) for name in names) + ")$"


def report_keys(events: Iterable[type[Event]]) -> str:
    return exactly(*(event.type_name for event in events))


@dataclass(frozen=True)
class Grant:
    """One user's permissions in the vhost: resource regexes and per-topic-exchange
    (write, read) routing-key regexes."""

    user: str
    configure: str
    write: str
    read: str
    topics: Mapping[str, tuple[str, str]] = field(default_factory=dict)


def api_grant(user: str) -> Grant:
    """The topology owner: declares every queue (host queues as apps gain hosts) and relays
    every event onto EVENTS; publishes no report. RabbitMQ wants read on a queue declared with
    a dead-letter exchange, so it may read the work queues it declares, not only its own two."""
    fixed = [STAGING_QUEUE, PUBLISHER_QUEUE, REPORTS_QUEUE, HEARTBEATS_QUEUE]
    queues = "|".join([*(re.escape(q) for q in fixed), re.escape(host_queue("")) + ".+"])
    every_queue = rf"({queues})(\.dead)?"
    exchanges = "|".join(re.escape(name) for name in EXCHANGE_TYPES)
    return Grant(
        user,
        configure=rf"^({exchanges}|{every_queue})$",
        write=rf"^({re.escape(EVENTS)}|{re.escape(DEAD)}|{every_queue})$",
        read=rf"^({exchanges}|{queues})$",
        topics={EVENTS: (ANYTHING, ANYTHING), REPORTS: (NOTHING, ANYTHING)},
    )


def agent_grant(user: str, queue: str, reports: Iterable[type[Event]]) -> Grant:
    """Consume its own queue; publish its own kinds of report (and its own dead letters);
    declare, bind, read or command nothing else."""
    return Grant(
        user,
        configure=NOTHING,
        write=exactly(REPORTS, DEAD),
        read=exactly(queue),
        topics={EVENTS: (NOTHING, NOTHING), REPORTS: (report_keys(reports), NOTHING)},
    )


def grants(users: BrokerUsers, hosts: Iterable[str]) -> list[Grant]:
    return [
        api_grant(users.api),
        agent_grant(users.staging, STAGING_QUEUE, STAGING_REPORTS),
        agent_grant(users.publisher, PUBLISHER_QUEUE, PUBLISHER_REPORTS),
        *(agent_grant(users.host(h), host_queue(h), HOST_REPORTS) for h in sorted(set(hosts))),
    ]


def password_hash(password: str) -> str:
    """RabbitMQ's rabbit_password_hashing_sha256: base64(salt + sha256(salt + password))."""
    salt = os.urandom(4)
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def definitions(
    vhost: str, grants: list[Grant], passwords: Mapping[str, str], hosts: Iterable[str]
) -> dict[str, Any]:
    """Users with a password here are created or get it; others must exist already."""
    specs = api_queues() + agent_queues(hosts)
    return {
        "vhosts": [{"name": vhost}],
        "users": [_user(name, password) for name, password in passwords.items()],
        "permissions": [
            {
                "user": g.user,
                "vhost": vhost,
                "configure": g.configure,
                "write": g.write,
                "read": g.read,
            }
            for g in grants
        ],
        "topic_permissions": [
            {"user": g.user, "vhost": vhost, "exchange": exchange, "write": w, "read": r}
            for g in grants
            for exchange, (w, r) in g.topics.items()
        ],
        "exchanges": [_exchange(vhost, name, kind.value) for name, kind in EXCHANGE_TYPES.items()],
        "queues": [q for spec in specs for q in _queue_pair(vhost, spec.name)],
        "bindings": [b for spec in specs for b in _bindings(vhost, spec)],
    }


def _user(name: str, password: str) -> dict[str, Any]:
    return {
        "name": name,
        "password_hash": password_hash(password),
        "hashing_algorithm": "rabbit_password_hashing_sha256",
        "tags": [],  # no management, no impersonator: user_id is checked against the login
        "limits": {},
    }


def _exchange(vhost: str, name: str, kind: str) -> dict[str, Any]:
    return {
        "name": name,
        "vhost": vhost,
        "type": kind,
        "durable": True,
        "auto_delete": False,
        "internal": False,
        "arguments": {},
    }


def _queue_pair(vhost: str, queue: str) -> list[dict[str, Any]]:
    """The work queue and its dead-letter queue, with the arguments RabbitMqBus declares."""
    base = {"vhost": vhost, "durable": True, "auto_delete": False}
    return [
        {**base, "name": queue, "arguments": queue_arguments(queue)},
        {**base, "name": dead_letter_queue(queue), "arguments": dict(QUORUM)},
    ]


def _bindings(vhost: str, spec: QueueSpec) -> list[dict[str, Any]]:
    dead = dead_letter_queue(spec.name)
    routes = [(spec.exchange, key) for key in spec.bindings] + [(DEAD, dead)]
    target = {"vhost": vhost, "destination_type": "queue", "arguments": {}}
    return [
        {
            **target,
            "source": source,
            "routing_key": key,
            "destination": dead if source == DEAD else spec.name,
        }
        for source, key in routes
    ]
