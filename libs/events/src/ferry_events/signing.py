"""Signed commands: the API signs every command it relays (Ed25519); agents obey only what a
trusted key signed, unexpired, and whose every steering field is covered by the signature.

What is signed: the canonical JSON (chain.canonical_json, UTF-8) of the format tag, the message's
routing key, type and message_id, its whole body (the stored event: type, schema_version, data,
event_id, metadata, stream, position, ...) and the expiry. Headers carry the result:
`x-ferry-signature` (base64), `x-ferry-key-id`, `x-ferry-expires` (ISO 8601, UTC). A key id is the
first 16 hex digits of sha256 of the raw 32-byte public key.

What the agent runtime does with a command message, in this order:
    event = verifier.verify(message)          # CommandRefused: report or dead-letter, never act
    addressed_to(event, settings.host)        # False: refuse, the command is another host's
    inbox / idempotent(...)                   # "unseen": message_id == event_id, so a replay
                                              # within the expiry is dropped as a duplicate
The inbox must remember ids for at least the TTL; after it, expiry refuses the replay.

Keys are PEM files (PKCS8 private, SubjectPublicKeyInfo public), as `generate_key(path)` writes
or as `openssl genpkey -algorithm ed25519 -out api.key` and
`openssl pkey -in api.key -pubout -out api.key.pub` make. The private key stays with the API.

Rotation, without a moment when commands are refused:
    1. generate a new key; add its .pub to every agent's trusted keys (agents accept a set)
    2. switch the API's private key to the new one (commands relayed from then carry its id)
    3. once no command signed by the old key can still be in a queue unexpired (one TTL later),
       remove the old .pub from the agents: what it signs is then "unknown key <id>"

Errors:
    SigningError
     ├── CommandRefused   a command that must not be obeyed; .reason says why, briefly
     │    └── MalformedCommand  a trusted key signed it, but its payload does not parse here:
     │                          authentic, so .event lets the agent fail it as the API's own
     └── BadKey           a key source that holds no usable Ed25519 key of the expected kind
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ferry_events.chain import canonical_json
from ferry_events.envelope import Message, StoredEvent

__all__ = [
    "DEFAULT_TTL_SECONDS",
    "EXPIRES_HEADER",
    "FORMAT",
    "KEY_ID_HEADER",
    "SIGNATURE_HEADER",
    "BadKey",
    "CommandRefused",
    "CommandSigner",
    "CommandVerifier",
    "MalformedCommand",
    "SigningError",
    "addressed_to",
    "generate_key",
    "key_id_of",
    "load_private_key",
    "load_public_keys",
    "signed_bytes",
]

FORMAT = "ferry-command-signature/1"  # a new canonical form gets a new tag, never a changed one
SIGNATURE_HEADER = "x-ferry-signature"
KEY_ID_HEADER = "x-ferry-key-id"
EXPIRES_HEADER = "x-ferry-expires"
DEFAULT_TTL_SECONDS = 900.0
_PUBLIC_PEM = re.compile(rb"-----BEGIN PUBLIC KEY-----.+?-----END PUBLIC KEY-----", re.DOTALL)

KeySource = str | bytes | Path


class SigningError(Exception):
    """Base of this module's errors."""


class CommandRefused(SigningError):
    """A command that must not be obeyed."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class MalformedCommand(CommandRefused):
    """A command signed by a trusted key, unexpired and bound to its message, whose payload does
    not parse (a schema this agent does not share): the API's, but not one to obey."""

    def __init__(self, reason: str, event: StoredEvent) -> None:
        super().__init__(reason)
        self.event = event


class BadKey(SigningError):
    """A key file or PEM text without a usable Ed25519 key."""


def key_id_of(key: Ed25519PublicKey | Ed25519PrivateKey) -> str:
    """First 16 hex digits of sha256 over the raw 32-byte public key."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def signed_bytes(message: Message, expires: str) -> bytes:
    """The exact bytes a signature covers."""
    covered: dict[str, Any] = {
        "format": FORMAT,
        "routing_key": message.routing_key,
        "type": message.type,
        "message_id": message.message_id,
        "body": message.body,
        "expires": expires,
    }
    return canonical_json(covered).encode("utf-8")


class CommandSigner:
    """Signs command messages with the API's private key; each signature expires after a TTL."""

    def __init__(
        self,
        private_key: Ed25519PrivateKey,
        key_id: str | None = None,
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
    ) -> None:
        if ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be positive")
        self._key = private_key
        self.key_id = key_id or key_id_of(private_key)
        self.ttl = timedelta(seconds=ttl_seconds)

    def sign(self, message: Message, now: datetime | None = None) -> Message:
        """A copy of message whose headers carry the signature, the key id and the expiry."""
        expires = ((now or datetime.now(UTC)) + self.ttl).astimezone(UTC)
        expires_text = expires.isoformat(timespec="seconds")
        signature = self._key.sign(signed_bytes(message, expires_text))
        headers = {
            **message.headers,
            SIGNATURE_HEADER: base64.b64encode(signature).decode("ascii"),
            KEY_ID_HEADER: self.key_id,
            EXPIRES_HEADER: expires_text,
        }
        return message.model_copy(update={"headers": headers})


