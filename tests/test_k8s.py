"""deploy/k8s, checked offline: no cluster runs on the project's machines.

Every manifest of the kustomize base and the email-pool overlay is rendered (by a small renderer here that
covers what the kustomizations use; `kubectl kustomize` cross-checks it when installed), validated against
the Kubernetes schemas bundled in the kubernetes-validate package, and the KEDA objects against KEDA's own
CRDs vendored in deploy/k8s/crds. Then the manifests are held against the code: images, commands, ports, probes and
every environment variable must be ones the processes actually read, settings must parse, and an executor's
terminationGracePeriodSeconds must cover its drain.
"""

from __future__ import annotations

import ast
import copy
import hashlib
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml

kubernetes_validate = pytest.importorskip("kubernetes_validate")

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
KUSTOMIZATIONS = {"base": K8S / "base", "email-pool": K8S / "overlays" / "email-pool"}
# KEDA's published CRDs (release v2.20.2, config/crd/bases/ of kedacore/keda), vendored byte for byte.
KEDA_CRDS = {
    "ScaledObject": ("keda.sh_scaledobjects.yaml", "af35555862a83933b074af14ad439c4b4ceabaf4daa3e9338e9b23e36d308d80"),
    "TriggerAuthentication": (
        "keda.sh_triggerauthentications.yaml",
        "275307b4cb19ca8f0f506a879282aa4c67587ac16ec757f494d6585c5c185d65",
    ),
}
KEDA_API_VERSION = "keda.sh/v1alpha1"
KUBERNETES_VERSION = "1.30"  # the oldest Kubernetes these manifests promise to work on
PROCESSES = ("api", "scheduler", "executor")

Resource = dict[str, Any]


# --- rendering ---------------------------------------------------------------------------------------------


def _load_all(path: Path) -> list[Resource]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _json_pointer_parts(path: str) -> list[str]:
    return [part.replace("~1", "/").replace("~0", "~") for part in path.lstrip("/").split("/")]


def _apply_json6902(resource: Resource, operations: list[dict[str, Any]]) -> None:
    for operation in operations:
        assert operation["op"] in {"add", "replace"}, f"teach the renderer {operation['op']}"
        *parents, last = _json_pointer_parts(operation["path"])
        node: Any = resource
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            index = len(node) if last == "-" else int(last)
            if operation["op"] == "add":
                node.insert(index, operation["value"])
            else:
                node[index] = operation["value"]
        else:
            assert operation["op"] == "add" or last in node, f"replace of a missing {operation['path']}"
            node[last] = operation["value"]


