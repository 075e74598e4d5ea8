"""docker-compose.yml and the Dockerfile, checked without a Docker engine (none runs on our machines).

What a broken compose file would do on someone's laptop: start a module that does not exist, COPY a file that
is not there, publish ports the api does not listen on, or refuse `--scale executor=3`. Each test here catches
one of those from the files alone; `docker compose config` validates the schema when a compose CLI exists.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.api.settings import ApiSettings
from tests.support.promql import defined_metrics, exposed_series, promql_metric_names

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
APP_SERVICES = ("migrate", "api", "scheduler", "executor")
DATABASE_URL = "postgresql://postgres:postgres@db:5432/jobs"
DEFAULT_GRPC_PORT, DEFAULT_HTTP_PORT = ApiSettings.grpc_port, ApiSettings.http_port


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict) and isinstance(data.get("services"), dict), "no services in the compose file"
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = (pending + stripped).strip()
        pending = ""
        keyword, _, rest = full.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
    return instructions


def instruction_words(args: str) -> list[str]:
    """The words of a Dockerfile instruction, exec form (JSON) or shell form; flags (--chown=...) dropped."""
    words = json.loads(args) if args.startswith("[") else shlex.split(args)
    return [str(word) for word in words if not str(word).startswith("--")]


def last_cmd() -> list[str]:
    return instruction_words([args for keyword, args in dockerfile_instructions() if keyword == "CMD"][-1])


def copy_sources() -> list[str]:
    sources: list[str] = []
    for keyword, args in dockerfile_instructions():
        if keyword in {"COPY", "ADD"}:
            assert "--from" not in args, "multi-stage COPY: teach this test about stages"
            sources += instruction_words(args)[:-1]
    return sources


def command_words(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    return shlex.split(value) if isinstance(value, str) else [str(word) for word in value]


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(key): str(value) for key, value in env.items()}


def published_ports(service: dict[str, Any]) -> list[tuple[str | None, str]]:
    """(host part or None, container part) for each `ports` entry, short or long syntax."""
    result: list[tuple[str | None, str]] = []
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            published = entry.get("published")
            result.append((None if published is None else str(published), str(entry["target"])))
            continue
        spec = str(entry).split("/")[0]
        parts = spec.rsplit(":", 1)
        if len(parts) == 1:
            result.append((None, parts[0]))
        else:
            host = parts[0].rsplit(":", 1)[-1]  # drop an IP address in front of the host port
            result.append((host, parts[1]))
    return result


def dockerignore_patterns() -> list[str]:
    path = ROOT / ".dockerignore"
    if not path.exists():
        return []
    return [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


def excluded_by_dockerignore(relative: str, patterns: list[str]) -> bool:
    """A close-enough reading of .dockerignore: last matching pattern wins, `!` re-includes."""
    excluded = False
    parents = [relative] + [str(p) for p in Path(relative).parents if str(p) != "."]
    for pattern in patterns:
        negate = pattern.startswith("!")
        bare = pattern.lstrip("!").strip("/")
        bare = bare[3:] if bare.startswith("**/") else bare
        if any(
            fnmatch.fnmatch(candidate, bare) or fnmatch.fnmatch(Path(candidate).name, bare) for candidate in parents
        ):
            excluded = not negate
    return excluded


def _dockerignored(patterns: list[str]) -> Callable[[str, list[str]], list[str]]:
    def ignore(folder: str, names: list[str]) -> list[str]:
        base = Path(folder).relative_to(ROOT)
        return [name for name in names if excluded_by_dockerignore(str(base / name), patterns)]

    return ignore


# --- the services --------------------------------------------------------------------------------------


def test_every_service_of_the_stack_is_defined(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) >= {"db", *APP_SERVICES}


def test_db_is_postgres_15_with_a_volume_and_a_pg_isready_healthcheck(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    db = services["db"]
    assert str(db["image"]).startswith("postgres:15")
    assert "pg_isready" in " ".join(command_words(db["healthcheck"]["test"]))
    volumes = [str(volume).split(":")[0] for volume in db.get("volumes", [])]
    assert volumes, "db keeps its data in no volume"
    assert all(name in (compose.get("volumes") or {}) for name in volumes if not name.startswith((".", "/")))


def test_migrate_runs_once_the_database_is_healthy(services: dict[str, dict[str, Any]]) -> None:
    migrate = services["migrate"]
    assert command_words(migrate["command"]) == ["jobservice", "migrate"]
    assert migrate["depends_on"]["db"]["condition"] == "service_healthy"
    assert str(migrate.get("restart", "no")) == "no", "a one-off migration must not be restarted"


@pytest.mark.parametrize("name", ["api", "scheduler", "executor"])
def test_processes_start_after_the_migration_succeeded(services: dict[str, dict[str, Any]], name: str) -> None:
    assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_every_process_uses_the_compose_database(services: dict[str, dict[str, Any]], name: str) -> None:
    assert environment(services[name]).get("DATABASE_URL") == DATABASE_URL


def test_every_jobservice_command_names_a_subcommand_that_exists(services: dict[str, dict[str, Any]]) -> None:
    from services.cli import PROCESSES

    commands = {name: command_words(service.get("command")) for name, service in services.items()}
    commands["Dockerfile CMD"] = last_cmd()
    used = {name: words[1] for name, words in commands.items() if words[:1] == ["jobservice"]}
    assert set(used.values()) == {"migrate", *PROCESSES}, used
    assert set(used) >= {"migrate", *PROCESSES, "Dockerfile CMD"}, used


def test_the_executor_can_be_scaled(services: dict[str, dict[str, Any]]) -> None:
    """`docker compose up --scale executor=3` needs no fixed name and no fixed host port."""
    executor = services["executor"]
    assert "container_name" not in executor
    for host, container in published_ports(executor):
        assert host is None or "-" in host, f"executor publishes host port {host}:{container}; replicas collide"


def test_the_api_publishes_the_ports_it_listens_on(services: dict[str, dict[str, Any]]) -> None:
    api = services["api"]
    env = environment(api)
    grpc = int(env.get("GRPC_PORT", DEFAULT_GRPC_PORT))
    http = int(env.get("HTTP_PORT", DEFAULT_HTTP_PORT))
    assert (grpc, http) == (DEFAULT_GRPC_PORT, DEFAULT_HTTP_PORT) == (50051, 8000)
    ports = {(host, container) for host, container in published_ports(api)}
    assert {(str(grpc), str(grpc)), (str(http), str(http))} <= ports
    assert f":{http}/health" in " ".join(command_words(api["healthcheck"]["test"]))
    assert "BIND_HOST" not in env or env["BIND_HOST"] == "0.0.0.0", "the api must listen beyond the container"


def test_an_api_without_tokens_is_published_on_loopback_only(services: dict[str, dict[str, Any]]) -> None:
    """The container's api listens beyond loopback, which without tokens must be asked for; this
    development stack asks, and publishes its ports on the host's loopback alone."""
    from services.api.settings import ApiSettings

    api = services["api"]
    env = {name: re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", value) for name, value in environment(api).items()}
    settings = ApiSettings.from_env(env)  # as the api reads it with nothing set in the shell
    assert settings.bind_host == "0.0.0.0"
    assert not settings.api_tokens and settings.allow_unauthenticated
    assert all(str(entry).startswith("127.0.0.1:") for entry in api["ports"])


@pytest.mark.parametrize("name", ["scheduler", "executor"])
def test_metrics_port_is_exposed_and_health_checked(services: dict[str, dict[str, Any]], name: str) -> None:
    service = services[name]
    port = environment(service)["METRICS_PORT"]
    assert port in [str(item) for item in service.get("expose", [])]
    assert f":{port}/metrics" in " ".join(command_words(service["healthcheck"]["test"]))


# --- the image ---------------------------------------------------------------------------------------------


def test_every_build_context_has_its_dockerfile(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        build = service.get("build")
        if build is None:
            continue
        context = build if isinstance(build, str) else build.get("context", ".")
        dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
        assert (ROOT / context / dockerfile).is_file(), f"{name} builds from a missing {dockerfile}"


def test_every_file_the_dockerfile_copies_exists_and_is_not_dockerignored() -> None:
    patterns = dockerignore_patterns()
    sources = copy_sources()
    assert sources, "the Dockerfile copies nothing"
    for source in sources:
        assert (ROOT / source).exists(), f"Dockerfile copies {source}, which does not exist"
        assert not excluded_by_dockerignore(source.rstrip("/"), patterns), f".dockerignore drops {source}"


def test_the_image_runs_the_api_as_a_non_root_user() -> None:
    instructions = dockerfile_instructions()
    assert instructions[0] == ("FROM", "python:3.11-slim")
    users = [args for keyword, args in instructions if keyword == "USER"]
    assert users and users[-1] not in {"root", "0"}
    exposed = {port for keyword, args in instructions if keyword == "EXPOSE" for port in args.split()}
    assert exposed >= {"50051", "8000", "8001", "8002"}
    assert last_cmd() == ["jobservice", "api"]


def test_the_package_builds_from_what_the_dockerfile_copies(tmp_path: Path) -> None:
    """`pip install .` in the image sees only the copied files: build a wheel from exactly those."""
    pytest.importorskip("setuptools", reason="building the wheel offline needs setuptools in this venv")
    context = tmp_path / "context"
    context.mkdir()
    patterns = dockerignore_patterns()
    for source in copy_sources():
        path = ROOT / source
        if path.is_dir():
            shutil.copytree(path, context / source, ignore=_dockerignored(patterns))
        else:
            shutil.copy2(path, context / source)
    wheels = tmp_path / "wheels"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), "."],
        cwd=context,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = wheels.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for module in ("api", "scheduler", "executor"):
        assert f"services/{module}/__main__.py" in names, f"the image would lack services.{module}"
    sql = [name for name in names if name.startswith("shared/database/sql/") and name.endswith(".sql")]
    assert sql, "the image would lack the SQL files of shared/database/sql"
    # /docs of an installed api has its descriptions: the OpenAPI document travels with the code.
    document = json.loads(zipfile.ZipFile(wheel).read("shared/proto/jobs/v1/openapi.json"))
    assert document["paths"]["/jobs"]["get"]["description"], "the image's /docs would lack descriptions"
    migrations = "shared/database/migrations/"
    assert {f"{migrations}env.py", f"{migrations}script.py.mako"} <= names, "the image could not migrate"
    assert {name for name in names if name.startswith(f"{migrations}versions/0001_")}, "the image has no migrations"
    assert not [name for name in names if name.startswith("jobclient/")], "the client is a distribution of its own"
    (entry_points,) = [name for name in names if name.endswith(".dist-info/entry_points.txt")]
    assert "jobservice = services.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


