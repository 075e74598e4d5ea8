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

    primary = PgInstance(tmp_path / "a").start()
    standby = PgInstance.standby_of(primary, tmp_path / "b")   # pg_basebackup, streaming, started
    primary.require_synchronous_standby()        # from now on a commit waits for the standby
    primary.kill()                               # SIGKILL the postmaster and every server process
    standby.promote()

``settings`` are server settings given at start (``max_connections`` defaults to 200); they are not written
to the data directory, so a standby copied with pg_basebackup does not inherit them. ``database`` names
the database in ``url`` (created on first start); ``admin_url`` points at postgres.
As root, the server runs as the ``pgserver`` system user (PostgreSQL refuses to run as root), created if
missing, and that user must reach both its files and its binaries:
- its files live in a folder of their own under /tmp (``directory`` only names it): pytest's temp folders
  are owner-only, and another pytest session may tighten them again at any moment;
- its binaries are run from a copy under /tmp made once per test process (``reachable_binaries``): the
  wheel's own sit inside the checkout's .venv, which that user cannot enter when the checkout is in a
  folder only root may enter (``mktemp -d``, /root). No folder of the checkout has its permissions
  changed (pgserver's own start-up, as `make run` uses it, widens every parent folder instead).
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import importlib.util
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

import psycopg2

from tests.support.processes import free_port

__all__ = ["PgInstance", "ensure_server_user"]

SERVER_USER = "pgserver"
START_TIMEOUT_SECONDS = 30


def _installation() -> Path:
    """The pgserver wheel's PostgreSQL installation (bin, lib, share), found without importing pgserver,
    whose import has side effects (lock files, runtime directories)."""
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the pgserver package is not installed (pip install pgserver)")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall"


@functools.cache
def reachable_binaries() -> Path:
    """The bin directory of a copy of the installation that every user can reach (for the server user,
    when we are root), removed when this process exits. The copy keeps the wheel's layout: the binaries
    find lib/ and share/ relative to themselves, and the wheel's bundled libraries (libpq...) in
    ``pgserver.libs`` beside the package, through their rpath ``$ORIGIN/../../../pgserver.libs``."""
    installation = _installation()
    folder = Path(tempfile.mkdtemp(prefix="jobs-pg-binaries-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    copy = folder / "pgserver" / "pginstall"
    shutil.copytree(installation, copy, ignore=shutil.ignore_patterns("include"))
    libraries = installation.parent.parent / "pgserver.libs"
    if libraries.is_dir():
        shutil.copytree(libraries, folder / "pgserver.libs")
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else path.stat().st_mode | 0o044)
    return copy / "bin"


def _alive(pid: int) -> bool:
    """Whether the process still runs (a zombie waiting for its parent to reap it does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _exited(pids: Sequence[int]) -> bool:
    """Wait up to START_TIMEOUT_SECONDS for every one of the processes to exit; whether they did."""
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while any(_alive(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def ensure_server_user() -> tuple[int, int]:
    import pwd

    try:
        entry = pwd.getpwnam(SERVER_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", SERVER_USER], check=True, capture_output=True)
        entry = pwd.getpwnam(SERVER_USER)
    return entry.pw_uid, entry.pw_gid


class PgInstance:
    """One private PostgreSQL server: ``start()``, ``stop()``, ``restart()``, ``url``."""

    def __init__(
        self,
        directory: Path,
        database: str = "jobs",
        port: int | None = None,
        settings: Mapping[str, str] | None = None,
    ) -> None:
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
        self._bin = reachable_binaries() if self._as_root else _installation() / "bin"
        self._created_database = False
        self.settings = {"max_connections": "200", **(settings or {})}

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
        settings = " ".join(f"-c {shlex.quote(f'{name}={value}')}" for name, value in self.settings.items())
        self._pg_ctl(
            "-w",
            "-t",
            str(START_TIMEOUT_SECONDS),
            "-l",
            str(self.log_path),
            # TCP on 127.0.0.1 only, no Unix socket (its path could be too long), and no fsync: test data
            # need not survive a power cut, and it makes restarts fast.
            "-o",
            f"-h 127.0.0.1 -p {self.port} -k '' -c fsync=off -c full_page_writes=off {settings}",
            "start",
        )
        self._wait_accepting()
        if not self._created_database:
            self._create_database()
        return self

    def stop(self, mode: str = "fast") -> None:
        """Stop the server; ``fast`` (default) cuts every connection, ``immediate`` is a crash. Returns once
        the postmaster has exited, so a start that follows never finds it still there."""
        postmaster = self._postmaster_pid()
        if postmaster is None:
            return
        # Not `pg_ctl status` first: under load pg_ctl itself has been seen to fail, and a skipped stop
        # left the old server running into the next start.
        self._pg_ctl("-w", "-t", str(START_TIMEOUT_SECONDS), "-m", mode, "stop", check=False)
        if not _exited((postmaster,)):
            raise RuntimeError(f"PostgreSQL (pid {postmaster}) did not stop within {START_TIMEOUT_SECONDS} s")

    def restart(self, down_seconds: float = 0.0) -> None:
        """Stop, stay down ``down_seconds``, start again."""
        self.stop()
        if down_seconds:
            time.sleep(down_seconds)
        self.start()

    @classmethod
    def standby_of(cls, primary: PgInstance, directory: Path, settings: Mapping[str, str] | None = None) -> PgInstance:
        """A streaming standby of ``primary`` (pg_basebackup -R), started; hot, so it answers reads."""
        standby = cls(directory, primary.database, settings=settings)
        standby._prepare_directory()
        standby._run(
            str(standby._bin / "pg_basebackup"),
            *("-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres"),
            *("-D", str(standby.data_dir), "-X", "stream", "-R", "-c", "fast", "--no-sync"),
        )
        standby._created_database = True  # copied with everything else
        return standby.start()

    def require_synchronous_standby(self) -> None:
        """Make every commit wait until a standby has it (synchronous_standby_names = '*', written with
        ALTER SYSTEM after the standby was copied, which so does not inherit it); return once one is
        streaming synchronously."""
        connection = psycopg2.connect(self.admin_url)
        connection.autocommit = True
        try:
            with connection.cursor() as cursor:
                cursor.execute("ALTER SYSTEM SET synchronous_standby_names = '*'")
                cursor.execute("SELECT pg_reload_conf()")
                deadline = time.monotonic() + START_TIMEOUT_SECONDS
                while True:
                    cursor.execute("SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'")
                    if (cursor.fetchone() or (0,))[0]:
                        return
                    if time.monotonic() > deadline:
                        raise RuntimeError("no standby became synchronous")
                    time.sleep(0.05)
        finally:
            connection.close()

    def promote(self) -> None:
        """End recovery: the standby becomes a primary that accepts writes."""
        self._pg_ctl("-w", "-t", str(START_TIMEOUT_SECONDS), "promote")

    def kill(self) -> datetime:
        """SIGKILL the postmaster and every server process at once: the machine died, nothing was flushed
        or said goodbye to (the kernel still resets the TCP connections, as a crashed host's would not).
        Returns when they are gone, with the moment the signals went out."""
        postmaster = self._postmaster_pid()
        if postmaster is None:
            raise RuntimeError("PostgreSQL is not running: no postmaster.pid")
        children = []
        for entry in Path("/proc").iterdir():
            with contextlib.suppress(OSError, ValueError, IndexError):
                if (
                    entry.name.isdigit()
                    and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == postmaster
                ):
                    children.append(int(entry.name))
        killed_at = datetime.now(UTC)
        for pid in (postmaster, *children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _exited((postmaster, *children))
        return killed_at

    def destroy(self) -> None:
        """Stop the server and delete its files; never fails (it runs in teardown)."""
        try:
            self.stop("immediate")
        except (RuntimeError, subprocess.TimeoutExpired):
            # pg_ctl itself can die here (seen: SIGSEGV under load); end the postmaster directly.
            self._kill_postmaster()
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)

    def _postmaster_pid(self) -> int | None:
        """The pid postmaster.pid names, or None when there is no such file."""
        with contextlib.suppress(OSError, ValueError, IndexError):
            return int((self.data_dir / "postmaster.pid").read_text().splitlines()[0])
        return None

    def _kill_postmaster(self) -> None:
        postmaster = self._postmaster_pid()
        if postmaster is not None:
            with contextlib.suppress(OSError):
                os.kill(postmaster, signal.SIGQUIT)

    def __enter__(self) -> PgInstance:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.destroy()

    # -- internals ----------------------------------------------------------------------------------

    def _prepare_directory(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(mode=0o700, exist_ok=True)
        if self._as_root:
            uid, gid = ensure_server_user()
            # PostgreSQL refuses to run as root: the server user owns its files.
            for path in (self.directory, self.data_dir):
                os.chown(path, uid, gid)

    def _initdb(self) -> None:
        self._prepare_directory()
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
