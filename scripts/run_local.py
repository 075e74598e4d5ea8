"""`make run`: the whole service on one machine, in the foreground, until Ctrl-C.

1. A database: DATABASE_URL when it is set; otherwise an embedded PostgreSQL (the ``pgserver`` package)
   with its data under ``.data/postgres`` (RUN_LOCAL_DATA_DIR or --data-dir to move it) and a ``jobs``
   database in it. The embedded server listens on a unix socket only, so it never collides with another
   PostgreSQL on the machine.
2. The migrations (as ``jobservice migrate`` applies them) on that database.
3. A development mail sink when SMTP_HOST is not set: an SMTP server (the ``aiosmtpd`` package) on a free
   port of 127.0.0.1, which the executors' ``send_email`` uses. Each message it receives is printed as one
   line (from, to, subject, size) and kept as an ``.eml`` file under ``.data/mail`` (RUN_LOCAL_MAIL_DIR or
   --mail-dir to move it); nothing is delivered anywhere. With SMTP_HOST set, the executors use that server.
4. ``python -m services.api``, ``services.scheduler`` and ``services.executor`` (--executors N of them) as
   child processes, their output interleaved on this terminal, one prefix per process.
5. Ctrl-C or SIGTERM stops the children (SIGTERM, then SIGKILL after --stop-timeout) and the embedded
   PostgreSQL, and exits 0. A child that exits on its own stops everything and exits 1.

Every other setting reaches the children through the environment (LOG_LEVEL, LOG_FORMAT, GRPC_PORT,
HTTP_PORT, ...); only METRICS_PORT is set per child, because the scheduler and the executors all read it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from email.parser import BytesHeaderParser
from email.policy import default as default_email_policy
from functools import partial
from pathlib import Path
from types import FrameType
from typing import IO, Any
from urllib.parse import quote, urlsplit, urlunsplit

from services.api.settings import ApiSettings
from services.executor.settings import ExecutorSettings
from services.scheduler.settings import SchedulerSettings
from shared.settings import Settings, SettingsError, setting

ROOT = Path(__file__).resolve().parents[1]

DEFAULT_DATA_DIR = ROOT / ".data" / "postgres"
DEFAULT_MAIL_DIR = ROOT / ".data" / "mail"
MAIL_SINK_HOST = "127.0.0.1"
# The README's first example, the seed's own job; the banner shows it (tests/test_run_local.py runs it).
SEND_EMAIL_EXAMPLE = (
    '{"type": "send_email", "payload": {"to": "user@example.com", "subject": "Welcome!", '
    '"body": "Thanks for signing up"}, "idempotency_key": "signup-email-user123"}'
)
# send_email settings that would not work against the sink (it has no TLS and no login).
SMTP_SETTINGS_THE_SINK_REPLACES = (
    "SMTP_HOST",
    "SMTP_PORT",
    "SMTP_STARTTLS",
    "SMTP_SSL",
    "SMTP_USERNAME",
    "SMTP_PASSWORD",
)
# On SIGTERM an executor lets running jobs finish for its grace period: wait that long and a bit more.
STOP_TIMEOUT_MARGIN_SECONDS = 5.0
EMBEDDED_DATABASE = "jobs"
EMBEDDED_STOP_TIMEOUT_SECONDS = 30.0
EMBEDDED_USER = "postgres"
# After this long without a healthy API, say so once (the processes keep running: it may be a slow machine).
READY_WARNING_SECONDS = 60.0
SUPERVISE_INTERVAL_SECONDS = 0.2
PR_SET_PDEATHSIG = 1

EXIT_OK = 0
EXIT_CHILD_FAILED = 1
EXIT_BAD_SETTINGS = 2


class StartError(Exception):
    """Something run_local needs before the services can start is missing or broken."""


def log(message: str) -> None:
    """run_local's own lines, in the same stream as the children's."""
    OUTPUT.write_line("run_local", message)


class Output:
    """Interleaves whole lines from several processes on stdout, each behind its process's prefix."""

    COLOURS = ("36", "33", "35", "32", "34", "31")

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.lock = threading.Lock()
        self.width = len("run_local")
        self.colour = stream.isatty() and not os.environ.get("NO_COLOR")
        self.prefixes: dict[str, str] = {}

    def register(self, name: str) -> None:
        self.width = max(self.width, len(name))
        if self.colour:
            code = self.COLOURS[len(self.prefixes) % len(self.COLOURS)]
            self.prefixes[name] = f"\033[{code}m{{name}}\033[0m"

    def write_line(self, name: str, line: str) -> None:
        label = name.ljust(self.width)
        if name in self.prefixes:
            label = self.prefixes[name].format(name=label)
        with self.lock:
            self.stream.write(f"{label} | {line.rstrip()}\n")
            self.stream.flush()


