"""A private RabbitMQ node for tests: its own node name, ports, data, logs and config (the shared
node on 5672 is never touched); stopped, by its own process id, when the test is done.

Either a TLS listener only, with certificates made for it by openssl:

    with private_tls_node() as node:
        bus = await open_bus(node.amqps_url(), ca_file=node.certs.ca)

or a plain TCP listener only (on a port of the caller's choosing, if it likes), for tests that
stop and start the broker (`node.ctl("stop_app")`, only ever this node):

    with private_tcp_node() as node:
        bus = await open_bus(node.amqp_url())
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SERVER = os.environ.get("FERRY_TEST_RABBITMQ_SERVER", "/usr/lib/rabbitmq/bin/rabbitmq-server")
BROKER_USER = "rabbitmq"  # when tests run as root, the node runs as the broker's own user
START_TIMEOUT = 120.0
AMQP_HEADER = b"AMQP\x00\x00\x09\x01"

OPENSSL_CONFIG = """
[req]
distinguished_name = dn
prompt = no
[dn]
CN = ferry-test
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost,IP:127.0.0.1
authorityKeyIdentifier = keyid
[client]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
authorityKeyIdentifier = keyid
"""


@dataclass(frozen=True)
class KeyPair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Certificates:
    """`ca` signed the node's and the client's certificates; `other_ca` signed only
    `stranger`, a client certificate the node must not accept."""

    ca: Path
    server: KeyPair
    client: KeyPair
    other_ca: Path
    stranger: KeyPair


def _openssl(folder: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True, timeout=60)


def _new_key(name: str) -> list[str]:
    return ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{name}.key"]  # fmt: skip


def _authority(folder: Path, name: str) -> Path:
    _openssl(folder, "req", "-x509", "-new", *_new_key(name), "-out", f"{name}.pem",
             "-days", "2", "-config", "openssl.cnf", "-extensions", "ca",
             "-subj", f"/CN=Ferry test {name} {secrets.token_hex(4)}")  # fmt: skip
    return folder / f"{name}.pem"


def _signed(folder: Path, name: str, ca: str, kind: str) -> KeyPair:
    cn = "localhost" if kind == "server" else name
    _openssl(folder, "req", "-new", *_new_key(name), "-out", f"{name}.csr",
             "-config", "openssl.cnf", "-subj", f"/CN={cn}")  # fmt: skip
    _openssl(folder, "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem",
             "-CAkey", f"{ca}.key", "-set_serial", str(secrets.randbits(63)), "-days", "2",
             "-out", f"{name}.pem", "-extfile", "openssl.cnf", "-extensions", kind)  # fmt: skip
    return KeyPair(folder / f"{name}.pem", folder / f"{name}.key")


def make_certificates(folder: Path) -> Certificates:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "openssl.cnf").write_text(OPENSSL_CONFIG)
    return Certificates(
        ca=_authority(folder, "ca"),
        server=_signed(folder, "server", "ca", "server"),
        client=_signed(folder, "client", "ca", "client"),
        other_ca=_authority(folder, "other-ca"),
        stranger=_signed(folder, "stranger", "other-ca", "client"),
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class PrivateNode:
    name: str
    tls_port: int
    certs: Certificates
    log: Path

    def amqps_url(self, user: str = "guest", password: str = "guest") -> str:
        # localhost: the name the node's certificate is for; guest may log in from loopback.
        return f"amqps://{user}:{password}@localhost:{self.tls_port}/"


@dataclass(frozen=True)
class PlainNode:
    name: str
    port: int
    log: Path
    home: str  # the node user's home: its Erlang cookie, which rabbitmqctl needs too

    def amqp_url(self, vhost: str = "", user: str = "guest", password: str = "guest") -> str:
        return f"amqp://{user}:{password}@127.0.0.1:{self.port}/{vhost}"

    def ctl(self, *args: str) -> str:
        """rabbitmqctl against this node, and never another."""
        done = subprocess.run(
            ["rabbitmqctl", "-q", "-n", self.name, *args],
            env={**os.environ, "HOME": self.home, "ERL_EPMD_ADDRESS": "127.0.0.1"},
            check=True,
            capture_output=True,
            timeout=120,
        )
        return done.stdout.decode()


def _tcp_config(port: int) -> str:
    return f"listeners.tcp.default = 127.0.0.1:{port}\nlog.console = false\n"


def _config(certs: Certificates, tls_port: int) -> str:
    return "\n".join([
        "listeners.tcp = none",
        f"listeners.ssl.default = 127.0.0.1:{tls_port}",
        f"ssl_options.cacertfile = {certs.ca}",
        f"ssl_options.certfile = {certs.server.cert}",
        f"ssl_options.keyfile = {certs.server.key}",
        "ssl_options.verify = verify_peer",
        "ssl_options.fail_if_no_peer_cert = false",  # a client cert is optional, but checked
        "log.console = false",
        "",
    ])  # fmt: skip


def _node_environment(folder: Path, name: str, home: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": home,  # its ~/.erlang.cookie: the same user's cookie, so rabbitmqctl works too
        "LANG": "C.UTF-8",
        "RABBITMQ_NODENAME": name,
        "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
        "RABBITMQ_NODE_PORT": str(free_port()),  # unused: no tcp listener, but never 5672
        "RABBITMQ_DIST_PORT": str(free_port()),
        "RABBITMQ_CONF_ENV_FILE": str(folder / "rabbitmq-env.conf"),  # absent: not the system's
        "RABBITMQ_CONFIG_FILE": str(folder / "rabbitmq.conf"),
        "RABBITMQ_ADVANCED_CONFIG_FILE": str(folder / "advanced.config"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(folder / "enabled_plugins"),
        "RABBITMQ_MNESIA_BASE": str(folder / "mnesia"),
        "RABBITMQ_LOG_BASE": str(folder / "log"),
        "RABBITMQ_PID_FILE": str(folder / "node.pid"),
        "ERL_EPMD_ADDRESS": "127.0.0.1",
        "ERL_FLAGS": "-kernel inet_dist_use_interface {127,0,0,1}",
    }


def _runs_as() -> pwd.struct_passwd:
    if os.geteuid() == 0:
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(BROKER_USER)
    return pwd.getpwuid(os.geteuid())


def _hand_over(folder: Path, owner: pwd.struct_passwd) -> None:
    if owner.pw_uid == os.geteuid():
        return
    for path in [folder, *folder.rglob("*")]:
        os.chown(path, owner.pw_uid, owner.pw_gid)


def _answers(port: int, context: ssl.SSLContext | None) -> bool:
    """An AMQP server (behind TLS with a context): it answers the protocol header with
    connection.start."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as raw:
            if context is None:
                raw.sendall(AMQP_HEADER)
                return raw.recv(1) == b"\x01"  # a method frame
            with context.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(AMQP_HEADER)
                return tls.recv(1) == b"\x01"
    except OSError:
        return False


