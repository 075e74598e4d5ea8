"""docker-compose.yml and the Dockerfile, checked without a Docker engine (none runs on our machines).

What a broken compose file would do on someone's laptop: start a module that does not exist, COPY a file that
is not there, publish ports the api does not listen on, or refuse `--scale executor=3`. Each test here catches
one of those from the files alone; `docker compose config` validates the schema when a compose CLI exists.
"""

from __future__ import annotations

import fnmatch
import json
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

from services.api.settings import DEFAULT_GRPC_PORT, DEFAULT_HTTP_PORT

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
APP_SERVICES = ("migrate", "api", "scheduler", "executor")
DATABASE_URL = "postgresql://postgres:postgres@db:5432/jobs"


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


def test_migrate_runs_alembic_once_the_database_is_healthy(services: dict[str, dict[str, Any]]) -> None:
    migrate = services["migrate"]
    assert command_words(migrate["command"]) == ["alembic", "upgrade", "head"]
    assert migrate["depends_on"]["db"]["condition"] == "service_healthy"
    assert str(migrate.get("restart", "no")) == "no", "a one-off migration must not be restarted"
    assert (ROOT / "alembic.ini").is_file() and (ROOT / "migrations" / "env.py").is_file()


@pytest.mark.parametrize("name", ["api", "scheduler", "executor"])
def test_processes_start_after_the_migration_succeeded(services: dict[str, dict[str, Any]], name: str) -> None:
    assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_every_process_uses_the_compose_database(services: dict[str, dict[str, Any]], name: str) -> None:
    assert environment(services[name]).get("DATABASE_URL") == DATABASE_URL


def test_every_python_module_a_command_names_exists(services: dict[str, dict[str, Any]]) -> None:
    commands = {name: command_words(service.get("command")) for name, service in services.items()}
    commands["Dockerfile CMD"] = last_cmd()
    checked = 0
    for name, words in commands.items():
        for index in range(1, len(words) - 1):
            if words[index] == "-m" and words[index - 1].startswith("python"):
                module = words[index + 1]
                path = ROOT / Path(*module.split(".")) / "__main__.py"
                assert path.is_file(), f"{name} runs `python -m {module}` but {path.relative_to(ROOT)} is missing"
                checked += 1
    assert checked >= 4, "expected api, scheduler, executor and the Dockerfile's CMD to run python -m"


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
    assert last_cmd() == ["python", "-m", "services.api"]


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