# --- the compose CLI, when there is one ------------------------------------------------------------------


def compose_cli() -> list[str] | None:
    """`docker compose` (v2 plugin) or `docker-compose` (v1); both validate without an engine."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_docker_compose_config_accepts_the_file() -> None:
    cli = compose_cli()
    if cli is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed: schema not validated")
    result = subprocess.run(
        [*cli, "-f", str(COMPOSE_FILE), "config", "-q"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- observability: docker compose --profile observability up ---------------------------------------------

DEPLOY = ROOT / "deploy"
OBSERVABILITY_SERVICES = ("prometheus", "grafana", "otel-collector", "jaeger")
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "jobservice.json"


def bind_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(host path, container path) of each bind mount (short syntax starting with . or /, or type: bind)."""
    mounts: list[tuple[str, str]] = []
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            if volume.get("type") == "bind":
                mounts.append((str(volume["source"]), str(volume["target"])))
            continue
        source, target = str(volume).split(":")[:2]
        if source.startswith((".", "/")):
            mounts.append((source, target))
    return mounts


def container_path(service: dict[str, Any], host_relative: str) -> str:
    """Where a repository file appears inside the service's container, through its bind mounts."""
    wanted = (ROOT / host_relative).resolve()
    for source, target in bind_mounts(service):
        host = (ROOT / source).resolve()
        if wanted == host or host in wanted.parents:
            return str(Path(target) / wanted.relative_to(host))
    raise AssertionError(f"{host_relative} is not mounted into the container")


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = []
    for panel in dashboard["panels"]:
        expressions += [target["expr"] for target in panel.get("targets", [])]
        for inner in panel.get("panels", []):
            expressions += [target["expr"] for target in inner.get("targets", [])]
    return expressions