def _wait_until_up(
    process: subprocess.Popen[bytes], name: str, port: int, log: Path, ca: Path | None = None
) -> None:
    context = None if ca is None else ssl.create_default_context(cafile=ca)
    deadline = time.monotonic() + START_TIMEOUT
    while not _answers(port, context):
        if process.poll() is not None or time.monotonic() > deadline:
            logs = [log, log.with_name("console.out")]
            text = "\n".join(p.read_text()[-3000:] for p in logs if p.exists())
            raise RuntimeError(f"private RabbitMQ {name} did not start:\n{text}")
        time.sleep(0.5)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()  # the Erlang VM stops the node cleanly on SIGTERM
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=30)


@contextlib.contextmanager
def private_tls_node() -> Iterator[PrivateNode]:
    """In a temporary folder of its own (the node's user must reach it), removed afterwards."""
    if not Path(SERVER).exists() or shutil.which("openssl") is None:
        raise RuntimeError(f"needs {SERVER} (FERRY_TEST_RABBITMQ_SERVER) and openssl")
    with tempfile.TemporaryDirectory(prefix="ferry-rabbitmq-") as name:
        yield from _run_node(Path(name))


def _run_node(folder: Path) -> Iterator[PrivateNode]:
    certs = make_certificates(folder / "certs")
    node = PrivateNode(
        name=f"ferry-tls-{secrets.token_hex(4)}@localhost",
        tls_port=free_port(),
        certs=certs,
        log=folder / "log" / "node.log",
    )
    with _node_process(folder, node.name, _config(certs, node.tls_port), node.log) as process:
        _wait_until_up(process, node.name, node.tls_port, node.log, certs.ca)
        yield node


@contextlib.contextmanager
def private_tcp_node(port: int | None = None) -> Iterator[PlainNode]:
    """A node listening for plain AMQP on 127.0.0.1:`port` (a free one by default); guest may
    log in, as from loopback."""
    if not Path(SERVER).exists():
        raise RuntimeError(f"needs {SERVER} (FERRY_TEST_RABBITMQ_SERVER)")
    with tempfile.TemporaryDirectory(prefix="ferry-rabbitmq-") as name:
        folder = Path(name)
        node = PlainNode(
            name=f"ferry-tcp-{secrets.token_hex(4)}@localhost",
            port=port or free_port(),
            log=folder / "log" / "node.log",
            home=_runs_as().pw_dir,
        )
        config = _tcp_config(node.port)
        with _node_process(folder, node.name, config, node.log, node.port) as process:
            _wait_until_up(process, node.name, node.port, node.log)
            yield node


@contextlib.contextmanager
def _node_process(
    folder: Path, name: str, config: str, log: Path, tcp_port: int | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    (folder / "rabbitmq.conf").write_text(config)
    (folder / "enabled_plugins").write_text("[].\n")
    (folder / "log").mkdir()
    owner = _runs_as()
    _hand_over(folder, owner)
    env = _node_environment(folder, name, owner.pw_dir)
    env["RABBITMQ_LOGS"] = str(log)
    if tcp_port is not None:  # the environment's port would win over the config's
        env["RABBITMQ_NODE_PORT"] = str(tcp_port)
    as_owner = {} if owner.pw_uid == os.geteuid() else {
        "user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []
    }  # fmt: skip
    with (folder / "log" / "console.out").open("wb") as console:
        process = subprocess.Popen(
            [SERVER], env=env, cwd=folder, stdout=console, stderr=subprocess.STDOUT, **as_owner
        )
    try:
        yield process
    finally:
        _stop(process)