OUTPUT = Output(sys.stdout)


class PrefixedHandler(logging.Handler):
    """Log records of run_local's own libraries (alembic) as lines of the interleaved output."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.prefix = name

    def emit(self, record: logging.LogRecord) -> None:
        OUTPUT.write_line(self.prefix, self.format(record))


# --- settings -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ports:
    grpc: int
    http: int
    scheduler_metrics: int
    executor_metrics: tuple[int, ...]

    def all(self) -> list[tuple[str, int]]:
        """Every port some process will listen on, with the setting that chose it (0 means none)."""
        named = [("GRPC_PORT", self.grpc), ("HTTP_PORT", self.http)]
        named.append(("--scheduler-metrics-port", self.scheduler_metrics))
        named += [(f"executor {i + 1} metrics port", port) for i, port in enumerate(self.executor_metrics)]
        return [(name, port) for name, port in named if port]


@dataclass(frozen=True)
class RunLocalSettings(Settings):
    """run_local's own settings; everything else reaches the processes through the environment."""

    executors: int = setting("RUN_LOCAL_EXECUTORS", 1, "executors to start, 0 for none", minimum=0, maximum=64)
    scheduler_metrics_port: int = setting(
        "SCHEDULER_METRICS_PORT",
        SchedulerSettings.metrics_port,
        "the scheduler's METRICS_PORT; 0 for no metrics",
        minimum=0,
        maximum=65535,
    )
    executor_metrics_port: int = setting(
        "EXECUTOR_METRICS_PORT",
        ExecutorSettings.metrics_port,
        "the first executor's METRICS_PORT (the others take the next free ports); 0 for no metrics",
        minimum=0,
        maximum=65535,
    )
    data_dir: str = setting(
        "RUN_LOCAL_DATA_DIR",
        str(DEFAULT_DATA_DIR),
        "the embedded PostgreSQL's data, unused when DATABASE_URL is set",
        shown_default=str(DEFAULT_DATA_DIR.relative_to(ROOT)),
    )
    mail_dir: str = setting(
        "RUN_LOCAL_MAIL_DIR",
        str(DEFAULT_MAIL_DIR),
        "where the mail sink keeps each message as an .eml file; the sink runs only when SMTP_HOST is not set",
        shown_default=str(DEFAULT_MAIL_DIR.relative_to(ROOT)),
    )
    stop_timeout: float | None = setting(
        "RUN_LOCAL_STOP_TIMEOUT",
        None,
        "seconds the processes get to stop after SIGTERM before SIGKILL",
        minimum=0.0,
        maximum=3600.0,
        shown_default=f"the executors' grace + {STOP_TIMEOUT_MARGIN_SECONDS:g}",
        metavar="SECONDS",
    )

    def stop_seconds(self) -> float:
        """The stop timeout: as set, or the executors' shutdown grace and a margin."""
        if self.stop_timeout is not None:
            return self.stop_timeout
        grace: float = ExecutorSettings.read_one("shutdown_grace_seconds")
        return grace + STOP_TIMEOUT_MARGIN_SECONDS