@pytest.mark.parametrize("name", OBSERVABILITY_SERVICES)
def test_observability_services_run_only_in_their_profile(services: dict[str, dict[str, Any]], name: str) -> None:
    assert services[name].get("profiles") == ["observability"]


def test_the_stack_itself_needs_no_profile(services: dict[str, dict[str, Any]]) -> None:
    for name in ("db", *APP_SERVICES):
        assert not services[name].get("profiles"), f"{name} would not start with a plain `docker compose up`"


@pytest.mark.parametrize("name", OBSERVABILITY_SERVICES)
def test_every_file_an_observability_service_mounts_exists(services: dict[str, dict[str, Any]], name: str) -> None:
    for source, _ in bind_mounts(services[name]):
        assert (ROOT / source).exists(), f"{name} mounts {source}, which does not exist"


@pytest.mark.parametrize("name", ["api", "scheduler", "executor"])
def test_the_processes_take_their_otlp_endpoint_from_the_environment(
    services: dict[str, dict[str, Any]], name: str
) -> None:
    env = environment(services[name])
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" in env
    # Each process names itself (jobs-api, jobs-scheduler, jobs-executor); one name for all would merge them.
    assert "OTEL_SERVICE_NAME" not in env


def test_prometheus_scrapes_every_process_where_it_serves_metrics(services: dict[str, dict[str, Any]]) -> None:
    prometheus = services["prometheus"]
    config_path = container_path(prometheus, "deploy/prometheus/prometheus.yml")
    command = " ".join(command_words(prometheus.get("command")))
    assert f"--config.file={config_path}" in command or config_path == "/etc/prometheus/prometheus.yml"
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets: set[str] = set()
    for job in config["scrape_configs"]:
        for static in job.get("static_configs", []):
            targets.update(static["targets"])
        for dns in job.get("dns_sd_configs", []):
            assert dns.get("type", "SRV") == "A", "compose DNS has no SRV records"
            targets.update(f"{name}:{dns['port']}" for name in dns["names"])
    api_port = environment(services["api"]).get("HTTP_PORT", str(DEFAULT_HTTP_PORT))
    expected = {
        f"api:{api_port}",
        f"scheduler:{environment(services['scheduler'])['METRICS_PORT']}",
        f"executor:{environment(services['executor'])['METRICS_PORT']}",
    }
    assert expected <= targets, f"not scraped: {expected - targets}"
    for target in targets:
        assert target.split(":")[0] in services, f"Prometheus scrapes {target}, not a compose service"


