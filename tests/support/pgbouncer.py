"""A PgBouncer of the test's own (Debian's ``pgbouncer`` package) in front of a PostgreSQL server.

    bouncer = PgBouncer(target_port=pg.port, pool_mode="transaction", pool_size=20).start()
    bouncer.url("jobs")           # what services put in DATABASE_URL
    bouncer.pools()               # SHOW POOLS on its admin console: clients and server connections
    bouncer.stop()

``ensure_installed()`` installs the package when it is missing (``apt-get update`` then
``apt-get install -y pgbouncer``; root only) and raises PgBouncerUnavailable, saying why, where it cannot
(the tests' fixture turns that into a skip). As root,
PgBouncer runs as the ``postgres`` user (what ``runuser -u postgres -- pgbouncer FILE.ini`` does, without
the runuser process in between, so the test reaps it), from a folder of its own under /tmp that the user
can reach; otherwise as the current user.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg2

from tests.support.pg_instance import ensure_server_user
from tests.support.processes import free_port, port_open

__all__ = ["PgBouncer", "PgBouncerUnavailable", "ensure_installed"]

RUN_AS = "postgres"
START_TIMEOUT_SECONDS = 30


class PgBouncerUnavailable(RuntimeError):
    """pgbouncer is not installed and cannot be installed here."""


def ensure_installed() -> str:
    """The pgbouncer binary's path; installs Debian's package when missing (PgBouncerUnavailable if it cannot)."""
    found = shutil.which("pgbouncer") or ("/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None)
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise PgBouncerUnavailable("pgbouncer is not installed, and only root with apt-get can install it")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "pgbouncer"]):
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            raise PgBouncerUnavailable(
                f"cannot install pgbouncer ({' '.join(command)}: {result.stderr.strip()[-500:]})"
            )
    return shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


def _run_as() -> tuple[int, int]:
    """The postgres user's ids; where there is none, those of the private servers' user."""
    users = {user.pw_name: (user.pw_uid, user.pw_gid) for user in pwd.getpwall()}
    return users[RUN_AS] if RUN_AS in users else ensure_server_user()


class PgBouncer:
    """One PgBouncer process pooling every database of the server at ``target_host``:``target_port``."""

    def __init__(
        self,
        target_port: int,
        pool_mode: str = "transaction",
        pool_size: int = 20,
        max_client_conn: int = 2000,
        target_host: str = "127.0.0.1",
    ) -> None:
        self.binary = ensure_installed()
        self.target_host = target_host
        self.target_port = target_port
        self.pool_mode = pool_mode
        self.pool_size = pool_size
        self.max_client_conn = max_client_conn
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="jobs-pgbouncer-"))
        self.directory.chmod(0o755)
        self.log_path = self.directory / "pgbouncer.log"
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> PgBouncer:
        ini = self.directory / "pgbouncer.ini"
        (self.directory / "userlist.txt").write_text('"postgres" ""\n')
        ini.write_text(
            f"""[databases]
* = host={self.target_host} port={self.target_port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.port}
unix_socket_dir =
auth_type = trust
auth_file = {self.directory}/userlist.txt
admin_users = postgres
pool_mode = {self.pool_mode}
default_pool_size = {self.pool_size}
max_db_connections = {self.pool_size}
reserve_pool_size = 0
max_client_conn = {self.max_client_conn}
logfile = {self.log_path}
pidfile = {self.directory}/pgbouncer.pid
"""
        )
        as_user: dict[str, Any] = {}
        if os.geteuid() == 0:
            uid, gid = _run_as()
            for path in (self.directory, *self.directory.iterdir()):
                os.chown(path, uid, gid)
            as_user = {"user": uid, "group": gid, "extra_groups": []}
        self._output = open(self.directory / "stdout.log", "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [self.binary, str(ini)], stdout=self._output, stderr=subprocess.STDOUT, cwd=self.directory, **as_user
        )
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not port_open(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"pgbouncer did not start:\n{self.log()}")
            time.sleep(0.05)
        return self

    def log(self) -> str:
        parts = [path.read_text(errors="replace")[-3000:] for path in (self.log_path, self.directory / "stdout.log")]
        return "\n".join(part for part in parts if part)

    def admin(self, command: str) -> list[dict[str, Any]]:
        """Run a SHOW command on the admin console; rows by column name."""
        connection = psycopg2.connect(self.url("pgbouncer"))
        connection.autocommit = True
        try:
            with connection.cursor() as cursor:
                cursor.execute(command)
                columns = [column.name for column in cursor.description or ()]
                return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
        finally:
            connection.close()

    def pools(self, database: str) -> tuple[int, int]:
        """(client connections, server connections) of ``database``'s pools right now."""
        clients = servers = 0
        for row in self.admin("SHOW POOLS"):
            if row["database"] == database:
                clients += row["cl_active"] + row["cl_waiting"]
                servers += row["sv_active"] + row["sv_idle"] + row["sv_used"] + row["sv_tested"] + row["sv_login"]
        return clients, servers

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if self.process is not None:
            self._output.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> PgBouncer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