def parse_args(argv: Sequence[str] | None) -> tuple[RunLocalSettings, argparse.Namespace]:
    """run_local's settings (environment and flags) and the other flags; SettingsError names a bad one."""
    parser = argparse.ArgumentParser(
        prog="python -m scripts.run_local",
        description="Run api, scheduler and executors in the foreground (what `make run` does). "
        "Without DATABASE_URL an embedded PostgreSQL is started and stopped with them. "
        "Everything else is configured through the environment, which the processes inherit.",
    )
    RunLocalSettings.add_flags(parser)
    parser.add_argument(
        "--no-scheduler",
        action="store_true",
        help="do not start the scheduler (scheduled jobs and expired leases are then left alone)",
    )
    args = parser.parse_args(argv)
    return RunLocalSettings.from_args(args), args


def resolve_ports(settings: RunLocalSettings) -> Ports:
    """The API's ports come from the variables the API reads; metrics ports from run_local's settings."""
    grpc: int = ApiSettings.read_one("grpc_port")
    http: int = ApiSettings.read_one("http_port")
    taken = {grpc, http, settings.scheduler_metrics_port}
    executor_ports: list[int] = []
    candidate = settings.executor_metrics_port
    for _ in range(settings.executors):
        while candidate and candidate in taken:
            candidate += 1
        executor_ports.append(candidate)
        taken.add(candidate)
    return Ports(grpc, http, settings.scheduler_metrics_port, tuple(executor_ports))


def port_in_use(port: int) -> bool:
    """True when something listens on ``port`` (SO_REUSEADDR so TIME_WAIT leftovers do not count)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("", port))
        except OSError:
            return True
    return False


def redact(url: str) -> str:
    """DATABASE_URL without its password, for printing."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


# --- the embedded PostgreSQL --------------------------------------------------------------------------


class EmbeddedPostgres:
    """A private PostgreSQL from the pgserver wheel, stopped by us rather than by pgserver's atexit hook.

    pgserver counts its users in a file and stops the server when the last one leaves; a run killed with
    SIGKILL leaves a stale entry there and the server would then never be stopped. So the server is
    started with ``cleanup_mode=None`` and stopped here with PostgreSQL's own fast-shutdown signal.
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.expanduser().resolve()
        self.pid: int | None = None
        self.socket_dir: Path | None = None

    def start(self) -> str:
        """Start (or adopt a leftover of) the server; return the DATABASE_URL of its ``jobs`` database."""
        try:
            with warnings.catch_warnings():
                # platformdirs warns when XDG_RUNTIME_DIR is unset; pgserver then uses /tmp, which is fine.
                warnings.simplefilter("ignore")
                import pgserver
        except ImportError:
            raise StartError(
                "DATABASE_URL is not set and the pgserver package is missing: "
                "run `make install` (or pip install pgserver), or set DATABASE_URL=postgresql://..."
            ) from None
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        leftover = self._running_pid()
        try:
            server = pgserver.get_server(self.data_dir, cleanup_mode=None)
        except Exception as error:
            raise StartError(
                f"the embedded PostgreSQL did not start ({type(error).__name__}: {error}); "
                f"its log is {self.data_dir / 'log'}"
            ) from error
        info = server.get_postmaster_info()
        self.pid = int(info.pid)
        self.socket_dir = Path(info.socket_dir) if info.socket_dir is not None else None
        verb = "adopted the embedded PostgreSQL left running" if leftover == self.pid else "started embedded PostgreSQL"
        log(f"{verb} (pid {self.pid}) with its data in {self.data_dir}")
        url = self.url(EMBEDDED_DATABASE) if self.socket_dir else server.get_uri(EMBEDDED_DATABASE)
        admin_url = self.url("postgres") if self.socket_dir else server.get_uri("postgres")
        create_database_if_missing(admin_url, EMBEDDED_DATABASE)
        return url

    def _running_pid(self) -> int | None:
        """The pid of a server already running on this data folder (a run killed before it could stop it)."""
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if process_alive(pid) else None

    def url(self, database: str) -> str:
        """A libpq/SQLAlchemy URL for the unix socket: postgresql://postgres@/jobs?host=/socket/dir."""
        assert self.socket_dir is not None
        return f"postgresql://{EMBEDDED_USER}@/{database}?host={quote(str(self.socket_dir), safe='/')}"

    def stop(self, timeout: float) -> None:
        """Fast shutdown (SIGINT), then immediate shutdown (SIGQUIT), then SIGKILL."""
        if self.pid is None or not process_alive(self.pid):
            return
        for signum, grace in ((signal.SIGINT, timeout), (signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0)):
            try:
                os.kill(self.pid, signum)
            except ProcessLookupError:
                break
            if wait_for(lambda: not process_alive(self.pid or 0), grace):
                break
            log(f"embedded PostgreSQL did not stop after {signal.Signals(signum).name}; escalating")
        log("embedded PostgreSQL stopped")
        self.pid = None