def test_the_collector_receives_otlp_and_exports_to_services_that_exist(services: dict[str, dict[str, Any]]) -> None:
    collector = services["otel-collector"]
    config_path = container_path(collector, "deploy/otel-collector/config.yaml")
    assert f"--config={config_path}" in command_words(collector.get("command"))
    config = yaml.safe_load((DEPLOY / "otel-collector" / "config.yaml").read_text())
    pipeline = config["service"]["pipelines"]["traces"]
    for kind in ("receivers", "processors", "exporters"):
        for component in pipeline.get(kind, []):
            assert component in (config.get(kind) or {}), f"the traces pipeline names an undefined {kind}: {component}"
    protocols = config["receivers"]["otlp"]["protocols"]
    assert protocols["grpc"]["endpoint"].endswith(":4317") and protocols["http"]["endpoint"].endswith(":4318")
    # The address the compose file and the docs tell operators to set.
    assert "OTEL_EXPORTER_OTLP_ENDPOINT=http://otel-collector:4317" in COMPOSE_FILE.read_text()
    for name, exporter in config["exporters"].items():
        endpoint = (exporter or {}).get("endpoint")
        if endpoint:
            host = endpoint.split("://")[-1].split(":")[0]
            assert host in services, f"collector exporter {name} sends to {host}, not a compose service"


