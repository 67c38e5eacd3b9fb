"""Publish -> every host switched: Ferry's publisher and rsync agents (their handlers, a real
rsync daemon, real target dirs) vs the same release done by hand with git and rsync; and the
rsync agent's idle memory."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ferry_events.registry import Event
from ferry_events.schemas import HostSyncRequested, ReleaseTagged, ReleaseTagRequested
from ferry_events.signing import generate_key
from ferry_publisher.handlers import tag_release
from ferry_publisher.releases import Publisher
from ferry_publisher.rsyncd import RsyncDaemon
from ferry_publisher.settings import Settings
from ferry_rsync_agent.config import AgentConfig, AppConfig
from ferry_rsync_agent.handlers import sync_release
from ferry_rsync_agent.housekeeping import tidy
from ferry_rsync_agent.releases import Layout, make_spare

from bench.backends import vhost
from bench.report import Figure
from bench.webtree import change_files, generate

APP = "site"
PASSWORD = "bench-only-rsync-password"
GIT = ["git", "-c", "user.name=Bench", "-c", "user.email=bench@example.com"]


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run([*GIT, *args], cwd=cwd, check=True, capture_output=True, text=True)
    return done.stdout.strip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Reports(list[Event]):
    """What the handlers report, and when the last report came (a host is switched when it
    reports; the agent's housekeeping after that is not on the release's path)."""

    last_at = 0.0

    async def __call__(self, event: Event) -> None:
        self.append(event)
        self.last_at = time.perf_counter()


@dataclass
class FerrySide:
    """A staging tree whose commits are pushed as refs/staged/<ticket> (as the staging agent
    does, before approval: not timed), the publisher with its rsync daemon, and the hosts."""

    work: Path
    publisher: Publisher
    source: str
    password_file: Path
    hosts: list[AgentConfig]

    def stage(self, version: int) -> ReleaseTagRequested:
        git(self.work, "add", "-A")
        git(self.work, "commit", "-qm", f"release {version}")
        commit = git(self.work, "rev-parse", "HEAD")
        repo = self.publisher.repo(APP).git_dir
        git(self.work, "push", "-qf", str(repo), f"{commit}:refs/staged/t-{version}")
        return ReleaseTagRequested(
            ticket_id=f"t-{version}",
            app=APP,
            version=version,
            commit=commit,
            tree=git(self.work, "rev-parse", f"{commit}^{{tree}}"),
            reason="bench",
            author="dev",
            approver="lead",
        )

    def agent(self, target: Path, index: int) -> AgentConfig:
        target.mkdir(parents=True, exist_ok=True)
        return AgentConfig(
            host=f"web-{index}",
            rsync_source=self.source,
            password_file=self.password_file,
            state_dir=target.parent / f"{target.name}.state",
            apps={APP: AppConfig(target=target)},
        )

    async def publish(self, cmd: ReleaseTagRequested, hosts: list[AgentConfig]) -> float:
        """Seconds from the publish command to `current` switched on every host."""
        start = time.perf_counter()
        tagged = Reports()
        await tag_release(cmd, self.publisher, tagged)
        release = tagged[-1]
        print(
            f"  publisher tag+export+manifest: {time.perf_counter() - start:.2f} s", file=sys.stderr
        )
        if not isinstance(release, ReleaseTagged):
            raise RuntimeError(f"publish failed: {release}")
        synced = Reports()
        await asyncio.gather(
            *(sync_release(self.sync(host, release), host, synced) for host in hosts)
        )
        elapsed = synced.last_at - start
        # Each agent's housekeeping once idle (prune, the next spare): not on the release's path.
        await asyncio.gather(*(asyncio.to_thread(tidy, host) for host in hosts))
        print(f"ferry v{cmd.version} to {len(hosts)}: {elapsed:.2f} s", file=sys.stderr)
        failed = [r for r in synced if r.type_name != "host.sync_completed"]
        if failed or len(synced) != len(hosts):
            raise RuntimeError(f"sync failed: {failed[:1]}")
        return elapsed

    @staticmethod
    def sync(host: AgentConfig, release: ReleaseTagged) -> HostSyncRequested:
        return HostSyncRequested(
            ticket_id=release.ticket_id,
            app=APP,
            host=host.host,
            version=release.version,
            digest=release.digest,
        )


@dataclass
class ManualSide:
    """By hand: commit and tag in the staging tree, pull into a release tree, rsync it out."""

    work: Path
    release: Path
    targets: list[Path]

    async def publish(self, version: int, targets: list[Path]) -> float:
        start = time.perf_counter()
        git(self.work, "add", "-A")
        git(self.work, "commit", "-qm", f"release {version}")
        git(self.work, "tag", "--", str(version))
        git(self.release, "pull", "-q", "--ff-only")

        async def rsync(target: Path) -> None:
            argv = ["rsync", "-a", "--delete", "--exclude=/.git", f"{self.release}/", f"{target}/"]
            process = await asyncio.create_subprocess_exec(*argv)
            if await process.wait() != 0:
                raise RuntimeError(f"rsync to {target} failed")

        await asyncio.gather(*(rsync(t) for t in targets))
        elapsed = time.perf_counter() - start
        print(f"manual v{version} to {len(targets)}: {elapsed:.2f} s", file=sys.stderr)
        return elapsed


@contextlib.asynccontextmanager
async def sides(root: Path, files: int, total_bytes: int, hosts: int):
    generate(root / "ferry-work", files, total_bytes)
    subprocess.run(["cp", "-a", "--", root / "ferry-work", root / "manual-work"], check=True)
    git(root / "ferry-work", "init", "-q", "-b", "main")
    manual = ManualSide(root / "manual-work", root / "manual-release", [])
    git(manual.work, "init", "-q", "-b", "main")
    git(manual.work, "commit", "-q", "--allow-empty", "-m", "start")
    git(root, "clone", "-q", "--", str(manual.work), str(manual.release))
    manual.targets = [root / "manual-hosts" / f"web-{i}" for i in range(hosts)]
    for target in manual.targets:
        target.mkdir(parents=True)
    password_file = root / "rsync.password"
    password_file.write_text(PASSWORD + "\n")
    password_file.chmod(0o600)
    port = free_port()
    settings = Settings(data_dir=root / "publisher", rsync_password=PASSWORD, rsync_port=port)
    daemon = RsyncDaemon(
        settings.exports_dir,
        settings.home / "rsyncd",
        address="127.0.0.1",
        port=port,
        user=settings.rsync_user,
        password=PASSWORD,
        hosts_allow="127.0.0.1",
    )
    publisher = Publisher(settings, on_new_export=daemon.write_config)
    git(root, "init", "-q", "--bare", str(settings.repos_dir / f"{APP}.git"))
    ferry = FerrySide(
        root / "ferry-work", publisher, f"rsync://ferry@127.0.0.1:{port}/", password_file, []
    )
    ferry.hosts = [ferry.agent(root / "ferry-hosts" / f"web-{i}", i) for i in range(hosts)]
    async with daemon:
        yield ferry, manual
        await publisher.idle()  # its housekeeping, before the directories go


def clone_host(source: Layout, target: Path) -> None:
    """A host already on the current release: its tree hard-linked (setup, not timed)."""
    version = source.current_version()
    assert version is not None
    layout = Layout(target)
    layout.releases.mkdir(parents=True)
    layout.manifests.mkdir(parents=True)
    subprocess.run(
        ["cp", "-al", "--", source.release(version), layout.release(version)], check=True
    )
    shutil.copy(source.manifest_file(version), layout.manifest_file(version))
    os.symlink(f"releases/{version}", layout.current)
    make_spare(layout, version)  # as its agent does when idle


async def run_deploys(scale: float, root: Path) -> list[Figure]:
    files, total = max(200, int(20_000 * scale)), int(300e6 * scale)
    figures = []
    async with sides(root, files, total, hosts=10) as (ferry, manual):
        # First deploy: one of each (a second would not be a first).
        t_manual = await manual.publish(1, manual.targets)
        t_ferry = await ferry.publish(ferry.stage(1), ferry.hosts)
        note = f"{files} files, {total / 1e6:.0f} MB, 10 hosts; handlers + rsyncd, no bus"
        figures.append(
            Figure(
                "deploy: first release to 10 hosts",
                t_ferry,
                t_manual,
                "s",
                1.25,
                higher_is_better=False,
                note=note,
            )
        )
        t_ferry = t_manual = 0.0
        rounds = 3
        for r in range(rounds):
            version = 2 + r
            change_files(ferry.work, files, version, fraction=0.01)
            change_files(manual.work, files, version, fraction=0.01)
            cmd = ferry.stage(version)
            if r % 2:
                t_ferry += await ferry.publish(cmd, ferry.hosts)
                t_manual += await manual.publish(version, manual.targets)
            else:
                t_manual += await manual.publish(version, manual.targets)
                t_ferry += await ferry.publish(cmd, ferry.hosts)
        figures.append(
            Figure(
                "deploy: 1%-change release to 10 hosts",
                t_ferry / rounds,
                t_manual / rounds,
                "s",
                1.25,
                higher_is_better=False,
                note=f"mean of {rounds} alternating rounds",
            )
        )
        figures.append(await fifty_hosts(ferry, manual, root, files, next_version=2 + rounds))
    return figures


async def fifty_hosts(
    ferry: FerrySide, manual: ManualSide, root: Path, files: int, next_version: int
) -> Figure:
    """50 hosts already on the current release; one file changes."""
    hosts, targets = [], []
    for i in range(50):
        target = root / "ferry-hosts50" / f"web-{i}"
        clone_host(Layout(ferry.hosts[0].apps[APP].target), target)
        hosts.append(ferry.agent(target, 100 + i))
        targets.append(root / "manual-hosts50" / f"web-{i}")
        targets[-1].parent.mkdir(exist_ok=True)
        subprocess.run(["cp", "-al", "--", manual.targets[0], targets[-1]], check=True)
    os.sync()  # hosts at rest: the copies above are not the release's to flush
    rounds, t_ferry, t_manual = 2, 0.0, 0.0
    for r in range(rounds):
        version = next_version + r
        change_files(ferry.work, files, version, count=1)
        change_files(manual.work, files, version, count=1)
        cmd = ferry.stage(version)
        t_manual += await manual.publish(version, targets)
        t_ferry += await ferry.publish(cmd, hosts)
    # The target is absolute (5 s): as a ratio against the bare run, scaled to that budget.
    return Figure(
        "deploy: 1-file change to 50 hosts",
        t_ferry / rounds,
        t_manual / rounds,
        "s",
        5.0 / (t_manual / rounds),
        higher_is_better=False,
        note=f"target: Ferry <= 5 s absolute; mean of {rounds} rounds",
    )


async def idle_rss(root: Path) -> Figure:
    """VmRSS of an idle `ferry-rsync-agent` on RabbitMQ, installed as on a host (its own venv
    with only its dependencies, bytecode compiled, as pip does), beside a bare asyncio
    interpreter."""
    target = root / "rss-host"
    target.mkdir(parents=True)
    agent_bin = host_install(root / "agent-venv")
    generate_key(root / "api.key")  # the agent does not start without a trusted key
    with vhost() as amqp_url:
        (root / "agent.toml").write_text(
            f'host = "web-rss"\nrsync_source = "rsync://ferry@127.0.0.1:1/"\n'
            f'state_dir = "{root / "rss-state"}"\ntrusted_keys = ["{root / "api.key.pub"}"]\n'
            f'[apps.{APP}]\ntarget = "{target}"\n'
        )
        env = {
            **os.environ,
            "FERRY_AGENT_CONFIG": str(root / "agent.toml"),
            "FERRY_BROKER_URL": amqp_url,
        }
        with (
            spawned([str(agent_bin)], env) as agent,
            spawned([sys.executable, "-c", "import asyncio, time; time.sleep(60)"], env) as bare,
        ):
            await asyncio.sleep(5)
            if agent.poll() is not None:
                raise RuntimeError(f"ferry-rsync-agent exited {agent.returncode}")
            ferry_mb, bare_mb = vm_rss_mb(agent.pid), vm_rss_mb(bare.pid)
    return Figure(
        "rsync agent idle RSS",
        ferry_mb,
        bare_mb,
        "MiB",
        40.0 / bare_mb,
        higher_is_better=False,
        note="target: Ferry <= 40 MiB absolute; the agent in a venv of its own",
    )


def host_install(venv: Path) -> Path:
    """The agent and ferry-events with their dependencies only: the workspace venv also holds
    the API's and the CLI's, some of which structlog would load (rich)."""
    repo = Path(__file__).resolve().parents[1]
    uv = ["uv", "--quiet"]
    subprocess.run([*uv, "venv", "--python", sys.executable, "--", str(venv)], check=True)
    packages = [str(repo / "libs/events"), str(repo / "services/rsync-agent")]
    install = ["pip", "install", "--compile-bytecode", "--python", str(venv / "bin/python")]
    subprocess.run([*uv, *install, "--", *packages], check=True)
    return venv / "bin/ferry-rsync-agent"


@contextlib.contextmanager
def spawned(argv: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield process
    finally:
        process.terminate()
        process.wait(timeout=20)


def vm_rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) / 1024


async def run(scale: float = 1.0) -> list[Figure]:
    root = Path(tempfile.mkdtemp(prefix="ferry-bench-deploy-"))
    root.chmod(0o755)  # a root rsync daemon serves as `nobody`
    try:
        return [*await run_deploys(scale, root), await idle_rss(root)]
    finally:
        # rm in C: shutil.rmtree takes minutes over the 50 hosts' million hard links.
        subprocess.run(["rm", "-rf", "--", str(root)], check=False)
