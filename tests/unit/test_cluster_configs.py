"""clusters/: the launcher files pass Ray's own validation, the KubeRay manifests carry
every field KubeRay's CRDs require, and no file opens the dashboard or the GCS to the
world. All offline: Ray's checks are called exactly as `ray up` calls them before it
talks to a cloud, and no Ray cluster starts."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
import jsonschema
import pytest
import ray
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from raydl import registry

ROOT = Path(__file__).resolve().parents[2]
CLUSTERS = ROOT / "clusters"
LAUNCHER_FILES = sorted(CLUSTERS.glob("*.yaml"))
KUBERAY_FILES = sorted((CLUSTERS / "kuberay").glob("*.yaml"))
ALL_FILES = sorted([*CLUSTERS.rglob("*.yaml"), *CLUSTERS.rglob("*.yml")])
CLOUD_FILES = [p for p in LAUNCHER_FILES if p.stem != "local"]

LOCALHOST = {"127.0.0.1", "localhost", "::1"}
DASHBOARD_HOST = re.compile(r"--dashboard-host(?:=|\s+)(\S+)")
INSTALLS_RAYDL = re.compile(r"\bpip install\b.*(?:-e|--editable)\s+~/raydl(?:\s|$)")
INSTALLS_TORCH = re.compile(r"\bpip install\b.*[\s\"']torch\b")
# Token authentication (Ray reads RAY_AUTH_MODE from the environment of `ray start`, and
# the token from ~/.ray/auth_token). The launcher runs each listed command in its own
# shell, so the mode must be set in the command that starts Ray: as the prefix of
# `ray start`, or exported earlier in the same command.
AUTH_TOKEN = "~/.ray/auth_token"
RAY_START = re.compile(r"\bray start\b")
MODE_PREFIX = re.compile(r"\bRAY_AUTH_MODE=token\s+$")
MODE_EXPORTED = re.compile(r"\bexport\s+RAY_AUTH_MODE=token\s*(?:;|&&|\n)")

# Required fields of KubeRay's CRDs (API ray.io/v1): the `required:` lists in
# ray-project/kuberay ray-operator/config/crd/bases/ray.io_rayclusters.yaml and
# ray.io_rayjobs.yaml, commit 1184bc872c0801e59c18caf8a1a4eb5f2800ce93, along
# spec, spec.headGroupSpec, its template.spec and containers[], spec.workerGroupSpecs[],
# and for RayJob spec and spec.rayClusterSpec (the same RayCluster spec).
RAYCLUSTER_SPEC_REQUIRED = ("headGroupSpec",)
HEAD_GROUP_REQUIRED = ("rayStartParams", "template")
WORKER_GROUP_REQUIRED = ("groupName", "maxReplicas", "minReplicas", "rayStartParams", "template")
POD_SPEC_REQUIRED = ("containers",)
CONTAINER_REQUIRED = ("name",)
RAYJOB_SPEC_REQUIRED = ("entrypoint",)
# The properties the same CRDs define at those levels. The API server silently drops
# unknown fields of a custom resource, so a misspelled one would just vanish; a field a
# newer KubeRay adds belongs here, with the commit that defines it.
# authOptions (Ray token authentication) came with KubeRay 1.5.1 (ray-project/kuberay#4179),
# after the CRD version the rest of these lists come from.
RAYCLUSTER_SPEC_FIELDS = {"authOptions", "autoscalerOptions", "enableInTreeAutoscaling", "headGroupSpec",
                          "headServiceAnnotations", "rayVersion", "workerGroupSpecs"}
HEAD_GROUP_FIELDS = {"enableIngress", "headService", "rayStartParams", "replicas",
                     "serviceType", "template"}
WORKER_GROUP_FIELDS = {"groupName", "maxReplicas", "minReplicas", "rayStartParams", "replicas",
                       "scaleStrategy", "template"}
RAYJOB_SPEC_FIELDS = {"clusterSelector", "entrypoint", "entrypointNumCpus", "entrypointNumGpus",
                      "entrypointResources", "jobId", "metadata", "rayClusterSpec", "runtimeEnv",
                      "runtimeEnvYAML", "shutdownAfterJobFinishes", "submitterPodTemplate",
                      "suspend", "ttlSecondsAfterFinished"}


def _load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), f"{path.name}: not a YAML mapping"
    return data


def _prepared(config: dict[str, Any]) -> dict[str, Any]:
    """What `ray up` checks before it talks to a cloud: defaults merged, then validated."""
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def _ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(CLUSTERS)) for p in paths]


# -- launcher files -------------------------------------------------------------------


def _start_commands(prepared: dict[str, Any]) -> list[str]:
    return [*prepared["head_start_ray_commands"], *prepared["worker_start_ray_commands"]]


def _setup_commands_by_node(prepared: dict[str, Any]) -> dict[str, list[str]]:
    """The setup commands each node runs, as the autoscaler picks them: the head runs
    setup_commands + head_setup_commands; a worker runs its node type's own
    worker_setup_commands if it has them, else setup_commands + worker_setup_commands."""
    commands = {"head": prepared["head_setup_commands"]}
    for name, node_type in prepared["available_node_types"].items():
        if name != prepared["head_node_type"] or prepared["provider"]["type"] == "local":
            commands[f"worker {name}"] = node_type.get(
                "worker_setup_commands", prepared["worker_setup_commands"])
    return commands


def exposure_problems(config: dict[str, Any]) -> list[str]:
    """Ways a launcher config opens the dashboard (8265) or the GCS (6379) to the world,
    judged on the config `ray up` really uses (Ray's defaults merged in: the AWS and GCP
    defaults start the head with the dashboard on all interfaces)."""
    prepared = _prepared(config)
    problems = []
    commands = [*_start_commands(prepared), *prepared["initialization_commands"]]
    commands += [c for cs in _setup_commands_by_node(prepared).values() for c in cs]
    for command in commands:
        for host in DASHBOARD_HOST.findall(command):
            if host.strip("'\"") not in LOCALHOST:
                problems.append(f"dashboard bound to {host}: {command}")
    provider = prepared["provider"]
    for rule in provider.get("security_group", {}).get("IpPermissions", []):
        ports = (rule.get("IpProtocol"), rule.get("FromPort"), rule.get("ToPort"))
        if ports != ("tcp", 22, 22):
            problems.append(f"security group ingress other than SSH: {rule}")
    for name, node_type in prepared["available_node_types"].items():
        text = yaml.safe_dump(node_type["node_config"])
        if re.search(r"\b(8265|6379)\b", text):
            problems.append(f"{name}: node_config mentions port 8265/6379")
    return problems


def test_the_expected_files_are_there() -> None:
    assert {p.stem for p in LAUNCHER_FILES} >= {"local", "aws", "gcp"}
    assert {p.stem for p in KUBERAY_FILES} >= {"raycluster", "rayjob"}
    assert (CLUSTERS / "README.md").is_file()


@pytest.mark.parametrize("path", LAUNCHER_FILES, ids=_ids(LAUNCHER_FILES))
def test_launcher_config_passes_rays_validation(path: Path) -> None:
    config = _load(path)
    prepared = _prepared(config)
    assert prepared["head_node_type"] in prepared["available_node_types"]
    for name, node_type in prepared["available_node_types"].items():
        assert 0 <= node_type["min_workers"] <= node_type["max_workers"], name
    assert sum(t["min_workers"] for t in prepared["available_node_types"].values()) \
        <= prepared["max_workers"]


@pytest.mark.parametrize("path", LAUNCHER_FILES, ids=_ids(LAUNCHER_FILES))
def test_launcher_config_starts_ray_as_the_launcher_expects(path: Path) -> None:
    prepared = _prepared(_load(path))
    head = " ".join(prepared["head_start_ray_commands"])
    assert "ray start --head" in head and "--port=6379" in head
    assert "--autoscaling-config=~/ray_bootstrap_config.yaml" in head
    assert any("--address=$RAY_HEAD_IP:6379" in c for c in prepared["worker_start_ray_commands"])


def token_auth_problems(config: dict[str, Any]) -> list[str]:
    """Ways a launcher config starts Ray without token authentication, judged on the
    config `ray up` really uses (Ray's default start commands set no auth mode): every
    `ray start` runs with RAY_AUTH_MODE=token, and every node gets this machine's token."""
    prepared = _prepared(config)
    problems = []
    if prepared["file_mounts"].get(AUTH_TOKEN) != AUTH_TOKEN:
        problems.append(f"file_mounts does not copy {AUTH_TOKEN} to {AUTH_TOKEN}")
    commands = [*_start_commands(prepared), *prepared["initialization_commands"]]
    commands += [c for cs in _setup_commands_by_node(prepared).values() for c in cs]
    for command in commands:
        for start in RAY_START.finditer(command):
            before = command[:start.start()]
            if not (MODE_PREFIX.search(before) or MODE_EXPORTED.search(before)):
                problems.append(f"ray start without RAY_AUTH_MODE=token: {command}")
    return problems


@pytest.mark.parametrize("path", LAUNCHER_FILES, ids=_ids(LAUNCHER_FILES))
def test_launcher_config_runs_with_token_auth(path: Path) -> None:
    config = _load(path)
    assert token_auth_problems(config) == [], path.name
    prepared = _prepared(config)
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        assert any(RAY_START.search(c) for c in prepared[key]), f"{path.name}: {key}"
    # The header tells the user to make the token before `ray up` (which needs the file).
    text = path.read_text()
    generate = text.find("RAY_AUTH_MODE=token ray get-auth-token --generate")
    assert 0 <= generate < text.find(f"ray up clusters/{path.name}"), path.name


@pytest.mark.parametrize("path", LAUNCHER_FILES, ids=_ids(LAUNCHER_FILES))
def test_token_auth_check_catches_a_config_without_it(path: Path) -> None:
    config = _load(path)
    no_mode = copy.deepcopy(config)
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        no_mode[key] = [c.replace("RAY_AUTH_MODE=token ", "") for c in no_mode[key]]
    problems = token_auth_problems(no_mode)
    assert any("--head" in p for p in problems), path.name
    assert any("$RAY_HEAD_IP" in p for p in problems), path.name
    # Ray's own default start commands, used when the file lists none, set no mode.
    defaults = copy.deepcopy(config)
    del defaults["worker_start_ray_commands"]
    assert any("ray start without" in p for p in token_auth_problems(defaults)), path.name
    # Each listed command runs in a shell of its own: an export one line up is lost.
    head = no_mode["head_start_ray_commands"]
    separate = copy.deepcopy(no_mode)
    separate["head_start_ray_commands"] = ["export RAY_AUTH_MODE=token", *head]
    assert any("--head" in p for p in token_auth_problems(separate)), path.name
    exported = copy.deepcopy(no_mode)  # ...while one in the same command holds
    exported["head_start_ray_commands"] = [f"export RAY_AUTH_MODE=token; {c}" for c in head]
    assert not any("--head" in p for p in token_auth_problems(exported)), path.name
    no_token = copy.deepcopy(config)
    del no_token["file_mounts"][AUTH_TOKEN]
    assert any("file_mounts" in p for p in token_auth_problems(no_token)), path.name


@pytest.mark.parametrize("path", LAUNCHER_FILES, ids=_ids(LAUNCHER_FILES))
def test_every_node_installs_this_project(path: Path) -> None:
    prepared = _prepared(_load(path))
    # file_mounts are relative to where `ray up` runs: the project root.
    assert (ROOT / prepared["file_mounts"]["~/raydl"]).resolve() == ROOT
    assert 'name = "raydl"' in (ROOT / "pyproject.toml").read_text()
    assert ".gitignore" in prepared["rsync_filter"]  # no .venv/ or runs/ uploads
    for node, commands in _setup_commands_by_node(prepared).items():
        assert any(INSTALLS_RAYDL.search(c) for c in commands), f"{path.name}: {node}"


@pytest.mark.parametrize("path", CLOUD_FILES, ids=_ids(CLOUD_FILES))
def test_cloud_config_has_cpu_and_gpu_workers(path: Path) -> None:
    prepared = _prepared(_load(path))
    types = prepared["available_node_types"]
    workers = {n: t for n, t in types.items() if n != prepared["head_node_type"]}
    gpu = {n: t for n, t in workers.items() if t["resources"].get("GPU", 0) > 0}
    cpu = {n: t for n, t in workers.items() if t["resources"].get("GPU", 0) == 0}
    assert gpu and cpu, f"{path.name}: needs a CPU and a GPU worker type"
    for name, node_type in types.items():
        assert node_type["resources"].get("CPU", 0) > 0, name
        assert node_type["resources"].get("memory", 0) > 0, name
        assert node_type["max_workers"] >= 1 or name == prepared["head_node_type"], name
    commands = _setup_commands_by_node(prepared)
    for node, node_commands in commands.items():
        torch = [c for c in node_commands if INSTALLS_TORCH.search(c)]
        assert torch, f"{path.name}: {node} installs no torch"
        is_gpu = any(node == f"worker {n}" for n in gpu)
        # CPU-only wheels on a GPU node would leave the GPU unused.
        assert is_gpu != any("whl/cpu" in c for c in torch), f"{path.name}: {node}"
    if prepared["provider"]["type"] == "gcp":
        for name, node_type in gpu.items():
            config = node_type["node_config"]
            assert config["guestAccelerators"][0]["acceleratorCount"] >= 1
            # GCP refuses GPU VMs that would live-migrate; `scheduling` is one object.
            assert config["scheduling"]["onHostMaintenance"] == "TERMINATE", name
    # Ray runs on the head: the cloud SDK its autoscaler launches workers with.
    sdk = {"aws": "boto3", "gcp": "google-api-python-client"}[prepared["provider"]["type"]]
    assert any(sdk in c for c in prepared["head_setup_commands"])


@pytest.mark.parametrize("path", CLOUD_FILES, ids=_ids(CLOUD_FILES))
def test_cloud_containers_run_the_pinned_ray(path: Path) -> None:
    prepared = _prepared(_load(path))
    docker = prepared["docker"]
    images = [docker[k] for k in ("image", "head_image", "worker_image") if k in docker]
    images += [t["docker"]["worker_image"] for t in prepared["available_node_types"].values()
               if "worker_image" in t.get("docker", {})]
    assert images
    for image in images:
        assert image.startswith(f"rayproject/ray:{ray.__version__}-py311"), image


BROKEN_CLOUD_CONFIGS = {
    "misspelled top-level key": (
        lambda c: c.update(setup_comands=c.pop("setup_commands")), jsonschema.ValidationError),
    # Ray's defaults then name their own head type, which these files do not define.
    "missing head_node_type": (lambda c: c.pop("head_node_type"), ValueError),
    "unknown head_node_type": (lambda c: c.update(head_node_type="hed"), ValueError),
    "misspelled node type field": (
        lambda c: c["available_node_types"]["head"].update(
            resource=c["available_node_types"]["head"].pop("resources")),
        jsonschema.ValidationError),
    "GPU count as a string": (
        lambda c: c["available_node_types"]["gpu_worker"]["resources"].update(GPU="1"),
        jsonschema.ValidationError),
    "min_workers above max_workers": (
        lambda c: (c["available_node_types"]["cpu_worker"].update(min_workers=3),
                   c.update(max_workers=2)),
        ValueError),
}


@pytest.mark.parametrize("path", CLOUD_FILES, ids=_ids(CLOUD_FILES))
@pytest.mark.parametrize("mistake", list(BROKEN_CLOUD_CONFIGS))
def test_rays_validation_rejects_a_broken_copy(path: Path, mistake: str) -> None:
    mutate, error = BROKEN_CLOUD_CONFIGS[mistake]
    config = _load(path)
    _prepared(config)
    mutate(config)
    with pytest.raises(error):
        _prepared(config)


@pytest.mark.parametrize(
    ("mutate", "error"),
    [
        (lambda c: c.update(setup_comands=c.pop("setup_commands")), jsonschema.ValidationError),
        (lambda c: c["provider"].pop("worker_ips"), click.ClickException),
        # On-prem clusters have one implicit node type; Ray refuses a declared one.
        (lambda c: c.update(available_node_types={"x": {"resources": {}, "node_config": {}}}),
         click.ClickException),
    ],
    ids=["misspelled top-level key", "no worker_ips", "node types on-prem"],
)
def test_rays_validation_rejects_a_broken_local_copy(
    mutate: Callable[[dict[str, Any]], object], error: type[Exception]
) -> None:
    config = _load(CLUSTERS / "local.yaml")
    _prepared(config)
    mutate(config)
    with pytest.raises(error):
        _prepared(config)


# -- KubeRay manifests ----------------------------------------------------------------


def _documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _pod_groups(cluster_spec: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    yield "headGroupSpec", cluster_spec.get("headGroupSpec", {})
    for i, group in enumerate(cluster_spec.get("workerGroupSpecs", [])):
        yield f"workerGroupSpecs[{i}]", group


def _missing(where: str, obj: dict[str, Any], required: tuple[str, ...]) -> list[str]:
    return [f"{where}.{key}" for key in required if key not in obj]


def _unknown(where: str, obj: dict[str, Any], known: set[str]) -> list[str]:
    return [f"{where}.{key} (unknown field)" for key in sorted(set(obj) - known)]


def cluster_spec_problems(where: str, spec: dict[str, Any]) -> list[str]:
    """Missing required or unknown fields of a RayCluster spec, and values the CRD's
    types or KubeRay would refuse."""
    problems = _missing(where, spec, RAYCLUSTER_SPEC_REQUIRED)
    problems += _unknown(where, spec, RAYCLUSTER_SPEC_FIELDS)
    for name, group in _pod_groups(spec):
        at = f"{where}.{name}"
        is_head = name == "headGroupSpec"
        problems += _missing(at, group, HEAD_GROUP_REQUIRED if is_head else WORKER_GROUP_REQUIRED)
        problems += _unknown(at, group, HEAD_GROUP_FIELDS if is_head else WORKER_GROUP_FIELDS)
        params = group.get("rayStartParams") or {}
        # additionalProperties: {type: string}: `num-cpus: 0` would be refused.
        problems += [f"{at}.rayStartParams.{k}: not a string" for k, v in params.items()
                     if not isinstance(v, str)]
        if not is_head:
            low, high = group.get("minReplicas"), group.get("maxReplicas")
            replicas = group.get("replicas", low)
            counts = (low, replicas, high)
            if not all(isinstance(n, int) for n in counts) or not low <= replicas <= high:
                problems.append(f"{at}: not minReplicas <= replicas <= maxReplicas: {counts}")
        pod = group.get("template", {}).get("spec", {})
        problems += _missing(f"{at}.template.spec", pod, POD_SPEC_REQUIRED)
        for i, container in enumerate(pod.get("containers", [])):
            c_at = f"{at}.template.spec.containers[{i}]"
            problems += _missing(c_at, container, CONTAINER_REQUIRED)
            if not container.get("image"):
                problems.append(f"{c_at}.image: missing")
            resources = container.get("resources", {})
            if not resources.get("requests") or not resources.get("limits"):
                problems.append(f"{c_at}.resources: needs requests and limits")
    return problems


def manifest_problems(doc: dict[str, Any]) -> list[str]:
    kind = doc.get("kind")
    problems = [] if doc.get("apiVersion") == "ray.io/v1" else ["apiVersion is not ray.io/v1"]
    if not doc.get("metadata", {}).get("name"):
        problems.append("metadata.name: missing")
    spec = doc.get("spec", {})
    if kind == "RayCluster":
        problems += cluster_spec_problems("spec", spec)
    elif kind == "RayJob":
        problems += _missing("spec", spec, RAYJOB_SPEC_REQUIRED)
        problems += _unknown("spec", spec, RAYJOB_SPEC_FIELDS)
        problems += cluster_spec_problems("spec.rayClusterSpec", spec.get("rayClusterSpec", {}))
    else:
        problems.append(f"kind {kind!r} is not RayCluster or RayJob")
    return problems


def kuberay_exposure_problems(doc: dict[str, Any]) -> list[str]:
    """Ways a manifest reaches the dashboard or GCS from outside the Kubernetes cluster.
    Inside the pod KubeRay binds the dashboard to 0.0.0.0 (the pod network); the rule is
    a ClusterIP head service and no Ingress, LoadBalancer or NodePort."""
    kind = doc.get("kind")
    if kind == "Ingress":
        return ["an Ingress"]
    if kind == "Service":
        service_type = doc.get("spec", {}).get("type", "ClusterIP")
        return [] if service_type == "ClusterIP" else [f"a {service_type} Service"]
    spec = doc.get("spec", {})
    cluster = spec.get("rayClusterSpec", {}) if kind == "RayJob" else spec
    head = cluster.get("headGroupSpec", {})
    problems = []
    if head.get("serviceType", "ClusterIP") != "ClusterIP":
        problems.append(f"head serviceType {head['serviceType']}")
    if head.get("headService", {}).get("spec", {}).get("type", "ClusterIP") != "ClusterIP":
        problems.append("headService type is not ClusterIP")
    if head.get("enableIngress"):
        problems.append("enableIngress")
    return problems


@pytest.mark.parametrize("path", KUBERAY_FILES, ids=_ids(KUBERAY_FILES))
def test_kuberay_manifest_has_what_the_crd_requires(path: Path) -> None:
    docs = _documents(path)
    assert docs, path.name
    for doc in docs:
        assert manifest_problems(doc) == [], path.name


@pytest.mark.parametrize("path", KUBERAY_FILES, ids=_ids(KUBERAY_FILES))
def test_kuberay_manifest_runs_the_pinned_ray_and_raydl(path: Path) -> None:
    for doc in _documents(path):
        spec = doc["spec"]
        cluster = spec["rayClusterSpec"] if doc["kind"] == "RayJob" else spec
        assert cluster["rayVersion"] == ray.__version__
        images = {c["image"] for _, g in _pod_groups(cluster)
                  for c in g["template"]["spec"]["containers"]}
        assert len(images) == 1, f"{path.name}: one image, so Ray and Python match: {images}"
        assert cluster.get("authOptions", {}).get("mode") == "token", f"{path.name}: token auth"
        if doc["kind"] == "RayJob":
            entry = spec["entrypoint"].split()
            assert entry[:4] == ["python", "-m", "raydl", "run"], spec["entrypoint"]
            assert entry[4] in {p.stem for p in registry.experiment_files()}
            assert entry[entry.index("--address") + 1] == "auto"
            assert spec["shutdownAfterJobFinishes"] is True
            assert isinstance(spec["ttlSecondsAfterFinished"], int)
            assert isinstance(yaml.safe_load(spec.get("runtimeEnvYAML", "{}")), dict)


def test_raycluster_has_a_gpu_group() -> None:
    (doc,) = _documents(CLUSTERS / "kuberay" / "raycluster.yaml")
    limits = [c["resources"]["limits"] for g in doc["spec"]["workerGroupSpecs"]
              for c in g["template"]["spec"]["containers"]]
    assert any(int(lim.get("nvidia.com/gpu", 0)) > 0 for lim in limits)
    assert any(int(lim.get("nvidia.com/gpu", 0)) == 0 for lim in limits)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda s: s["headGroupSpec"].pop("template"),
        lambda s: s["headGroupSpec"]["template"]["spec"]["containers"][0].pop("name"),
        lambda s: s["workerGroupSpecs"][0].pop("groupName"),
        lambda s: s["workerGroupSpecs"][0].update(workerGroupSpec=None),
        lambda s: s["workerGroupSpecs"][0].update(replicas=9),
        lambda s: s["headGroupSpec"]["rayStartParams"].update({"num-cpus": 0}),
        lambda s: s.update(workerGroupSpec=s.pop("workerGroupSpecs")),
    ],
    ids=["no head template", "container without name", "group without groupName",
         "unknown group field", "replicas above max", "non-string rayStartParams",
         "misspelled workerGroupSpecs"],
)
def test_crd_check_rejects_a_broken_copy(mutate: Callable[[dict[str, Any]], object]) -> None:
    for path in KUBERAY_FILES:
        (doc,) = _documents(path)
        broken = copy.deepcopy(doc)
        mutate(broken["spec"]["rayClusterSpec"] if doc["kind"] == "RayJob" else broken["spec"])
        assert manifest_problems(broken) != [], path.name