def render(directory: Path) -> list[Resource]:
    """What `kustomize build` makes of the subset used here: resources, JSON 6902 patches, labels, images."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    known = {"apiVersion", "kind", "resources", "patches", "labels", "images"}
    assert set(kustomization) <= known, f"teach the renderer {set(kustomization) - known}"
    resources: list[Resource] = []
    for entry in kustomization.get("resources", []):
        path = (directory / entry).resolve()
        resources += render(path) if path.is_dir() else _load_all(path)
    for patch in kustomization.get("patches", []):
        target = patch["target"]
        matches = [r for r in resources if r["kind"] == target["kind"] and r["metadata"]["name"] == target["name"]]
        assert len(matches) == 1, f"patch target {target} matches {len(matches)} resources"
        _apply_json6902(matches[0], yaml.safe_load(patch["patch"]))
    for label in kustomization.get("labels", []):
        assert not label.get("includeSelectors") and not label.get("includeTemplates")
        for resource in resources:
            resource["metadata"].setdefault("labels", {}).update(label["pairs"])
    for image in kustomization.get("images", []):
        for container in _all_containers(resources):
            if container["image"].split(":")[0] == image["name"]:
                container["image"] = f"{image.get('newName', image['name'])}:{image['newTag']}"
    return resources


def _all_containers(resources: list[Resource]) -> Iterator[dict[str, Any]]:
    for resource in resources:
        if resource["kind"] in {"Deployment", "Job"}:
            yield from resource["spec"]["template"]["spec"]["containers"]


@pytest.fixture(scope="module", params=sorted(KUSTOMIZATIONS))
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[Resource]]:
    return request.param, render(KUSTOMIZATIONS[request.param])


def by_kind(resources: list[Resource], kind: str) -> dict[str, Resource]:
    return {r["metadata"]["name"]: r for r in resources if r["kind"] == kind}


def pod_spec(resource: Resource) -> dict[str, Any]:
    return resource["spec"]["template"]["spec"]


def process_of(container: dict[str, Any]) -> str:
    """api, scheduler, executor or migrate, from the container's command."""
    command = container["command"]
    assert command[0] == "jobservice" and len(command) == 2, command
    assert command[1] in {"migrate", *PROCESSES}, command
    return str(command[1])


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
@pytest.mark.parametrize("name", sorted(KUSTOMIZATIONS))
def test_the_renderer_agrees_with_kubectl_kustomize(name: str) -> None:
    result = subprocess.run(
        ["kubectl", "kustomize", str(KUSTOMIZATIONS[name])], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr

    def key(resource: Resource) -> tuple[str, str]:
        return resource["kind"], resource["metadata"]["name"]

    theirs = sorted((doc for doc in yaml.safe_load_all(result.stdout) if doc), key=key)
    ours = sorted(render(KUSTOMIZATIONS[name]), key=key)
    assert [key(r) for r in ours] == [key(r) for r in theirs]
    for mine, kubectl in zip(ours, theirs, strict=True):
        assert mine == kubectl, key(mine)


# --- schemas -----------------------------------------------------------------------------------------------


def _as_strict_json_schema(schema: Any) -> Any:
    """A CRD's OpenAPI v3 schema as JSON Schema, judged as the API server does with strict field validation
    (kubectl's default): unknown fields fail unless the schema preserves them; int-or-string takes either."""
    if isinstance(schema, list):
        return [_as_strict_json_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    converted = {key: _as_strict_json_schema(value) for key, value in schema.items()}
    if "properties" in schema:
        converted["properties"] = {name: _as_strict_json_schema(sub) for name, sub in schema["properties"].items()}
    if converted.pop("x-kubernetes-int-or-string", False):
        converted.pop("type", None)
        converted["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if converted.pop("nullable", False) and "type" in converted:
        converted["type"] = [converted["type"], "null"]
    preserves = converted.pop("x-kubernetes-preserve-unknown-fields", False)
    if "properties" in converted and "additionalProperties" not in converted and not preserves:
        converted["additionalProperties"] = False
    return converted


def keda_validator(kind: str) -> jsonschema.Draft7Validator:
    """The validator for ``kind`` from KEDA's vendored CRD (its served v1alpha1 version), hash checked."""
    filename, sha256 = KEDA_CRDS[kind]
    raw = (K8S / "crds" / filename).read_bytes()
    assert hashlib.sha256(raw).hexdigest() == sha256, f"{filename} differs from KEDA's release: see crds/README.md"
    crd = yaml.safe_load(raw)
    assert crd["spec"]["names"]["kind"] == kind
    (version,) = [v for v in crd["spec"]["versions"] if f"{crd['spec']['group']}/{v['name']}" == KEDA_API_VERSION]
    assert version["served"] and version["storage"]
    return jsonschema.Draft7Validator(_as_strict_json_schema(version["schema"]["openAPIV3Schema"]))


def test_every_manifest_is_valid_kubernetes(rendered: tuple[str, list[Resource]]) -> None:
    _, resources = rendered
    checked = set()
    for resource in resources:
        kind = resource["kind"]
        if resource["apiVersion"].startswith("keda.sh/"):
            assert resource["apiVersion"] == KEDA_API_VERSION
            keda_validator(kind).validate(resource)
        else:
            # strict: unknown fields (a misspelt key) fail too. Offline: the schemas ship with the package.
            kubernetes_validate.validate(copy.deepcopy(resource), KUBERNETES_VERSION, strict=True)
        checked.add(kind)
    assert {"Deployment", "Service", "Job", "Secret", "ConfigMap", "PodDisruptionBudget"} <= checked
    assert {"ScaledObject", "TriggerAuthentication"} <= checked


def test_the_keda_schema_catches_mistakes() -> None:
    """KEDA's schema, read strictly, is not a rubber stamp: a number where KEDA wants a string, a misspelt
    field, a trigger without its type, or an unknown key in a TriggerAuthentication's secret reference fail."""
    resources = render(KUSTOMIZATIONS["base"])
    (scaled,) = by_kind(resources, "ScaledObject").values()
    (auth,) = by_kind(resources, "TriggerAuthentication").values()
    scaled_validator, auth_validator = keda_validator("ScaledObject"), keda_validator("TriggerAuthentication")
    scaled_validator.validate(scaled)
    auth_validator.validate(auth)
    wrong_type = copy.deepcopy(scaled)
    wrong_type["spec"]["triggers"][0]["metadata"]["targetQueryValue"] = 200
    misspelt = copy.deepcopy(scaled)
    misspelt["spec"]["maxReplicas"] = misspelt["spec"].pop("maxReplicaCount")
    untyped = copy.deepcopy(scaled)
    del untyped["spec"]["triggers"][0]["type"]
    for broken in (wrong_type, misspelt, untyped):
        with pytest.raises(jsonschema.ValidationError):
            scaled_validator.validate(broken)
    unknown_key = copy.deepcopy(auth)
    unknown_key["spec"]["secretTargetRef"][0]["secret"] = unknown_key["spec"]["secretTargetRef"][0].pop("name")
    with pytest.raises(jsonschema.ValidationError):
        auth_validator.validate(unknown_key)


def test_kubernetes_validate_works_offline_and_is_strict() -> None:
    bad = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"PORT": 8000}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBERNETES_VERSION, strict=True)


# --- what the code reads -----------------------------------------------------------------------------------


def variables_read(*directories: str) -> set[str]:
    """Environment variable names the code under ``directories`` reads: every NAME_IN_CAPITALS that is the
    first argument of a call (setting("GRPC_PORT", ...), os.environ.get(...), the scheduler's helpers
    _interval("SCHEDULER_...", ...)) or a subscript of os.environ. Wide on purpose: a false positive only
    lets a variable through; a variable no code names fails."""
    names: set[str] = set()
    for directory in directories:
        for path in (ROOT / directory).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                candidate = None
                if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
                    candidate = node.args[0].value
                elif (
                    isinstance(node, ast.Subscript)
                    and isinstance(node.slice, ast.Constant)
                    and isinstance(node.value, ast.Attribute)
                    and node.value.attr == "environ"
                ):
                    candidate = node.slice.value
                if isinstance(candidate, str) and re.fullmatch(r"[A-Z][A-Z0-9_]+", candidate):
                    names.add(candidate)
    return names


@pytest.fixture(scope="module")
def reads() -> dict[str, set[str]]:
    found = {process: variables_read(f"services/{process}", "shared") for process in PROCESSES}
    found["migrate"] = variables_read("shared")
    return found


def test_the_scan_finds_the_documented_variables(reads: dict[str, set[str]]) -> None:
    assert {"DATABASE_URL", "GRPC_PORT", "HTTP_PORT", "API_TOKENS", "DB_POOL_SIZE", "TLS_CERT_FILE"} <= reads["api"]
    assert {"DATABASE_URL", "METRICS_PORT", "SCHEDULER_LEADER_RETRY_SECONDS"} <= reads["scheduler"]
    assert {"EXECUTOR_SHUTDOWN_GRACE_SECONDS", "DATABASE_POOLER", "SMTP_HOST", "METRICS_PORT"} <= reads["executor"]
    assert "DATABASE_URL" in reads["migrate"]
    assert "GRPC_PORT" not in reads["executor"] and "EXECUTOR_TYPES" not in reads["api"]


def container_env(container: dict[str, Any], resources: list[Resource]) -> dict[str, str]:
    """The container's environment: ConfigMap and Secret values resolved (Secrets' placeholders included)."""
    configmaps, secrets = by_kind(resources, "ConfigMap"), by_kind(resources, "Secret")
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            name = source["configMapRef"]["name"]
            assert name in configmaps, f"no ConfigMap {name}"
            env.update(configmaps[name]["data"])
        else:
            name = source["secretRef"]["name"]
            assert name in secrets, f"no Secret {name}"
            env.update(secrets[name]["stringData"])
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            assert ref["name"] in secrets, f"no Secret {ref['name']}"
            assert ref["key"] in secrets[ref["name"]]["stringData"], f"no key {ref['key']} in Secret {ref['name']}"
            env[item["name"]] = secrets[ref["name"]]["stringData"][ref["key"]]
    return env


def workloads(resources: list[Resource]) -> Iterator[tuple[Resource, dict[str, Any], str]]:
    for resource in resources:
        if resource["kind"] in {"Deployment", "Job"}:
            for container in pod_spec(resource)["containers"]:
                yield resource, container, process_of(container)


def test_every_variable_given_is_one_the_process_reads(
    rendered: tuple[str, list[Resource]], reads: dict[str, set[str]]
) -> None:
    _, resources = rendered
    for resource, container, process in workloads(resources):
        env = container_env(container, resources)
        # OTEL_* variables are read by the OpenTelemetry SDK itself (shared/telemetry.py).
        unread = {name for name in env if name not in reads[process] and not name.startswith("OTEL_")}
        assert not unread, f"{resource['metadata']['name']}: {process} never reads {sorted(unread)}"
        assert "DATABASE_URL" in env, resource["metadata"]["name"]


def test_every_process_accepts_its_settings(rendered: tuple[str, list[Resource]]) -> None:
    """The settings classes parse each container's environment, as the process would at start."""
    from services.api.settings import ApiSettings
    from services.executor.handlers.send_email import SmtpSettings
    from services.executor.settings import ExecutorSettings
    from services.scheduler.settings import SchedulerSettings

    parsers: dict[str, Any] = {"api": ApiSettings, "scheduler": SchedulerSettings, "executor": ExecutorSettings}
    _, resources = rendered
    for _, container, process in workloads(resources):
        env = container_env(container, resources)
        if process in parsers:
            parsers[process].from_env(env)
        if process == "executor":
            SmtpSettings.from_env(env)


def test_one_image_for_every_process_tagged_with_the_release(rendered: tuple[str, list[Resource]]) -> None:
    _, resources = rendered
    version = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M)[1]  # type: ignore[index]
    images = {container["image"] for container in _all_containers(resources)}
    assert images == {f"jobservice:{version}"}
    processes = {process for _, _, process in workloads(resources)}
    assert processes == {"api", "scheduler", "executor", "migrate"}