class CommandVerifier:
    """Checks a command message against a small set of trusted public keys (rotation)."""

    def __init__(self, trusted: Mapping[str, Ed25519PublicKey]) -> None:
        if not trusted:
            raise BadKey("no trusted public key: every command would be refused")
        self._trusted = dict(trusted)

    @property
    def key_ids(self) -> frozenset[str]:
        return frozenset(self._trusted)

    def verify(self, message: Message, now: datetime | None = None) -> StoredEvent:
        """The stored event the message carries, once signature, expiry and binding hold."""
        signature, key, expires_text = self._signed_parts(message)
        try:
            key.verify(signature, signed_bytes(message, expires_text))
        except InvalidSignature:
            raise CommandRefused("bad signature") from None
        expires = _parse_expiry(expires_text)
        if (now or datetime.now(UTC)) >= expires:
            raise CommandRefused(f"expired at {expires_text}")
        return _bound_event(message)

    def _signed_parts(self, message: Message) -> tuple[bytes, Ed25519PublicKey, str]:
        signature_text = message.headers.get(SIGNATURE_HEADER)
        key_id = message.headers.get(KEY_ID_HEADER)
        expires_text = message.headers.get(EXPIRES_HEADER)
        if signature_text is None or key_id is None or expires_text is None:
            raise CommandRefused("unsigned")
        key = self._trusted.get(key_id)
        if key is None:
            raise CommandRefused(f"unknown key {key_id[:64]}")
        try:
            signature = base64.b64decode(signature_text, validate=True)
        except (binascii.Error, ValueError):
            raise CommandRefused("bad signature") from None
        return signature, key, expires_text


def _parse_expiry(text: str) -> datetime:
    try:
        expires = datetime.fromisoformat(text)
    except ValueError:
        raise CommandRefused("expiry is not a time") from None
    if expires.tzinfo is None:
        raise CommandRefused("expiry has no time zone")
    return expires


def _bound_event(message: Message) -> StoredEvent:
    """The body's event, refused unless id, type and routing key all agree with it."""
    try:
        event = message.stored_event()
    except ValueError as error:  # pydantic's ValidationError among them
        raise CommandRefused(f"malformed event: {str(error)[:200]}") from None
    if message.message_id != str(event.event_id):
        raise CommandRefused("message id does not match the event id")
    if message.type != event.type:
        raise CommandRefused("message type does not match the event type")
    try:
        payload = event.payload()
    except ValueError as error:
        raise MalformedCommand(f"malformed event: {str(error)[:200]}", event) from None
    if message.routing_key != payload.routing_key():
        raise CommandRefused("routing key does not match the event")
    return event


def addressed_to(event: StoredEvent, host: str) -> bool:
    """Whether a verified command is this host's to obey: a command that names a host (host sync)
    is for that host only; one that names none (staging, tagging) is for its queue's agent."""
    named = getattr(event.payload(), "host", None)
    return named is None or named == host


def load_private_key(source: KeySource, password: bytes | None = None) -> Ed25519PrivateKey:
    """The Ed25519 private key in a PEM (PKCS8) file, or in PEM text given directly."""
    pem = _pem_of(source)
    try:
        key = serialization.load_pem_private_key(pem, password=password)
    except (ValueError, TypeError) as error:
        raise BadKey(f"not a readable PEM private key: {error}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise BadKey(f"not an Ed25519 private key: {type(key).__name__}")
    return key


def load_public_keys(
    sources: KeySource | Iterable[str | Path],
) -> dict[str, Ed25519PublicKey]:
    """Trusted public keys by key id, from PEM text (several blocks allowed), PEM files, or
    directories (each `*.pub` in them); a single source or several."""
    items = [sources] if isinstance(sources, str | bytes | Path) else list(sources)
    keys: dict[str, Ed25519PublicKey] = {}
    for item in items:
        for pem in _public_pems(item):
            key = _public_key(pem)
            keys[key_id_of(key)] = key
    if not keys:
        raise BadKey("no trusted public key found")
    return keys


def _public_pems(source: KeySource) -> list[bytes]:
    if not _is_pem_text(source) and Path(os.fsdecode(source)).is_dir():
        files = sorted(Path(os.fsdecode(source)).glob("*.pub"))
        if not files:
            raise BadKey(f"no *.pub file in {_describe(source)}")
        return [pem for path in files for pem in _public_pems(path)]
    pem = _pem_of(source)
    blocks = _PUBLIC_PEM.findall(pem)
    if not blocks:
        raise BadKey(f"no PEM public key in {_describe(source)}")
    return blocks


def _public_key(pem: bytes) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError as error:
        raise BadKey(f"not a readable PEM public key: {error}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise BadKey(f"not an Ed25519 public key: {type(key).__name__}")
    return key


def _is_pem_text(source: KeySource) -> bool:
    if isinstance(source, bytes):
        return b"-----BEGIN" in source
    return isinstance(source, str) and "-----BEGIN" in source


def _pem_of(source: KeySource) -> bytes:
    if _is_pem_text(source):
        return source.encode() if isinstance(source, str) else bytes(source)
    path = Path(os.fsdecode(source))
    try:
        return path.read_bytes()
    except OSError as error:
        raise BadKey(f"cannot read key file {path}: {error.strerror}") from None


def _describe(source: KeySource) -> str:
    return "the PEM text" if _is_pem_text(source) else str(Path(os.fsdecode(source)))


def generate_key(path: str | Path) -> str:
    """Write a new private key to path (mode 0600, never over an existing file) and its public
    key to `<path>.pub`; return the key id."""
    path = Path(path)
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    # O_EXCL with the mode: the key is never readable by others, not even for an instant.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as private_file:
        private_file.write(private_pem)
    Path(f"{path}.pub").write_bytes(public_pem)
    return key_id_of(key)
