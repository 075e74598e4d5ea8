"""This project's distributions as users install them: a wheel built from a copy of the sources, installed
with pip into a fresh venv (nothing of the development venv), and commands run outside the checkout."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from tests.support.processes import ROOT

__all__ = [
    "PIP_TIMEOUT_SECONDS",
    "build_wheel",
    "clean_env",
    "client_sources",
    "fresh_venv",
    "installed_packages",
    "run",
    "server_sources",
]

PIP_TIMEOUT_SECONDS = 900


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without anything that would point Python at the checkout or the dev venv."""
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"}}
    return {**env, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONDONTWRITEBYTECODE": "1", **extra}


def run(command: Sequence[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 120) -> str:
    """Run ``command``; its output (stdout then stderr); the test fails with both when it exits non-zero."""
    result = subprocess.run(
        list(command), cwd=cwd, env=env or clean_env(), capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, f"{' '.join(command)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def server_sources() -> list[Path]:
    """What the server's wheel is built from: its pyproject.toml (which picks the packages), its README and
    the top-level folders of its packages."""
    return [ROOT / name for name in ("pyproject.toml", "README.md", "services", "shared")]


def client_sources() -> list[Path]:
    """What the client's wheel (clients/python) is built from."""
    return [ROOT / "clients" / "python" / name for name in ("pyproject.toml", "README.md", "jobclient")]


def build_wheel(sources: Sequence[Path], tmp_path: Path) -> Path:
    """A wheel of the project made of ``sources`` (its pyproject.toml among them), built from a copy so the
    checkout gets no build/ folder."""
    project = Path(tempfile.mkdtemp(prefix="source-", dir=tmp_path))
    for source in sources:
        if source.is_dir():
            shutil.copytree(source, project / source.name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(source, project / source.name)
    out = Path(tempfile.mkdtemp(prefix="wheels-", dir=tmp_path))
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), "."]
    run(command, project, timeout=300)
    (wheel,) = out.glob("*.whl")
    return wheel


def fresh_venv(path: Path, *requirements: str) -> Path:
    """A new venv with ``requirements`` (wheel paths, ``wheel[extra]``...) and their dependencies installed;
    returns its bin folder."""
    run([sys.executable, "-m", "venv", str(path)], path.parent)
    bin_dir = path / "bin"
    run([str(bin_dir / "pip"), "install", "-q", *requirements], path.parent, timeout=PIP_TIMEOUT_SECONDS)
    return bin_dir


def installed_packages(bin_dir: Path) -> set[str]:
    """The names (lower case) of the distributions installed in the venv of ``bin_dir``."""
    listing = json.loads(run([str(bin_dir / "pip"), "list", "--format=json"], bin_dir))
    return {package["name"].lower() for package in listing}