def named_ports(container: dict[str, Any]) -> dict[str, int]:
    return {port["name"]: port["containerPort"] for port in container.get("ports", [])}


def probe_port(probe: dict[str, Any], container: dict[str, Any]) -> int:
    port = probe["httpGet"]["port"]
    return named_ports(container)[port] if isinstance(port, str) else port


def test_api_ports_probes_and_service(rendered: tuple[str, list[Resource]]) -> None:
    from services.api.settings import ApiSettings

    _, resources = rendered
    deployment = by_kind(resources, "Deployment")["jobservice-api"]
    (container,) = pod_spec(deployment)["containers"]
    settings = ApiSettings.from_env(container_env(container, resources))
    ports = named_ports(container)
    assert ports == {"grpc": settings.grpc_port, "http": settings.http_port} == {"grpc": 50051, "http": 8000}
    # The Service and the probes reach the pod's address: every interface, and so tokens (issue 15).
    assert settings.bind_host == "0.0.0.0" and settings.api_tokens and not settings.allow_unauthenticated
    # /health is a route of the REST server, and needs no token.
    assert '"/health"' in (ROOT / "services/api/rest.py").read_text()
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/health"
        assert probe_port(container[probe], container) == settings.http_port
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(settings.http_port)
    assert annotations["prometheus.io/path"] == "/metrics"

    service = by_kind(resources, "Service")["jobservice-api"]
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert {p["port"]: ports[p["targetPort"]] for p in service["spec"]["ports"]} == {50051: 50051, 8000: 8000}


