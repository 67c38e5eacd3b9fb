"""Offline checks of deploy/k8s and the images' Dockerfile: Kubernetes schemas (strict, from
kubernetes-validate), the security settings, the wiring between settings, secrets and volumes."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from ferry_api.settings import Settings as ApiSettings
from ferry_publisher.settings import Settings as PublisherSettings
from ferry_staging_agent.settings import Settings as StagingSettings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
BASE, OVERLAY = K8S / "base", K8S / "overlays" / "example"
SECRET_EXAMPLE = K8S / "examples" / "secret.example.yaml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"  # one for every image: --build-arg SERVICE=<name>
# The oldest Kubernetes we claim to support, and the newest whose schemas the package ships.
KUBERNETES_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())
WORKLOADS = {"Deployment", "StatefulSet", "Job"}
SECRET_SETTINGS = {
    "FERRY_DATABASE_URL",
    "FERRY_SECRET_KEY",
    "FERRY_RSYNC_PASSWORD",
    "FERRY_BROKER_PASSWORD",
}
# Parts joined into FERRY_BROKER_URL in the containers' env, so its password stays in the Secret.
BROKER_URL_PARTS = {"FERRY_BROKER_USER", "FERRY_BROKER_ADDRESS", "FERRY_BROKER_VHOST"}
SERVICES = ("api", "staging-agent", "publisher", "rsync-agent")
APT_PACKAGES = {
    "api": set(),
    "staging-agent": {"git", "subversion", "openssh-client"},
    "publisher": {"git", "rsync"},
    "rsync-agent": {"rsync"},
}


def kustomize_command() -> list[str] | None:
    if found := shutil.which("kustomize"):
        return [found, "build"]
    if found := shutil.which("kubectl"):
        return [found, "kustomize"]
    return None


def load_yaml(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def base_objects() -> list[dict[str, Any]]:
    """The base's objects as written (what kustomize adds is only labels, names and images)."""
    kustomization = load_yaml(BASE / "kustomization.yaml")[0]
    return [obj for name in kustomization["resources"] for obj in load_yaml(BASE / name)]


def render(directory: Path) -> list[dict[str, Any]]:
    command = kustomize_command()
    if command is None:
        pytest.skip("neither kustomize nor kubectl is installed: cannot render")
    done = subprocess.run([*command, str(directory)], capture_output=True, text=True, check=True)
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc is not None]