def create_database_if_missing(admin_url: str, name: str) -> None:
    import psycopg2

    try:
        conn = psycopg2.connect(admin_url, connect_timeout=10)
    except psycopg2.Error as error:
        raise StartError(f"cannot connect to the embedded PostgreSQL: {error}") from error
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cur.fetchone() is None:
                cur.execute(f'CREATE DATABASE "{name}"')
                log(f"created database {name}")
    finally:
        conn.close()


def apply_migrations(database_url: str) -> None:
    """The migrations shipped in the package, as `jobservice migrate` applies them."""
    from shared.database import MigrationFailed
    from shared.database import apply_migrations as upgrade

    # Alembic's progress lines go through our prefixed output.
    alembic_log = logging.getLogger("alembic")
    alembic_log.setLevel(logging.INFO)
    alembic_log.addHandler(PrefixedHandler("migrate"))
    try:
        upgrade(database_url)
    except MigrationFailed as error:
        raise StartError(f"migrations failed: {error}") from error


# --- the development mail sink ------------------------------------------------------------------------


def smtp_host_set() -> bool:
    """True when the caller chose an SMTP server: then send_email uses it and no sink runs."""
    return bool(os.environ.get("SMTP_HOST", "").strip())


class MailSink:
    """An SMTP server on a free local port that keeps every message as an .eml file and prints one line.

    It runs its own asyncio loop in a daemon thread. A development convenience of `make run` only: the
    executor itself has no such mode, so a production executor without a reachable SMTP server fails its
    send_email jobs (naming the server it tried) rather than dropping mail.
    """

    def __init__(self, mail_dir: Path) -> None:
        self.mail_dir = mail_dir.expanduser().resolve()
        self.port = 0
        self.received = 0
        self.loop: asyncio.AbstractEventLoop | None = None
        self.server: asyncio.Server | None = None
        self.thread: threading.Thread | None = None

    def start(self) -> int:
        """Listen on a free port of 127.0.0.1; return the port."""
        try:
            from aiosmtpd.smtp import SMTP
        except ImportError:
            raise StartError(
                "SMTP_HOST is not set and the aiosmtpd package (the development mail sink) is missing: "
                "run `make install` (or pip install aiosmtpd), or set SMTP_HOST to a real SMTP server"
            ) from None
        self.mail_dir.mkdir(parents=True, exist_ok=True)
        loop = asyncio.new_event_loop()
        # hostname given: aiosmtpd would otherwise ask DNS for this machine's name.
        factory = partial(SMTP, self, hostname="localhost", enable_SMTPUTF8=True, loop=loop)
        try:
            self.server = loop.run_until_complete(loop.create_server(factory, MAIL_SINK_HOST, 0))
        except OSError as error:
            loop.close()
            raise StartError(f"the mail sink cannot listen on {MAIL_SINK_HOST}: {error}") from error
        self.loop = loop
        self.port = int(self.server.sockets[0].getsockname()[1])
        self.thread = threading.Thread(target=loop.run_forever, name="mail-sink", daemon=True)
        self.thread.start()
        log(f"mail sink on {MAIL_SINK_HOST}:{self.port}: send_email messages are kept in {self.mail_dir}")
        return self.port

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        """aiosmtpd's hook for each message: keep it, print it, accept it."""
        content: bytes = envelope.original_content or b""
        self.received += 1
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-%f")
        path = self.mail_dir / f"{stamp}-{self.received}.eml"
        try:
            path.write_bytes(content)
        except OSError as error:
            OUTPUT.write_line("mail", f"cannot keep a message in {path}: {error}")
            return "451 4.3.0 the sink cannot store the message"
        subject = BytesHeaderParser(policy=default_email_policy).parsebytes(content).get("Subject", "")
        recipients = ", ".join(envelope.rcpt_tos)
        OUTPUT.write_line(
            "mail",
            f"from {envelope.mail_from} to {recipients} subject {str(subject)!r} ({len(content)} bytes): {path}",
        )
        return "250 OK: kept by the make run mail sink"

    def executor_env(self) -> dict[str, str]:
        """What the executors need to send through the sink."""
        return {"SMTP_HOST": MAIL_SINK_HOST, "SMTP_PORT": str(self.port)}

    def stop(self) -> None:
        loop, server, thread = self.loop, self.server, self.thread
        if loop is None or server is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        server.close()
        loop.run_until_complete(server.wait_closed())
        loop.close()
        self.loop = None