def test_grafana_provisions_the_data_sources_and_dashboards_it_mounts(services: dict[str, dict[str, Any]]) -> None:
    grafana = services["grafana"]
    provisioning = DEPLOY / "grafana" / "provisioning"
    assert container_path(grafana, "deploy/grafana/provisioning") == "/etc/grafana/provisioning"
    sources = yaml.safe_load((provisioning / "datasources" / "datasources.yml").read_text())["datasources"]
    uids = {source["uid"] for source in sources}
    for source in sources:
        host = source["url"].split("://")[-1].split(":")[0]
        assert host in services, f"data source {source['name']} points at {host}, not a compose service"
    providers = yaml.safe_load((provisioning / "dashboards" / "dashboards.yml").read_text())["providers"]
    dashboards_in_container = container_path(grafana, "deploy/grafana/dashboards")
    assert [provider["options"]["path"] for provider in providers] == [dashboards_in_container]
    dashboard = json.loads(DASHBOARD.read_text())
    used = {
        target["datasource"]["uid"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        if isinstance(target.get("datasource"), dict)
    }
    assert used and used <= uids, f"the dashboard uses data sources Grafana does not have: {used - uids}"


def test_the_dashboard_reads_only_metrics_the_services_define() -> None:
    series = exposed_series(defined_metrics())
    expressions = dashboard_expressions()
    assert expressions
    used: set[str] = set()
    for expression in expressions:
        names = promql_metric_names(expression)
        assert names, f"no metric in {expression!r}"
        unknown = names - series
        assert not unknown, f"{expression!r} reads {unknown}, which no metrics.py of services/ or shared/ defines"
        used |= names
    # What an operator must see at a glance: throughput, latency, queue depth, failures, staleness, leader.
    must_show = {
        "jobs_created_total",
        "jobs_completed_total",
        "jobs_failed_total",
        "jobs_retried_total",
        "job_duration_seconds_bucket",
        "job_queue_wait_seconds_bucket",
        "rpc_duration_seconds_bucket",
        "rpc_requests_total",
        "jobs_pending_count",
        "jobs_ready_count",
        "jobs_processing_count",
        "worker_up",
        "stale_outcomes_total",
        "leases_taken_total",
        "jobs_rescued_total",
        "jobs_promoted_total",
        "jobs_pruned_total",
        "scheduler_is_leader",
        "database_errors_total",
    }
    assert must_show <= used, f"the dashboard shows nothing of {must_show - used}"


def test_the_metric_reader_of_these_tests_sees_what_it_should() -> None:
    metrics = defined_metrics()
    assert metrics["jobs_created"] == "counter" and metrics["job_duration_seconds"] == "histogram"
    assert metrics["jobs_pending_count"] == "gauge" and metrics["worker_up"] == "gauge"
    assert promql_metric_names('histogram_quantile(0.95, sum by (le, method) (rate(x_bucket{a="b"}[5m])))') == {
        "x_bucket"
    }
    assert promql_metric_names("sum by (job) (1 - database_up) / on (job) up") == {"database_up", "up"}