@pytest.fixture(scope="module", params=["files", "base", "overlay"])
def rendered(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    """The base's files as written (always), and as kustomize renders base and overlay."""
    if request.param == "files":
        return base_objects()
    return render(BASE if request.param == "base" else OVERLAY)


def config_data(objects: list[dict[str, Any]]) -> dict[str, str]:
    """The rendered ConfigMap; for the unrendered files, the generator's literals."""
    for obj in objects:
        if obj["kind"] == "ConfigMap":
            return dict(obj["data"])
    (generator,) = load_yaml(BASE / "kustomization.yaml")[0]["configMapGenerator"]
    return dict(literal.split("=", 1) for literal in generator["literals"])


def pod_specs(objects: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for obj in objects:
        if obj["kind"] in WORKLOADS:
            yield obj["metadata"]["name"], obj["spec"]["template"]["spec"]


def containers(objects: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, spec in pod_specs(objects):
        for container in spec.get("initContainers", []) + spec["containers"]:
            yield f"{name}/{container['name']}", container


def find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {var["name"]: var for var in container.get("env", [])}


def test_every_kustomization_names_files_that_exist() -> None:
    kustomizations = sorted(K8S.rglob("kustomization.yaml"))
    assert {k.parent for k in kustomizations} == {BASE, OVERLAY}
    for kustomization in kustomizations:
        spec = load_yaml(kustomization)[0]
        named = spec.get("resources", []) + [
            p["path"] for p in spec.get("patches", []) if "path" in p
        ]
        assert named, kustomization
        for entry in named:
            target = kustomization.parent / entry
            assert target.is_file() or (target / "kustomization.yaml").is_file(), target
    for path in K8S.rglob("*.yaml"):
        assert load_yaml(path), f"{path} holds no YAML document"


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_base_files_and_secret_example_match_the_kubernetes_schemas(version: str) -> None:
    objects = [*base_objects(), *load_yaml(SECRET_EXAMPLE)]
    assert {o["kind"] for o in objects} >= {"Deployment", "StatefulSet", "Job", "Service", "Secret"}
    for obj in objects:
        kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_rendered_objects_match_the_kubernetes_schemas(
    rendered: list[dict[str, Any]], version: str
) -> None:
    for obj in rendered:
        kubernetes_validate.validate(obj, version, strict=True)


def test_a_schema_violation_is_caught() -> None:
    """The validator really checks: a misspelt field fails in strict mode."""
    deployment = find(base_objects(), "Deployment", "ferry-api")
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["livenessprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[0], strict=True)


def test_pods_run_non_root_without_privileges(rendered: list[dict[str, Any]]) -> None:
    specs = dict(pod_specs(rendered))
    assert set(specs) == {"ferry-api", "ferry-migrate", "ferry-publisher", "ferry-staging-agent"}
    for name, spec in specs.items():
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] != 0, name
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec["automountServiceAccountToken"] is False, name
        assert not spec.get("hostNetwork") and not spec.get("hostPID"), name
        tmp_volumes = {v["name"] for v in spec["volumes"] if "emptyDir" in v}
        for container in spec["containers"]:
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert mounts.get("/tmp") in tmp_volumes, f"{name}: /tmp is not an emptyDir"
    for name, container in containers(rendered):
        security = container["securityContext"]
        assert security["allowPrivilegeEscalation"] is False, name
        assert security["readOnlyRootFilesystem"] is True, name
        assert security["runAsNonRoot"] is True, name
        assert security["capabilities"] == {"drop": ["ALL"]}, name
        assert not security.get("privileged"), name
        for bound in ("requests", "limits"):
            assert set(container["resources"][bound]) >= {"cpu", "memory"}, name


def test_api_is_probed_on_healthz_and_readyz(rendered: list[dict[str, Any]]) -> None:
    deployment = find(rendered, "Deployment", "ferry-api")
    assert deployment["spec"]["replicas"] >= 2
    (api,) = deployment["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in api["ports"]}
    assert ports == {"http": ApiSettings.model_fields["port"].default}
    assert api["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert api["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert env_of(api)["FERRY_HOST"]["value"] == "0.0.0.0"
    (port,) = find(rendered, "Service", "ferry-api")["spec"]["ports"]
    assert port["targetPort"] == "http"


def test_migrations_run_once_as_a_job_not_in_each_api_pod(rendered: list[dict[str, Any]]) -> None:
    job = find(rendered, "Job", "ferry-migrate")
    (migrate,) = job["spec"]["template"]["spec"]["containers"]
    assert migrate["args"] == ["migrate"]
    (api,) = find(rendered, "Deployment", "ferry-api")["spec"]["template"]["spec"]["containers"]
    assert migrate["image"] == api["image"]
    assert env_of(api)["FERRY_MIGRATE_ON_START"]["value"] == "false"


def test_publisher_serves_rsync_on_its_service(rendered: list[dict[str, Any]]) -> None:
    rsync_port = PublisherSettings.model_fields["rsync_port"].default
    publisher = find(rendered, "StatefulSet", "ferry-publisher")
    (container,) = publisher["spec"]["template"]["spec"]["containers"]
    assert container["ports"] == [{"name": "rsync", "containerPort": rsync_port}]
    assert container["readinessProbe"]["tcpSocket"] == {"port": "rsync"}
    assert env_of(container)["FERRY_RSYNC_ADDRESS"]["value"] == "0.0.0.0"
    assert publisher["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    service = find(rendered, "Service", "ferry-publisher")
    (port,) = service["spec"]["ports"]
    assert (port["port"], port["targetPort"]) == (rsync_port, "rsync")


def test_staging_agent_pushes_into_the_publishers_release_repos(
    rendered: list[dict[str, Any]],
) -> None:
    """Both pods mount one claim: where the agent pushes is where the publisher tags."""
    config = config_data(rendered)

    def claim_mounts(spec: dict[str, Any], container: dict[str, Any]) -> dict[str, str]:
        claims = {
            v["name"]: v["persistentVolumeClaim"]["claimName"]
            for v in spec["volumes"]
            if "persistentVolumeClaim" in v
        }
        return {
            claims[m["name"]]: m["mountPath"]
            for m in container["volumeMounts"]
            if m["name"] in claims
        }

    stager_spec = find(rendered, "Deployment", "ferry-staging-agent")["spec"]["template"]["spec"]
    (stager,) = stager_spec["containers"]
    publisher_spec = find(rendered, "StatefulSet", "ferry-publisher")["spec"]["template"]["spec"]
    (publisher,) = publisher_spec["containers"]
    push_to = env_of(stager)["FERRY_RELEASE_REPO_BASE"]["value"]
    assert claim_mounts(stager_spec, stager)["ferry-release-repos"] == push_to
    publisher_settings = PublisherSettings(
        data_dir=config["FERRY_DATA_DIR"], rsync_password="x" * 32
    )
    assert claim_mounts(publisher_spec, publisher)["ferry-release-repos"] == str(
        publisher_settings.repos_dir
    )
    staging = StagingSettings(data_dir=config["FERRY_DATA_DIR"])
    staging_claim = claim_mounts(stager_spec, stager)["ferry-staging"]
    assert staging.staging_dir.is_relative_to(staging_claim)


def test_secrets_come_only_from_secret_references(rendered: list[dict[str, Any]]) -> None:
    assert not [o for o in rendered if o["kind"] == "Secret"], "a Secret would be applied"
    example_keys = set(load_yaml(SECRET_EXAMPLE)[0]["stringData"])
    config = config_data(rendered)
    assert not SECRET_SETTINGS & set(config)
    assert "FERRY_BROKER_URL" not in config
    referenced: set[str] = set()
    for name, container in containers(rendered):
        for var_name, var in env_of(container).items():
            ref = var.get("valueFrom", {}).get("secretKeyRef")
            if var_name in SECRET_SETTINGS:
                assert ref is not None and "value" not in var, f"{name}: {var_name}"
            if ref:
                assert ref["name"] == "ferry-secrets", name
                referenced.add(ref["key"])
        if url := env_of(container).get("FERRY_BROKER_URL"):
            assert url["value"].startswith("amqp://$(FERRY_BROKER_USER):$(FERRY_BROKER_PASSWORD)@")
    assert referenced == example_keys, "the secret example and the manifests disagree"


def test_secret_example_is_a_placeholder_nobody_applies() -> None:
    for kustomization in K8S.rglob("kustomization.yaml"):
        spec = load_yaml(kustomization)[0]
        named = spec.get("resources", []) + [p.get("path", "") for p in spec.get("patches", [])]
        assert not [n for n in named if "example" in Path(n).name], kustomization
    (secret,) = load_yaml(SECRET_EXAMPLE)
    assert "example" in SECRET_EXAMPLE.name
    assert all("REPLACE_ME" in value for value in secret["stringData"].values())


def test_every_ferry_variable_is_a_real_setting(rendered: list[dict[str, Any]]) -> None:
    """A misspelt FERRY_* name would be silently ignored by pydantic-settings."""
    known = (
        {
            f"FERRY_{field.upper()}"
            for settings in (ApiSettings, StagingSettings, PublisherSettings)
            for field in settings.model_fields
        }
        | BROKER_URL_PARTS
        | {"FERRY_BROKER_PASSWORD"}
    )
    config = config_data(rendered)
    used = {n for n in config if n.startswith("FERRY_")}
    for _, container in containers(rendered):
        used |= {n for n in env_of(container) if n.startswith("FERRY_")}
    assert used - known == set()
    assert BROKER_URL_PARTS <= set(config)


def test_overlay_sets_namespace_images_and_replicas() -> None:
    objects = render(OVERLAY)
    namespaced = [o for o in objects if o["kind"] != "Namespace"]
    assert {o["metadata"].get("namespace") for o in namespaced} == {"ferry"}
    images = {c["image"] for _, c in containers(objects)}
    assert images and all(
        re.fullmatch(r"registry\.example\.com/ferry/[a-z-]+:0\.1\.0", i) for i in images
    )
    assert find(objects, "Deployment", "ferry-api")["spec"]["replicas"] == 3
    namespace = find(objects, "Namespace", "ferry")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    lines = [x for x in text.splitlines() if not x.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    return [
        (word.upper(), rest.strip())
        for word, _, rest in (line.strip().partition(" ") for line in joined.splitlines())
        if word
    ]


def image_instructions(service: str) -> list[tuple[str, str]]:
    """What `docker build -f deploy/Dockerfile --build-arg SERVICE=<service>` runs: the final
    stage, the stages it is built FROM and those it copies from, in file order."""
    text = DOCKERFILE.read_text().replace("${SERVICE}", service).replace("$SERVICE", service)
    stages: list[tuple[str, str, list[tuple[str, str]]]] = []  # (name, base, instructions)
    for op, args in dockerfile_instructions(text):
        if op == "FROM":
            base, _, name = args.partition(" AS ")
            stages.append((name.strip() or f"#{len(stages)}", base.strip(), []))
        if stages:
            stages[-1][2].append((op, args))
    by_name = {name: (base, found) for name, base, found in stages}
    wanted, todo = set(), [stages[-1][0]]
    while todo:
        name = todo.pop()
        wanted.add(name)
        base, found = by_name[name]
        sources = [base] + [a.split()[0].removeprefix("--from=") for o, a in found if o == "COPY"]
        todo += [s for s in sources if s in by_name and s not in wanted]
    return [i for name, _, found in stages if name in wanted for i in found]


@pytest.mark.parametrize("service", SERVICES)
def test_dockerfile_is_slim_non_root_and_copies_only_its_own_code(service: str) -> None:
    instructions = image_instructions(service)
    stage_names = {a.partition(" AS ")[2].strip() for op, a in instructions if op == "FROM"}
    stages = [args for op, args in instructions if op == "FROM"]
    images = [s.split()[0] for s in stages if s.split()[0] not in stage_names]
    assert images and all(image.startswith("python:3.11-slim") for image in images)
    users = [args for op, args in instructions if op == "USER"]
    assert users and users[-1].split(":")[0] not in {"0", "root"}, "the image runs as root"
    own = ("libs/events", f"services/{service}")
    allowed = {"pyproject.toml", "uv.lock", *own, *(f"{d}/pyproject.toml" for d in own)}
    for op, args in instructions:
        if op == "COPY" and not args.startswith("--from"):
            *sources, _ = args.split()
            for source in sources:
                assert source in allowed, f"{service} copies {source}"
    copied = {
        source
        for op, args in instructions
        if op == "COPY" and not args.startswith("--")
        for source in args.split()[:-1]
    }
    assert {"uv.lock", "libs/events", f"services/{service}"} <= copied
    syncs = [a for op, a in instructions if op == "RUN" and "uv sync" in a]
    package = f"--package ferry-{service}"
    assert len(syncs) == 2 and all("--frozen" in s and package in s for s in syncs)
    assert "--no-install-workspace" in syncs[0], "dependencies must be their own layer"
    installs = " ".join(a for op, a in instructions if op == "RUN" and "apt-get install" in a)
    words = set(installs.split()) - {"apt-get", "update", "install", "--yes", "&&", "rm", "-rf"}
    packages = {w for w in words if not w.startswith(("-", "/"))}
    assert packages == APT_PACKAGES[service]
    entrypoints = [a for op, a in instructions if op == "ENTRYPOINT"]
    assert entrypoints == [f'["ferry-{service}"]'], "the image runs its own service"


def test_dockerfile_builds_no_image_without_a_service() -> None:
    lines = DOCKERFILE.read_text().splitlines()
    assert "ARG SERVICE" in lines, "a default SERVICE would hide a forgotten --build-arg"
    assert lines[-1].startswith("USER ") and "FROM ${SERVICE}" in lines


def test_dockerignore_keeps_local_state_out_of_the_build_context() -> None:
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {".git", ".venv", ".ferry", "tests"} <= ignored