# --- child processes ----------------------------------------------------------------------------------


def process_alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie (exited, not yet reaped by its parent) counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM if run_local itself dies (even by SIGKILL). Linux only."""
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, signal.SIGTERM)


_PRCTL = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None


class Child:
    """One ``python -m services.<x>`` process in a process group of its own.

    Its own group means a Ctrl-C on the terminal reaches only run_local, which then stops the children in
    order; and a signal to the group also reaches anything the child started.
    """

    def __init__(self, name: str, module: str, env: Mapping[str, str], args: Sequence[str] = ()) -> None:
        self.name = name
        self.argv = [sys.executable, "-m", module, *args]
        self.env = dict(env)
        self.process: subprocess.Popen[bytes] | None = None
        self.reader: threading.Thread | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            self.argv,
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent if _PRCTL is not None else None,
        )

    def start_reader(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        stream = self.process.stdout
        self.reader = threading.Thread(target=self._copy_output, args=(stream,), daemon=True)
        self.reader.start()

    def _copy_output(self, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            OUTPUT.write_line(self.name, raw.decode("utf-8", errors="replace"))
        stream.close()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def poll(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def signal_group(self, signum: int) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signum)


def stop_children(children: Sequence[Child], timeout: float, signals: Signals) -> None:
    """SIGTERM to every child and wait up to ``timeout``; then SIGKILL what is left.

    Another Ctrl-C while waiting sends SIGTERM again (the services then skip the rest of their grace
    period); a third one, or the timeout, sends SIGKILL.
    """
    started = [child for child in children if child.process is not None]
    for child in started:
        child.signal_group(signal.SIGTERM)
    seen = signals.count
    deadline = time.monotonic() + timeout
    while any(child.poll() is None for child in started):
        if signals.count != seen:
            seen = signals.count
            if signals.count == 2:
                log("second signal: telling the processes to skip their grace period")
                for child in started:
                    if child.poll() is None:
                        child.signal_group(signal.SIGTERM)
        if signals.count >= 3 or time.monotonic() >= deadline:
            for child in started:
                if child.poll() is None:
                    log(f"{child.name} has not stopped: SIGKILL")
                    child.signal_group(signal.SIGKILL)
            break
        time.sleep(0.05)
    for child in started:
        assert child.process is not None
        child.process.wait()
        # Whatever else is left in the group (a handler's subprocess, say) goes too.
        child.signal_group(signal.SIGKILL)
        if child.reader is not None:
            child.reader.join(timeout=2)


def build_children(
    args: argparse.Namespace, ports: Ports, database_url: str, mail_sink: MailSink | None = None
) -> list[Child]:
    """The child processes; with a mail sink, the executors' send_email is pointed at it."""
    base = {**os.environ, "DATABASE_URL": database_url, "PYTHONUNBUFFERED": "1"}
    children = [Child("api", "services.api", {**base, "GRPC_PORT": str(ports.grpc), "HTTP_PORT": str(ports.http)})]
    if not args.no_scheduler:
        env = {**base, "METRICS_PORT": str(ports.scheduler_metrics)}
        children.append(Child("scheduler", "services.scheduler", env))
    executor_base = dict(base)
    if mail_sink is not None:
        for name in SMTP_SETTINGS_THE_SINK_REPLACES:
            executor_base.pop(name, None)
        executor_base.update(mail_sink.executor_env())
    for index, port in enumerate(ports.executor_metrics):
        name = "executor" if len(ports.executor_metrics) == 1 else f"executor-{index + 1}"
        children.append(Child(name, "services.executor", {**executor_base, "METRICS_PORT": str(port)}))
    return children


