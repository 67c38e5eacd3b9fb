"""Signed commands with real Ed25519: what verifies, and every way a forged, altered, stale or
misaddressed command is refused; keys from generate_key and from openssl."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from ferry_events import Message, Metadata, NewEvent, StoredEvent
from ferry_events.registry import Event
from ferry_events.schemas import (
    HostSyncRequested,
    ReleaseTagRequested,
    Source,
    StagingRequested,
)
from ferry_events.signing import (
    EXPIRES_HEADER,
    KEY_ID_HEADER,
    SIGNATURE_HEADER,
    BadKey,
    CommandRefused,
    CommandSigner,
    CommandVerifier,
    addressed_to,
    generate_key,
    key_id_of,
    load_private_key,
    load_public_keys,
    signed_bytes,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TTL = 600.0
FIXTURES = Path(__file__).parent / "fixtures" / "signing"


def host_sync(host: str = "web-1") -> HostSyncRequested:
    return HostSyncRequested(
        ticket_id="t-42", app="shop", host=host, version=17, digest="sha256:" + "ab" * 32
    )


def release_tag() -> ReleaseTagRequested:
    return ReleaseTagRequested(
        ticket_id="t-42",
        app="shop",
        version=17,
        commit="1f" * 20,
        tree="2e" * 20,
        reason="fix checkout",
        author="dev",
        approver="lead",
    )


def staging() -> StagingRequested:
    source = Source(type="git", url="https://git.example.com/shop.git")
    return StagingRequested(ticket_id="t-42", app="shop", source=source, ref="main")


def stored(event: Event) -> StoredEvent:
    new = NewEvent.of(event, Metadata(actor="ferry-api", correlation_id="t-42"))
    return StoredEvent(
        position=1207,
        stream="ticket-t-42",
        version=11,
        event_id=new.event_id,
        type=new.type,
        schema_version=new.schema_version,
        data=new.data,
        metadata=new.metadata,
        recorded_at=NOW,
        hash="c3" * 32,
    )


def command(event: Event) -> Message:
    return Message.of_stored(stored(event), event.routing_key())


def signer_of(key: Ed25519PrivateKey) -> CommandSigner:
    return CommandSigner(key, ttl_seconds=TTL)


def verifier_of(*keys: Ed25519PrivateKey) -> CommandVerifier:
    return CommandVerifier({key_id_of(key): key.public_key() for key in keys})


def refusal(verifier: CommandVerifier, message: Message, now: datetime = NOW) -> str:
    with pytest.raises(CommandRefused) as refused:
        verifier.verify(message, now=now)
    return refused.value.reason


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.mark.parametrize(
    "event", [host_sync(), release_tag(), staging()], ids=lambda event: type(event).__name__
)
def test_a_signed_command_verifies_to_the_stored_event(
    key: Ed25519PrivateKey, event: Event
) -> None:
    message = command(event)
    signed = signer_of(key).sign(message, now=NOW)

    assert verifier_of(key).verify(signed, now=NOW) == message.stored_event()
    assert signed.headers[KEY_ID_HEADER] == key_id_of(key)
    assert signed.headers[EXPIRES_HEADER] == "2026-03-01T12:10:00+00:00"
    assert {"position": "1207", "stream": "ticket-t-42"}.items() <= signed.headers.items()
    assert SIGNATURE_HEADER not in message.headers  # the original is left as it was


def with_data(field: str, value: Any) -> Callable[[Message], Message]:
    def change(message: Message) -> Message:
        body = json.loads(json.dumps(message.body))
        target = body["data"]
        *parents, last = field.split(".")
        for parent in parents:
            target = target[parent]
        target[last] = value
        return message.model_copy(update={"body": body})

    return change


def with_body(field: str, value: Any) -> Callable[[Message], Message]:
    return lambda message: message.model_copy(update={"body": {**message.body, field: value}})


def with_header(name: str, value: str) -> Callable[[Message], Message]:
    return lambda message: message.model_copy(update={"headers": {**message.headers, name: value}})


TAMPERINGS: dict[str, tuple[Callable[[], Event], Callable[[Message], Message]]] = {
    "target host": (host_sync, with_data("host", "web-2")),
    "version": (host_sync, with_data("version", 16)),
    "digest": (host_sync, with_data("digest", "sha256:" + "cd" * 32)),
    "attempt": (host_sync, with_data("attempt", 9)),
    "commit": (release_tag, with_data("commit", "3d" * 20)),
    "tree": (release_tag, with_data("tree", "4c" * 20)),
    "app": (release_tag, with_data("app", "bank")),
    "approver": (release_tag, with_data("approver", "dev")),
    "ticket id": (staging, with_data("ticket_id", "t-43")),
    "source url": (staging, with_data("source.url", "https://evil.example.com/shop.git")),
    "ref": (staging, with_data("ref", "evil-branch")),
    "event id": (host_sync, with_body("event_id", str(uuid.uuid4()))),
    "body type": (host_sync, with_body("type", "host.sync_completed")),
    "metadata": (host_sync, with_body("metadata", {"actor": "mallory"})),
    "message id": (host_sync, lambda m: m.model_copy(update={"message_id": str(uuid.uuid4())})),
    "message type": (host_sync, lambda m: m.model_copy(update={"type": "release.tag_requested"})),
    "routing key": (
        host_sync,
        lambda m: m.model_copy(update={"routing_key": "host.sync_requested.web-2"}),
    ),
    "expiry": (host_sync, with_header(EXPIRES_HEADER, "2027-03-01T12:10:00+00:00")),
}


@pytest.mark.parametrize("what", TAMPERINGS)
def test_a_command_changed_after_signing_is_refused(key: Ed25519PrivateKey, what: str) -> None:
    make_event, tamper = TAMPERINGS[what]
    signed = signer_of(key).sign(command(make_event()), now=NOW)
    verifier = verifier_of(key)
    verifier.verify(signed, now=NOW)  # as signed, it is obeyed

    assert refusal(verifier, tamper(signed)) == "bad signature"


def test_a_command_signed_by_another_key_is_refused(key: Ed25519PrivateKey) -> None:
    stranger = Ed25519PrivateKey.generate()
    message = command(host_sync())
    # A forger who claims the trusted key's id still cannot make its signature.
    claimed = CommandSigner(stranger, key_id=key_id_of(key), ttl_seconds=TTL).sign(message, NOW)
    assert refusal(verifier_of(key), claimed) == "bad signature"

    # Under its own id, the key is simply not one the agent trusts.
    own = signer_of(stranger).sign(message, now=NOW)
    assert refusal(verifier_of(key), own) == f"unknown key {key_id_of(stranger)}"


def test_a_trusted_key_id_on_a_signature_of_another_trusted_key_is_refused(
    key: Ed25519PrivateKey,
) -> None:
    other = Ed25519PrivateKey.generate()
    signed = signer_of(key).sign(command(host_sync()), now=NOW)
    relabelled = with_header(KEY_ID_HEADER, key_id_of(other))(signed)
    assert refusal(verifier_of(key, other), relabelled) == "bad signature"


def test_a_command_is_refused_from_its_expiry_on(key: Ed25519PrivateKey) -> None:
    signed = signer_of(key).sign(command(host_sync()), now=NOW)
    verifier = verifier_of(key)
    expiry = NOW + timedelta(seconds=TTL)

    verifier.verify(signed, now=expiry - timedelta(seconds=1))
    assert refusal(verifier, signed, now=expiry) == "expired at 2026-03-01T12:10:00+00:00"
    assert refusal(verifier, signed, now=expiry + timedelta(days=30)).startswith("expired at")


@pytest.mark.parametrize(
    "missing", [(SIGNATURE_HEADER, KEY_ID_HEADER, EXPIRES_HEADER), (SIGNATURE_HEADER,)]
)
def test_an_unsigned_command_is_refused(key: Ed25519PrivateKey, missing: tuple[str, ...]) -> None:
    signed = signer_of(key).sign(command(host_sync()), now=NOW)
    headers = {k: v for k, v in signed.headers.items() if k not in missing}
    assert refusal(verifier_of(key), signed.model_copy(update={"headers": headers})) == "unsigned"


@pytest.mark.parametrize("garbage", ["", "not base64!", "AAAA", "x" * 5000])
def test_a_garbled_signature_is_refused(key: Ed25519PrivateKey, garbage: str) -> None:
    signed = signer_of(key).sign(command(host_sync()), now=NOW)
    garbled = with_header(SIGNATURE_HEADER, garbage)(signed)
    assert refusal(verifier_of(key), garbled) == "bad signature"


def resigned(key: Ed25519PrivateKey, change: Callable[[Message], Message]) -> Message:
    """A message the trusted key itself signed although it does not agree with its body."""
    return signer_of(key).sign(change(command(host_sync("web-1"))), now=NOW)


def test_nothing_outside_the_body_can_steer_a_signed_command(key: Ed25519PrivateKey) -> None:
    verifier = verifier_of(key)
    to_web_2 = resigned(
        key, lambda m: m.model_copy(update={"routing_key": "host.sync_requested.web-2"})
    )
    other_id = resigned(key, lambda m: m.model_copy(update={"message_id": str(uuid.uuid4())}))
    other_type = resigned(key, lambda m: m.model_copy(update={"type": "release.tag_requested"}))
    broken = resigned(key, with_data("version", "seventeen"))

    assert refusal(verifier, to_web_2) == "routing key does not match the event"
    assert refusal(verifier, other_id) == "message id does not match the event id"
    assert refusal(verifier, other_type) == "message type does not match the event type"
    assert refusal(verifier, broken).startswith("malformed event")


def test_rotation_both_keys_verify_until_the_old_one_is_removed() -> None:
    old, new = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    message = command(host_sync())
    by_old, by_new = signer_of(old).sign(message, now=NOW), signer_of(new).sign(message, now=NOW)

    during = verifier_of(old, new)
    assert during.verify(by_old, now=NOW) == during.verify(by_new, now=NOW)
    after = verifier_of(new)
    after.verify(by_new, now=NOW)
    assert refusal(after, by_old) == f"unknown key {key_id_of(old)}"


def test_only_the_named_host_obeys_a_host_sync_and_any_agent_a_hostless_command() -> None:
    sync = stored(host_sync("web-1"))
    assert addressed_to(sync, "web-1")
    assert not addressed_to(sync, "web-2")
    assert addressed_to(stored(staging()), "stage-1")


def test_generated_keys_load_and_sign_for_their_public_key(tmp_path: Path) -> None:
    path = tmp_path / "api.key"
    key_id = generate_key(path)

    assert path.stat().st_mode & 0o777 == 0o600
    private = load_private_key(path)
    trusted = load_public_keys(tmp_path / "api.key.pub")
    assert list(trusted) == [key_id] == [key_id_of(private)]
    signed = CommandSigner(private).sign(command(host_sync()), now=NOW)
    CommandVerifier(trusted).verify(signed, now=NOW)
    with pytest.raises(FileExistsError):
        generate_key(path)  # a key is never overwritten
    assert load_private_key(path.read_text()).private_bytes_raw() == private.private_bytes_raw()


def test_public_keys_load_from_a_directory_a_list_or_pem_text(tmp_path: Path) -> None:
    ids = {generate_key(tmp_path / "old.key"), generate_key(tmp_path / "new.key")}
    pubs = [tmp_path / "old.key.pub", tmp_path / "new.key.pub"]
    (tmp_path / "notes.txt").write_text("not a key, and not a .pub")

    assert set(load_public_keys(tmp_path)) == ids
    assert set(load_public_keys(pubs)) == ids
    assert set(load_public_keys([str(p) for p in pubs])) == ids
    assert set(load_public_keys("".join(p.read_text() for p in pubs))) == ids
    assert set(load_public_keys(b"".join(p.read_bytes() for p in pubs))) == ids


def openssl(*args: str) -> bytes:
    return subprocess.run(["openssl", *args], check=True, capture_output=True).stdout


def test_keys_made_by_openssl_load_and_interoperate(tmp_path: Path) -> None:
    key_file, pub_file = tmp_path / "api.key", tmp_path / "api.key.pub"
    openssl("genpkey", "-algorithm", "ed25519", "-out", str(key_file))
    openssl("pkey", "-in", str(key_file), "-pubout", "-out", str(pub_file))
    der = openssl("pkey", "-pubin", "-in", str(pub_file), "-outform", "DER")

    private, trusted = load_private_key(key_file), load_public_keys(pub_file)
    key_id = hashlib.sha256(der[-32:]).hexdigest()[:16]  # the raw key ends the DER
    assert list(trusted) == [key_id] == [key_id_of(private)]
    signed = CommandSigner(private).sign(command(host_sync()), now=NOW)
    CommandVerifier(trusted).verify(signed, now=NOW)

    # openssl's own Ed25519 over the documented bytes gives the same signature.
    data = tmp_path / "signed.bytes"
    data.write_bytes(signed_bytes(signed, signed.headers[EXPIRES_HEADER]))
    by_openssl = openssl("pkeyutl", "-sign", "-rawin", "-inkey", str(key_file), "-in", str(data))
    assert base64.b64encode(by_openssl).decode() == signed.headers[SIGNATURE_HEADER]


def test_a_command_signed_by_an_earlier_release_still_verifies() -> None:
    """The fixture was signed once (2026-03-01T12:00Z) and must verify for ever: agents and the
    API are upgraded at different times, so the signed form may change only under a new tag."""
    message = Message.model_validate_json(
        (FIXTURES / "host-sync-requested.signed.json").read_text()
    )
    verifier = CommandVerifier(load_public_keys(FIXTURES / "known.key.pub"))
    event = verifier.verify(message, now=NOW)

    assert (event.position, event.data["host"], event.data["version"]) == (1207, "web-1", 17)
    assert refusal(verifier, message, now=NOW + timedelta(hours=1)).startswith("expired at")


def test_what_is_not_a_usable_key_is_refused_clearly(tmp_path: Path) -> None:
    ec_key = tmp_path / "ec.key"
    ec_key.write_bytes(
        generate_private_key(SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    generate_key(tmp_path / "api.key")
    (tmp_path / "empty").mkdir()

    with pytest.raises(BadKey, match="not an Ed25519 private key"):
        load_private_key(ec_key)
    with pytest.raises(BadKey, match="cannot read key file"):
        load_private_key(tmp_path / "missing.key")
    with pytest.raises(BadKey, match="no PEM public key"):
        load_public_keys(tmp_path / "api.key")  # a private key is never a trusted key
    with pytest.raises(BadKey, match=r"no \*\.pub file"):
        load_public_keys(tmp_path / "empty")
    with pytest.raises(BadKey, match="no trusted public key"):
        load_public_keys([])
    with pytest.raises(BadKey, match="no trusted public key"):
        CommandVerifier({})


def test_the_verifier_keeps_the_keys_it_was_given(key: Ed25519PrivateKey) -> None:
    trusted: dict[str, Ed25519PublicKey] = {key_id_of(key): key.public_key()}
    verifier = CommandVerifier(trusted)
    trusted.clear()  # a later change to the caller's mapping trusts or distrusts nothing
    assert verifier.key_ids == {key_id_of(key)}
