"""A PostgreSQL server of the test's own, for tests that stop, restart or break the database.

Never use the machine's shared server for that: other tests (and other people) depend on it. This starts
a private server from the PostgreSQL binaries that the ``pgserver`` wheel ships (PostgreSQL 16), in a
directory of the test's choosing, on a free TCP port of 127.0.0.1; the URL stays the same across
restarts, so processes under test reconnect by themselves.

    with PgInstance(tmp_path / "pg") as pg:      # initdb + start
        migrate(pg.url)
        ...
        pg.stop()                                # fast shutdown: connections are cut
        pg.start()
        pg.restart()

``database`` names the database in ``url`` (created on first start); ``admin_url`` points at postgres.
As root, the server runs as the ``pgserver`` system user (PostgreSQL refuses to run as root), created if
missing, and its files live in a folder of their own under /tmp (``directory`` only names it): pytest's
temp folders are owner-only, and another pytest session may tighten them again at any moment.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import psycopg2

from tests.support.processes import free_port

__all__ = ["PgInstance"]

SERVER_USER = "pgserver"
START_TIMEOUT_SECONDS = 30


def _binaries() -> Path:
    """The bin directory of the pgserver wheel's PostgreSQL (found without importing pgserver, whose
    import has side effects: lock files, runtime directories)."""
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the pgserver package is not installed (pip install pgserver)")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _ensure_server_user() -> tuple[int, int]:
    import pwd

    try:
        entry = pwd.getpwnam(SERVER_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", SERVER_USER], check=True, capture_output=True)
        entry = pwd.getpwnam(SERVER_USER)
    return entry.pw_uid, entry.pw_gid


class PgInstance:
    """One private PostgreSQL server: ``start()``, ``stop()``, ``restart()``, ``url``."""

    def __init__(self, directory: Path, database: str = "jobs", port: int | None = None) -> None:
        self._as_root = hasattr(os, "geteuid") and os.geteuid() == 0
        if self._as_root:
            # pytest keeps its temp folders owner-only (and re-tightens them when any session starts), so
            # the server user could lose its way in; a folder of its own directly under /tmp cannot.
            self.directory = Path(tempfile.mkdtemp(prefix=f"jobs-pg-{Path(directory).name}-"))
            self.directory.chmod(0o755)
        else:
            self.directory = Path(directory)
        self.data_dir = self.directory / "data"
        self.log_path = self.directory / "postgres.log"
        self.database = database
        self.port = port or free_port()
        self._bin = _binaries()
        self._created_database = False

    # -- URLs -------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """postgresql:// URL of the test database (the same across restarts)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{self.database}"

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    # -- lifecycle ----------------------------------------------------------------------------------

    def start(self) -> PgInstance:
        """Initialise the data directory on first use, start the server and wait until it accepts connections."""
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        self._pg_ctl(
            "-w",
            "-t",
            str(START_TIMEOUT_SECONDS),
            "-l",
            str(self.log_path),
            # TCP on 127.0.0.1 only, no Unix socket (its path could be too long), and no fsync: test data
            # need not survive a power cut, and it makes restarts fast.
            "-o",
            f"-h 127.0.0.1 -p {self.port} -k '' -c fsync=off -c full_page_writes=off -c max_connections=200",
            "start",
        )
        self._wait_accepting()
        if not self._created_database:
            self._create_database()
        return self

    def stop(self, mode: str = "fast") -> None:
        """Stop the server; ``fast`` (default) cuts every connection, ``immediate`` is a crash."""
        if self.running():
            self._pg_ctl("-w", "-t", str(START_TIMEOUT_SECONDS), "-m", mode, "stop")

    def restart(self, down_seconds: float = 0.0) -> None:
        """Stop, stay down ``down_seconds``, start again."""
        self.stop()
        if down_seconds:
            time.sleep(down_seconds)
        self.start()

    def running(self) -> bool:
        result = self._pg_ctl("status", check=False)
        return result.returncode == 0

    def destroy(self) -> None:
        """Stop the server and delete its files; never fails (it runs in teardown)."""
        try:
            self.stop("immediate")
        except (RuntimeError, subprocess.TimeoutExpired):
            # pg_ctl itself can die here (seen: SIGSEGV under load); end the postmaster directly.
            self._kill_postmaster()
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)

    def _kill_postmaster(self) -> None:
        pid_file = self.data_dir / "postmaster.pid"
        with contextlib.suppress(OSError, ValueError, IndexError):
            os.kill(int(pid_file.read_text().splitlines()[0]), signal.SIGQUIT)

    def __enter__(self) -> PgInstance:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.destroy()

    # -- internals ----------------------------------------------------------------------------------

    def _initdb(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(exist_ok=True)
        if self._as_root:
            uid, gid = _ensure_server_user()
            # PostgreSQL refuses to run as root: the server user owns its files.
            for path in (self.directory, self.data_dir):
                os.chown(path, uid, gid)
        self._run(
            str(self._bin / "initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--no-sync",
        )

    def _pg_ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self._run(str(self._bin / "pg_ctl"), "-D", str(self.data_dir), *args, check=check)

    def _run(self, *command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            command,
            user=SERVER_USER if self._as_root else None,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            cwd=self.directory,
        )
        if check and result.returncode != 0:
            log = self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""
            raise RuntimeError(
                f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}\n{log}"
            )
        return result

    def _wait_accepting(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            try:
                psycopg2.connect(self.admin_url, connect_timeout=2).close()
                return
            except psycopg2.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _create_database(self) -> None:
        connection = psycopg2.connect(self.admin_url)
        connection.autocommit = True
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,))
                if cursor.fetchone() is None:
                    cursor.execute(f'CREATE DATABASE "{self.database}"')
        finally:
            connection.close()
        self._created_database = True