def api_scheme() -> str:
    """The api serves REST over TLS when TLS_CERT_FILE is set."""
    return "https" if os.environ.get("TLS_CERT_FILE", "").strip() else "http"


def api_healthy(http_port: int) -> bool:
    # The certificate may be self-signed: this only asks whether the process answers yet.
    context = ssl._create_unverified_context() if api_scheme() == "https" else None
    url = f"{api_scheme()}://127.0.0.1:{http_port}/health"
    try:
        with urllib.request.urlopen(url, timeout=0.5, context=context) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def print_banner(
    ports: Ports, children: Sequence[Child], database: str, elapsed: float, mail_sink: MailSink | None
) -> None:
    rest = f"{api_scheme()}://localhost:{ports.http}"
    grpcurl_tls = "-plaintext" if api_scheme() == "http" else "-insecure"
    auth = ""
    if os.environ.get("API_TOKENS", "").strip() or os.environ.get("API_TOKENS_FILE", "").strip():
        auth = ' -H "Authorization: Bearer $TOKEN"'
    lines = [
        f"ready in {elapsed:.1f}s; database: {database}",
        f"  REST     {rest}   (GET /health, GET /metrics, GET /admin/stats)",
        f"  gRPC     localhost:{ports.grpc}   (grpcurl {grpcurl_tls} localhost:{ports.grpc} list)",
    ]
    metrics = [
        f"{child.name} http://localhost:{child.env['METRICS_PORT']}/metrics"
        for child in children[1:]
        if child.env["METRICS_PORT"] != "0"
    ]
    if metrics:
        lines.append("  metrics  " + ", ".join(metrics))
    if mail_sink is not None:
        lines.append(
            f"  mail     send_email delivers to the mail sink ({MAIL_SINK_HOST}:{mail_sink.port}), which keeps each "
            f"message in {mail_sink.mail_dir}; set SMTP_HOST for a real server"
        )
    lines += [
        "  try:",
        f"    curl -s{auth} -X POST {rest}/jobs -H 'Content-Type: application/json' \\",
        f"         -d '{SEND_EMAIL_EXAMPLE}'",
        f"    curl -s{auth} {rest}/jobs/1",
        f"    curl -s{auth} '{rest}/jobs?status=COMPLETED'",
        f"    curl -s{auth} {rest}/admin/stats",
        "  Ctrl-C stops everything (a second Ctrl-C skips the executors' grace period for running jobs).",
    ]
    for line in lines:
        log(line)


