"""Each agent obeys only what the API signed for it. Someone with the API's broker login but not
its signing key (or with a copy of one command) publishes, for a real published ticket: a command
signed by an unknown key, the real command with one field changed, the real command again, one
that expired, and one meant for another agent. Each is refused, recorded as
`agent.command_refused` by the agent's own broker user on a stream apart from every ticket, the
ticket does not move, and nothing on disk changes.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from broker_provisioning import Provisioned
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from ferry_events.bus import EVENTS
from ferry_events.envelope import Message, StoredEvent
from ferry_events.signing import CommandSigner
from strict_stack import Strict, git, snapshot, strict_ferry

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]

REASONS = {
    "forged": "unknown key ",
    "tampered": "bad signature",
    "replayed": "already handled: a replay",
    "expired": "expired at ",
}


def attacks(ferry: Strict, handled: StoredEvent, field: str, value: Any) -> dict[str, Message]:
    """Forged, tampered, replayed and expired versions of a command the agent has handled."""
    original = ferry.relayed(handled)
    changed = original.body | {"data": original.body["data"] | {field: value}}
    stranger = CommandSigner(Ed25519PrivateKey.generate())
    past = datetime.now(UTC) - timedelta(hours=1)
    return {
        "forged": ferry.relayed(fresh(handled), stranger),
        "tampered": original.model_copy(update={"body": changed}),
        "replayed": original,
        "expired": ferry.signer.sign(Message.of_stored(fresh(handled), original.routing_key), past),
    }


def fresh(stored: StoredEvent) -> StoredEvent:
    """The same command under a new event id: one the agent has never seen."""
    return stored.model_copy(update={"event_id": uuid.uuid4()})


async def assert_refused(
    ferry: Strict, sent: dict[str, Message], user: str, reasons: dict[str, str]
) -> None:
    """Each message is refused for its reason, recorded apart from tickets, by `user`."""
    for kind, message in sent.items():
        refusal = await ferry.refusal_of(message, user, reasons[kind])
        assert refusal["stream"] == "refused-commands", refusal
        assert refusal["data"]["command_type"] == message.type


async def ticket_unmoved(ferry: Strict, ticket_id: str, before: dict[str, Any]) -> None:
    after = await ferry.ticket(ticket_id)
    assert (after["state"], after["updated_at"]) == ("published", before["updated_at"])
    assert after["stream_version"] == before["stream_version"]


async def publish_all(ferry: Strict, messages: list[Message]) -> None:
    """As the API's broker user: the one allowed to publish commands at all."""
    bus = await ferry.broker.bus(ferry.broker.users.api)
    await bus.publish(EVENTS, messages)


async def attack(
    ferry: Strict,
    agent_user: str,
    sent: dict[str, Message],
    reasons: dict[str, str],
    disk: Callable[[], object],
) -> None:
    ticket_id = sent["replayed"].body["data"]["ticket_id"]
    before, on_disk = await ferry.ticket(ticket_id), disk()
    await publish_all(ferry, list(sent.values()))
    await assert_refused(ferry, sent, agent_user, reasons)
    await ticket_unmoved(ferry, ticket_id, before)
    assert disk() == on_disk


async def test_the_staging_agent_refuses_what_the_api_did_not_sign_for_it(
    provisioned: Provisioned, pg_url: str, tmp_path: Path
) -> None:
    async with strict_ferry(tmp_path, provisioned, pg_url) as ferry:
        ticket = await ferry.publish()
        staged = await ferry.command(ticket, "ticket.staging_requested")
        sent = attacks(ferry, staged, "ref", "another-branch")
        # Re-targeted: the publisher's (handled) command, bound to the staging queue as well.
        api_bus = await ferry.broker.bus(ferry.broker.users.api)
        tag = await ferry.command(ticket, "release.tag_requested")
        await api_bus.declare_queue("staging", [tag.type], EVENTS)
        sent["re-targeted"] = ferry.relayed(tag)
        reasons = REASONS | {"re-targeted": "release.tag_requested is not a command of this queue"}

        workspace = ferry.root / "staging-agent" / "staging"
        await attack(ferry, ferry.broker.users.staging, sent, reasons, lambda: snapshot(workspace))


async def test_the_publisher_refuses_what_the_api_did_not_sign_for_it(
    provisioned: Provisioned, pg_url: str, tmp_path: Path
) -> None:
    async with strict_ferry(tmp_path, provisioned, pg_url) as ferry:
        ticket = await ferry.publish()
        tag = await ferry.command(ticket, "release.tag_requested")
        sent = attacks(ferry, tag, "version", 2)
        api_bus = await ferry.broker.bus(ferry.broker.users.api)
        staged = await ferry.command(ticket, "ticket.staging_requested")
        await api_bus.declare_queue("publisher", [staged.type], EVENTS)
        sent["re-targeted"] = ferry.relayed(staged)
        reasons = REASONS | {
            "re-targeted": "ticket.staging_requested is not a command of this queue"
        }

        publisher = ferry.root / "publisher"

        def releases() -> object:
            return git("tag", "--list", cwd=publisher / "repos" / "shop.git"), snapshot(
                publisher / "exports"
            )

        assert releases()[0] == "1"
        await attack(ferry, ferry.broker.users.publisher, sent, reasons, releases)


async def test_an_rsync_agent_refuses_what_the_api_did_not_sign_for_its_host(
    provisioned: Provisioned, pg_url: str, tmp_path: Path
) -> None:
    async with strict_ferry(tmp_path, provisioned, pg_url) as ferry:
        ticket = await ferry.publish()
        synced = await ferry.command(ticket, "host.sync_requested", host="web-1")
        sent = attacks(ferry, synced, "version", 2)
        users = ferry.broker.users

        def hosts() -> object:
            return {host: snapshot(ferry.host_target(host)) for host in ("web-1", "web-2")}

        await attack(ferry, users.host("web-1"), sent, REASONS, hosts)

        # Re-targeted: web-1's signed command sent on to web-2's queue, by its routing key (which
        # the signature covers), or by binding web-2's queue to web-1's commands.
        retargeted = ferry.relayed(fresh(synced))
        rerouted = retargeted.model_copy(update={"routing_key": "host.sync_requested.web-2"})
        on_disk = hosts()
        await publish_all(ferry, [rerouted])
        await assert_refused(
            ferry, {"rerouted": rerouted}, users.host("web-2"), {"rerouted": "bad signature"}
        )
        api_bus = await ferry.broker.bus(users.api)
        await api_bus.declare_queue("host.web-2", ["host.sync_requested.web-1"], EVENTS)
        await ferry.stop("web-1")  # so only web-2 takes this new, validly signed command
        await publish_all(ferry, [retargeted])
        reason = {"bound": "addressed to host web-1, not web-2"}
        await assert_refused(ferry, {"bound": retargeted}, users.host("web-2"), reason)
        assert hosts() == on_disk
        assert (await ferry.ticket(ticket))["state"] == "published"
        current = ferry.host_target("web-2") / "current"
        assert current.resolve().name == "1"