# -- nothing exposed ------------------------------------------------------------------


@pytest.mark.parametrize("path", ALL_FILES, ids=_ids(ALL_FILES))
def test_nothing_exposes_the_dashboard_or_gcs(path: Path) -> None:
    docs = _documents(path)
    assert docs, path.name
    for doc in docs:
        if "provider" in doc:  # a cluster launcher config
            assert exposure_problems(doc) == [], path.name
            if doc["provider"]["type"] == "aws":
                assert "security_group" in doc["provider"], "define the group explicitly"
        elif str(doc.get("apiVersion", "")).startswith("ray.io/") or doc.get("kind") in (
                "Service", "Ingress"):
            assert kuberay_exposure_problems(doc) == [], path.name
        else:
            pytest.fail(f"{path.name}: neither a launcher config nor a KubeRay manifest")


@pytest.mark.parametrize("path", CLOUD_FILES, ids=_ids(CLOUD_FILES))
def test_exposure_check_catches_an_open_config(path: Path) -> None:
    config = _load(path)
    # Without its own start commands a config gets Ray's cloud defaults, which bind the
    # dashboard to all interfaces: the check must see the merged config, not the file.
    no_start = copy.deepcopy(config)
    del no_start["head_start_ray_commands"]
    assert any("dashboard bound to 0.0.0.0" in p for p in exposure_problems(no_start))
    flag = copy.deepcopy(config)
    flag["head_start_ray_commands"][-1] += " --dashboard-host 0.0.0.0"
    assert exposure_problems(flag)
    if config["provider"]["type"] == "aws":
        opened = copy.deepcopy(config)
        opened["provider"]["security_group"]["IpPermissions"] = [
            {"IpProtocol": "tcp", "FromPort": 8265, "ToPort": 8265,
             "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]
        assert exposure_problems(opened)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda s: s["headGroupSpec"].update(serviceType="LoadBalancer"),
        lambda s: s["headGroupSpec"].update(serviceType="NodePort"),
        lambda s: s["headGroupSpec"].update(enableIngress=True),
        lambda s: s["headGroupSpec"].update(headService={"spec": {"type": "LoadBalancer"}}),
    ],
    ids=["LoadBalancer", "NodePort", "Ingress", "headService LoadBalancer"],
)
def test_kuberay_exposure_check_catches_an_open_manifest(
    mutate: Callable[[dict[str, Any]], object]
) -> None:
    for path in KUBERAY_FILES:
        (doc,) = _documents(path)
        broken = copy.deepcopy(doc)
        mutate(broken["spec"]["rayClusterSpec"] if doc["kind"] == "RayJob" else broken["spec"])
        assert kuberay_exposure_problems(broken), path.name