# --- the run ------------------------------------------------------------------------------------------


class Signals:
    """SIGINT, SIGTERM and SIGHUP ask for a stop; later ones hurry it along (see stop_children)."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.count = 0
        self.name = ""

    def install(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1
        self.name = self.name or signal.Signals(signum).name
        self.stop.set()


def describe_exit(code: int) -> str:
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


def supervise(
    children: Sequence[Child],
    signals: Signals,
    ports: Ports,
    database: str,
    started: float,
    mail_sink: MailSink | None = None,
) -> int:
    """Wait for a stop signal or for a child to exit; print the banner once the API answers /health."""
    ready = False
    warned = False
    while not signals.stop.wait(SUPERVISE_INTERVAL_SECONDS):
        for child in children:
            code = child.poll()
            if code is not None:
                log(f"{child.name} exited unexpectedly ({describe_exit(code)}); stopping the others")
                return EXIT_CHILD_FAILED
        if not ready:
            ready = api_healthy(ports.http)
            elapsed = time.monotonic() - started
            if ready:
                print_banner(ports, children, database, elapsed, mail_sink)
            elif elapsed > READY_WARNING_SECONDS and not warned:
                warned = True
                log(f"the api does not answer {api_scheme()}://127.0.0.1:{ports.http}/health after {elapsed:.0f}s")
    log(f"{signals.name} received: stopping")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    started = time.monotonic()
    try:
        settings, args = parse_args(argv)
        ports = resolve_ports(settings)
        stop_timeout = settings.stop_seconds()
    except SettingsError as error:
        print(f"run_local: {error}", file=sys.stderr)
        return EXIT_BAD_SETTINGS
    busy = [f"{name}={port}" for name, port in ports.all() if port_in_use(port)]
    if busy:
        print(
            f"run_local: port already in use: {', '.join(busy)} (another `make run`?). "
            "Stop it, or choose other ports with GRPC_PORT, HTTP_PORT, --scheduler-metrics-port "
            "and --executor-metrics-port.",
            file=sys.stderr,
        )
        return EXIT_BAD_SETTINGS

    signals = Signals()
    signals.install()
    embedded: EmbeddedPostgres | None = None
    mail_sink: MailSink | None = None
    children: list[Child] = []
    code = EXIT_CHILD_FAILED
    try:
        database_url = os.environ.get("DATABASE_URL", "").strip()
        if database_url:
            database = f"DATABASE_URL={redact(database_url)}"
        else:
            embedded = EmbeddedPostgres(Path(settings.data_dir))
            database_url = embedded.start()
            database = f"embedded PostgreSQL, DATABASE_URL={database_url}"
        if not signals.stop.is_set():
            log("applying migrations (jobservice migrate)")
            apply_migrations(database_url)
        if signals.stop.is_set():
            code = EXIT_OK
            return code
        if settings.executors and not smtp_host_set():
            mail_sink = MailSink(Path(settings.mail_dir))
            mail_sink.start()
            OUTPUT.register("mail")
        children = build_children(args, ports, database_url, mail_sink)
        for child in children:
            OUTPUT.register(child.name)
        # Every fork happens before the first reader thread starts: preexec_fn is not thread-safe.
        for child in children:
            child.start()
        for child in children:
            child.start_reader()
            log(f"started {child.name} (pid {child.pid}): {' '.join(child.argv[1:])}")
        code = supervise(children, signals, ports, database, started, mail_sink)
        return code
    except StartError as error:
        log(str(error))
        return code
    finally:
        if children:
            stop_children(children, stop_timeout, signals)
        if mail_sink is not None:
            mail_sink.stop()
        if embedded is not None:
            embedded.stop(EMBEDDED_STOP_TIMEOUT_SECONDS)
        log("all stopped" if code == EXIT_OK else "stopped after a failure (see above)")


if __name__ == "__main__":
    sys.exit(main())