def test_scheduler_and_executor_metrics_ports(rendered: tuple[str, list[Resource]]) -> None:
    from services.executor.settings import ExecutorSettings
    from services.scheduler.settings import SchedulerSettings

    _, resources = rendered
    parsers: dict[str, Any] = {"scheduler": SchedulerSettings, "executor": ExecutorSettings}
    seen = set()
    for resource, container, process in workloads(resources):
        if process not in parsers:
            continue
        settings = parsers[process].from_env(container_env(container, resources))
        assert settings.metrics_port, f"{resource['metadata']['name']}: metrics are off"
        assert named_ports(container) == {"metrics": settings.metrics_port}
        assert container["livenessProbe"]["httpGet"]["path"] == "/metrics"
        assert probe_port(container["livenessProbe"], container) == settings.metrics_port
        annotations = resource["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == str(settings.metrics_port)
        seen.add(process)
    assert seen == {"scheduler", "executor"}
    assert by_kind(resources, "Deployment")["jobservice-scheduler"]["spec"]["replicas"] == 2


def test_executor_grace_covers_the_drain(rendered: tuple[str, list[Resource]]) -> None:
    from services.executor.settings import ExecutorSettings

    _, resources = rendered
    executors = [(r, c) for r, c, process in workloads(resources) if process == "executor"]
    assert executors
    for resource, container in executors:
        settings = ExecutorSettings.from_env(container_env(container, resources))
        grace = pod_spec(resource)["terminationGracePeriodSeconds"]
        # The drain, then handing unfinished leases back (one statement) and closing: 5 s of margin at least.
        assert grace >= settings.shutdown_grace_seconds + 5, (resource["metadata"]["name"], grace)
        assert "preStop" not in container.get("lifecycle", {}), "SIGTERM itself starts the drain"


def test_workloads_have_resources_security_and_matching_selectors(rendered: tuple[str, list[Resource]]) -> None:
    _, resources = rendered
    deployments = by_kind(resources, "Deployment")
    for resource, container, _ in workloads(resources):
        name = resource["metadata"]["name"]
        assert {"cpu", "memory"} <= container["resources"]["requests"].keys(), name
        assert "memory" in container["resources"]["limits"], name
        assert pod_spec(resource)["securityContext"]["runAsNonRoot"] is True, name
        if resource["kind"] == "Deployment":
            labels = resource["spec"]["template"]["metadata"]["labels"]
            assert resource["spec"]["selector"]["matchLabels"].items() <= labels.items(), name
    protected = set()
    for pdb in by_kind(resources, "PodDisruptionBudget").values():
        selector = pdb["spec"]["selector"]["matchLabels"]
        matched = [
            n for n, d in deployments.items() if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(matched) == 1, (pdb["metadata"]["name"], matched)
        protected.add(matched[0])
    assert protected == set(deployments)


def test_migration_job_runs_before_the_release() -> None:
    resources = render(KUSTOMIZATIONS["base"])
    (job,) = by_kind(resources, "Job").values()
    (container,) = pod_spec(job)["containers"]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert container["command"] == compose["services"]["migrate"]["command"]
    assert job["metadata"]["annotations"]["argocd.argoproj.io/hook"] == "PreSync"
    assert pod_spec(job)["restartPolicy"] in {"OnFailure", "Never"}


# --- KEDA --------------------------------------------------------------------------------------------------

STATUSES = ("PENDING", "READY", "PROCESSING", "COMPLETED", "FAILED", "CANCELLED")


def test_scaled_objects_query_capped_ready_work(rendered: tuple[str, list[Resource]]) -> None:
    _, resources = rendered
    deployments = by_kind(resources, "Deployment")
    auths = by_kind(resources, "TriggerAuthentication")
    secrets = by_kind(resources, "Secret")
    scaled_objects = by_kind(resources, "ScaledObject")
    assert scaled_objects
    for name, scaled in scaled_objects.items():
        spec = scaled["spec"]
        target = deployments[spec["scaleTargetRef"]["name"]]
        assert process_of(pod_spec(target)["containers"][0]) == "executor", name
        assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"], name
        (trigger,) = spec["triggers"]
        assert trigger["type"] == "postgresql"
        metadata = trigger["metadata"]
        assert float(metadata["targetQueryValue"]) > 0
        query = metadata["query"]
        # Capped: count(*) over a LIMITed subquery, never over the table.
        match = re.fullmatch(
            r"SELECT count\(\*\) FROM \(SELECT 1 FROM jobs WHERE status = 'READY'(?P<filter>[^()]*?) "
            r"LIMIT (?P<limit>\d+)\) AS \w+",
            query,
        )
        assert match, query
        assert int(match["limit"]) <= 100_000
        # Only READY work: no other status, so the partial index jobs_ready_fair_idx serves it.
        assert [status for status in STATUSES if status in query] == ["READY"], query
        # Saturation (limit / target) asks for at least maxReplicaCount executors.
        assert int(match["limit"]) / float(metadata["targetQueryValue"]) >= spec["maxReplicaCount"], name
        auth = auths[trigger["authenticationRef"]["name"]]
        for ref in auth["spec"]["secretTargetRef"]:
            assert ref["parameter"] in {"connection", "password"}
            assert ref["key"] in secrets[ref["name"]]["stringData"]
    index = "jobs_ready_fair_idx ON jobs (type, priority, fairness_key, run_at, job_id)"
    versions = ROOT / "shared/database/migrations/versions"
    assert any(index in path.read_text() for path in versions.glob("*.py"))


def test_the_email_pool_and_the_base_pool_split_the_builtin_types() -> None:
    from services.executor.settings import ExecutorSettings

    builtin = set()
    for path in (ROOT / "services/executor/handlers").glob("*.py"):
        builtin |= set(re.findall(r'@handler\("([a-z0-9_.-]+)"', path.read_text()))
    assert "send_email" in builtin
    resources = render(KUSTOMIZATIONS["email-pool"])
    pools: dict[str, set[str]] = {}
    for resource, container, process in workloads(resources):
        if process == "executor":
            types = ExecutorSettings.from_env(container_env(container, resources)).types
            assert types, f"{resource['metadata']['name']} runs every type: the pools would overlap"
            pools[resource["metadata"]["name"]] = set(types)
    assert pools["jobservice-executor-email"] == {"send_email"}
    everything = [t for types in pools.values() for t in types]
    assert sorted(everything) == sorted(builtin), "each built-in type runs in exactly one pool"
    # Each pool's ScaledObject counts its own types only.
    queries = {s["spec"]["scaleTargetRef"]["name"]: s["spec"]["triggers"][0]["metadata"]["query"]
               for s in by_kind(resources, "ScaledObject").values()}  # fmt: skip
    assert "type = 'send_email'" in queries["jobservice-executor-email"]
    assert "type <> 'send_email'" in queries["jobservice-executor"]
