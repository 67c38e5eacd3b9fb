"""amqps: the bus talks to a broker only over TLS it can verify (the CA given, host name included),
and presents a client certificate when given one. Against a private node with a TLS listener only.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from ferry_events.backends import open_bus
from ferry_events.bus import EVENTS
from ferry_events.envelope import Message
from private_rabbitmq import PrivateNode, private_tls_node


@pytest.fixture(scope="module")
def node() -> Iterator[PrivateNode]:
    with private_tls_node() as running:
        yield running


async def round_trip(node: PrivateNode, **tls: Path) -> Message:
    bus = await open_bus(node.amqps_url(), name="ferry-tls-test", **tls)
    try:
        queue = f"tls-{uuid.uuid4().hex[:8]}"
        await bus.declare_queue(queue, ["tls.#"])
        sent = Message(
            message_id=str(uuid.uuid4()), routing_key="tls.ping", type="tls.ping", body={}
        )
        await bus.publish(EVENTS, [sent])
        got: asyncio.Future[Message] = asyncio.get_running_loop().create_future()

        async def keep(msg: Message) -> None:
            got.set_result(msg)

        consumer = await bus.consume(queue, keep, prefetch=1)
        received = await asyncio.wait_for(got, timeout=15)
        await consumer.stop()
        assert received.message_id == sent.message_id
        return received
    finally:
        await bus.close()


async def test_publish_and_consume_over_amqps_verified_by_the_ca(node: PrivateNode) -> None:
    received = await round_trip(node, ca_file=node.certs.ca)
    assert received.sender == "guest"


async def test_a_client_certificate_signed_by_the_ca_is_accepted(node: PrivateNode) -> None:
    client = node.certs.client
    await round_trip(node, ca_file=node.certs.ca, cert_file=client.cert, key_file=client.key)


async def test_a_broker_certificate_from_another_ca_is_refused(node: PrivateNode) -> None:
    with pytest.raises(ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
        await open_bus(node.amqps_url(), ca_file=node.certs.other_ca)


async def test_a_client_certificate_from_another_ca_is_refused(node: PrivateNode) -> None:
    stranger = node.certs.stranger
    alerts = node.log.read_text().count("Unknown CA")
    with pytest.raises(ConnectionError):  # an alert or a reset: TLS 1.3 checks it after the hello
        await open_bus(
            node.amqps_url(), ca_file=node.certs.ca, cert_file=stranger.cert, key_file=stranger.key
        )
    async with asyncio.timeout(15):  # the node says why
        while node.log.read_text().count("Unknown CA") == alerts:
            await asyncio.sleep(0.1)


async def test_the_node_has_no_plain_listener(node: PrivateNode) -> None:
    with pytest.raises(ConnectionError):
        await open_bus(f"amqp://guest:guest@localhost:{node.tls_port}/")


async def test_tls_files_are_refused_without_an_amqps_url(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not used")
    for url in ("amqp://guest:guest@127.0.0.1:5672/", "memory://"):
        with pytest.raises(ValueError, match="amqps://"):
            await open_bus(url, ca_file=ca)
    with pytest.raises(ValueError, match="not a readable file"):
        await open_bus("amqps://guest:guest@localhost:1/", ca_file=tmp_path / "missing.pem")
    with pytest.raises(ValueError, match="key_file needs cert_file"):
        await open_bus("amqps://guest:guest@localhost:1/", ca_file=ca, key_file=ca)
