# PYTHON_ARGCOMPLETE_OK
"""``jobctl``: the job service from a shell. ``jobctl --help`` lists the commands; ``--json`` everywhere.

Exit codes: 0 success; 1 the service refused or the job did not succeed (not found, conflict, a finished
job that cannot be cancelled; ``watch``: the job FAILED or was CANCELLED); 2 bad input, bad usage, no
(valid) token, or the service cannot be reached; 3 ``watch --timeout`` ran out; 130 interrupted.
Errors are one line on stderr, never a traceback. Tab completion comes from argcomplete, when it is
installed (``pip install 'jobclient[completion]'``; see the client's README).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta, timezone
from itertools import islice
from pathlib import Path
from typing import Any, NoReturn, TextIO

from jobclient import __version__
from jobclient._channel import DEFAULT_TARGET
from jobclient.client import JobClient
from jobclient.errors import (
    DeadlineExceeded,
    InvalidArgument,
    JobClientError,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
    WaitTimeout,
)
from jobclient.models import Job, JobFilter, JobSpec, JobStatus, JobType, Schedule, Stats, TypeLimits
from jobclient.retry import RetryPolicy

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_TIMEOUT", "EXIT_USAGE", "build_parser", "main"]

PROG = "jobctl"
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_TIMEOUT = 3
EXIT_INTERRUPTED = 130

# A person waits at the prompt: give up on an unreachable server within about a second...
CLI_RETRY = RetryPolicy(max_attempts=3, initial_backoff=0.25, max_backoff=1.0, max_elapsed=30.0)
# ...but a watch that was under way rides out an api restart.
WATCH_RETRY = RetryPolicy(max_attempts=12, initial_backoff=0.25, max_backoff=2.0, max_elapsed=60.0)
DEFAULT_LIST_LIMIT = 20


class UsageError(Exception):
    """Bad input on the command line: one line on stderr, exit 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


# -- arguments ---------------------------------------------------------------------------------------------


def _connection_options(parser: argparse.ArgumentParser, defaults: bool) -> None:
    """The options every command takes, before or after its name. Only the top level sets defaults, so a
    subcommand's absent option does not overwrite a value given before the command."""

    def default(value: Any) -> Any:
        return value if defaults else argparse.SUPPRESS

    group = parser.add_argument_group("connection and output")
    group.add_argument(
        "--server",
        metavar="HOST:PORT",
        default=default(os.environ.get("JOBCTL_SERVER") or DEFAULT_TARGET),
        help=f"the api's gRPC address (JOBCTL_SERVER, default {DEFAULT_TARGET})",
    )
    group.add_argument(
        "--token",
        default=default(os.environ.get("JOBCTL_TOKEN") or None),
        help="bearer token sent with every call (JOBCTL_TOKEN)",
    )
    group.add_argument(
        "--tls",
        action="store_true",
        default=default(_env_flag("JOBCTL_TLS")),
        help="connect over TLS, trusting the default roots (JOBCTL_TLS=1)",
    )
    group.add_argument(
        "--ca-cert",
        metavar="PEM",
        default=default(os.environ.get("JOBCTL_CA_CERT") or None),
        help="trust this CA certificate file; implies --tls (JOBCTL_CA_CERT)",
    )
    group.add_argument(
        "--deadline",
        type=_positive_float,
        metavar="SECONDS",
        default=default(10.0),
        help="how long each call may take (default 10)",
    )
    group.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help="machine-readable output: one JSON document (watch: one JSON object per line)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Submit, inspect and manage jobs of the job service over gRPC.",
        epilog="Exit codes: 0 ok; 1 refused by the service, or (watch) the job failed or was cancelled; "
        "2 bad input, usage, authentication, or the service cannot be reached; 3 watch --timeout ran out.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _connection_options(parser, defaults=True)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        _connection_options(sub, defaults=False)
        return sub

    submit = command("submit", "submit a job and print it")
    submit.add_argument("type", help="the job type (handler name)")
    submit.add_argument(
        "payload",
        nargs="?",
        default="{}",
        help="the payload: a JSON object, '@FILE' to read one from a file, or '-' for stdin (default {})",
    )
    submit.add_argument("--key", "--idempotency-key", dest="key", help="idempotency key (default: a random one)")
    submit.add_argument("--priority", type=int, help="1 (highest) to 10 (lowest); default 5")
    when = submit.add_mutually_exclusive_group()
    when.add_argument("--run-at", metavar="TIME", help="run no earlier than this ISO 8601 time (UTC if no offset)")
    when.add_argument("--delay", type=_non_negative_float, metavar="SECONDS", help="run no earlier than this from now")
    submit.add_argument("--max-attempts", type=int, metavar="N", help="1-100; default 3")
    submit.add_argument("--timeout-seconds", type=int, metavar="N", help="time limit of one attempt")
    submit.add_argument(
        "--depends-on",
        type=_job_id,
        action="append",
        default=[],
        metavar="JOB_ID",
        help="wait until this job COMPLETED (repeatable); cancelled if it FAILED or was cancelled",
    )
    submit.add_argument("--callback-url", metavar="URL", help="POST the finished job to this http(s) URL")
    submit.add_argument("--concurrency-key", metavar="KEY", help="the key per-key concurrency limits count by")
    submit.add_argument(
        "--unique-key", metavar="KEY", help="while an unfinished job has this key, return it instead of a new one"
    )
    submit.add_argument(
        "--fairness-key",
        metavar="KEY",
        help="fair share, e.g. a tenant id: jobs of one type and priority are leased round-robin across keys",
    )

    get = command("get", "show one job")
    get.add_argument("job_id", type=_job_id)

    listing = command("list", "list jobs, newest first")
    _filter_options(listing)
    listing.add_argument(
        "--limit",
        type=_non_negative_int,
        default=DEFAULT_LIST_LIMIT,
        metavar="N",
        help=f"at most N jobs (default {DEFAULT_LIST_LIMIT}; 0 for all)",
    )

    watch = command("watch", "print the job after every change until it finishes; exit 0 if it COMPLETED, else 1")
    watch.add_argument("job_id", type=_job_id)
    watch.add_argument("--timeout", type=_positive_float, metavar="SECONDS", help="give up (exit 3) after this long")

    attempts = command("attempts", "every attempt of a job: executor, duration, outcome, and each failure's traceback")
    attempts.add_argument("job_id", type=_job_id)

    for name, what in (
        ("cancel", "cancel a job (a running one is stopped by its executor), or every job the filter options select"),
        ("retry", "re-queue a FAILED or CANCELLED job, or every such job the filter options select"),
    ):
        action = command(name, what)
        action.add_argument("job_id", type=_job_id, nargs="?", help="the job; leave out to act on a filter instead")
        _filter_options(action)
        action.add_argument("-y", "--yes", action="store_true", help="with a filter: do not ask for confirmation")

    command("stats", "counts by status and type, and the latest failures")

    def group(name: str, help_text: str) -> Callable[[str, str], argparse.ArgumentParser]:
        actions = command(name, help_text).add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
        actions.required = True

        def action(action_name: str, action_help: str) -> argparse.ArgumentParser:
            sub = actions.add_parser(action_name, help=action_help, description=action_help)
            _connection_options(sub, defaults=False)
            return sub

        return action

    limits = group("limits", "rate and concurrency limits per job type, enforced across all executors")
    limits("list", "show the limits of every limited type")
    set_limits = limits("set", "replace the limits of a type (an option left out means no limit on it)")
    set_limits.add_argument("type", help="the job type")
    set_limits.add_argument("--max-running", type=int, metavar="N", help="at most N PROCESSING at once")
    set_limits.add_argument(
        "--max-running-per-key", type=int, metavar="N", help="at most N PROCESSING at once per concurrency key"
    )
    set_limits.add_argument(
        "--rate", type=_rate, metavar="N/SECONDS", help="at most N starts in any window, e.g. 100/60"
    )
    delete_limits = limits("delete", "remove every limit of a type")
    delete_limits.add_argument("type", help="the job type")

    schedules = group("schedules", "periodic (cron) schedules the scheduler turns into jobs")
    schedules("list", "show every schedule with its next run")
    get_schedule = schedules("get", "show one schedule")
    get_schedule.add_argument("name")
    create = schedules("create", "create a schedule that submits a job at each occurrence of a cron expression")
    create.add_argument("name", help="1-128 characters of a-z 0-9 _ . -")
    create.add_argument("--cron", required=True, help="five fields: minute hour day-of-month month day-of-week")
    create.add_argument("--time-zone", default="UTC", help="IANA time zone the cron expression is read in")
    _schedule_job_options(create, required=True)
    update = schedules(
        "update",
        "change a schedule's cron, time zone or job (any job option replaces the whole job: give --type)",
    )
    update.add_argument("name")
    update.add_argument("--cron", help="a new cron expression; the next run moves to its first occurrence")
    update.add_argument("--time-zone", help="a new IANA time zone for the cron expression")
    _schedule_job_options(update, required=False)
    for action_name, action_help in (
        ("pause", "hold a schedule: it submits nothing until resumed"),
        ("resume", "let a paused schedule run again (what it missed fires once, for the latest occurrence)"),
        ("trigger", "submit one job of the schedule now and print it"),
        ("delete", "delete a schedule (jobs it already submitted are left alone)"),
    ):
        schedules(action_name, action_help).add_argument("name")

    command("types", "every job type with its jobs by status, its limits and whether it is paused")
    pause = command("pause", "pause a job type on every executor: submits are accepted, nothing new starts")
    pause.add_argument("type", help="the job type")
    resume = command("resume", "resume a paused job type: executors start its READY jobs at once")
    resume.add_argument("type", help="the job type")
    command("executors", "the executors alive now: host, pid, types, jobs running, last heartbeat")
    return parser


def _schedule_job_options(parser: argparse.ArgumentParser, required: bool) -> None:
    """The job a schedule submits, as ``schedules create`` and ``schedules update`` take it."""
    parser.add_argument("--type", dest="job_type", required=required, metavar="TYPE", help="the job type to submit")
    parser.add_argument(
        "--payload",
        default="{}" if required else None,
        help="the jobs' payload: a JSON object, '@FILE', or '-' for stdin (default {})",
    )
    parser.add_argument("--priority", type=int, help="1 (highest) to 10 (lowest); default 5")
    parser.add_argument("--max-attempts", type=int, metavar="N", help="1-100; default 3")
    parser.add_argument("--timeout-seconds", type=int, metavar="N", help="time limit of one attempt")
    parser.add_argument(
        "--unique-key", metavar="KEY", help="skip an occurrence while the previous job with this key is unfinished"
    )


# The filter options of list, cancel and retry, as (option, attribute, metavar, help); status and type
# come first, with their own parsing.
_FILTER_OPTIONS = (
    ("--idempotency-key", "idempotency_key", "KEY", "the job submitted with this idempotency key"),
    ("--unique-key", "unique_key", "KEY", "only jobs with this unique key (finished ones too)"),
    ("--concurrency-key", "concurrency_key", "KEY", "only jobs with this concurrency key"),
    ("--fairness-key", "fairness_key", "KEY", "only jobs with this fairness key (one tenant's jobs)"),
    ("--schedule", "schedule", "NAME", "only jobs the periodic schedule NAME submitted"),
    ("--created-after", "created_after", "TIME", "only jobs created at or after this ISO 8601 time (UTC if no offset)"),
    ("--created-before", "created_before", "TIME", "only jobs created before this ISO 8601 time"),
)


def _filter_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("filter (every option given must match)")
    status = group.add_argument("--status", type=_status, help="only jobs in this status (" + _status_names() + ")")
    # What tab completion offers (argcomplete reads an action's ``completer``); parsing stays case-blind.
    status.completer = lambda **_: [s.value for s in JobStatus]  # type: ignore[attr-defined]
    group.add_argument("--type", dest="job_type", metavar="TYPE", help="only jobs of this type")
    for option, dest, metavar, help_text in _FILTER_OPTIONS:
        group.add_argument(option, dest=dest, metavar=metavar, help=help_text)


def _filter(args: argparse.Namespace) -> JobFilter:
    values = {dest: getattr(args, dest) for _, dest, _, _ in _FILTER_OPTIONS}
    for name in ("created_after", "created_before"):
        if values[name] is not None:
            values[name] = _time(values[name], "--" + name.replace("_", "-"))
    return JobFilter(status=args.status, type=args.job_type, **values)


def _rate(text: str) -> tuple[int, int]:
    count, _, period = text.partition("/")
    try:
        return int(count), int(period or "60")
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or N/SECONDS, e.g. 100/60, got {text!r}") from None


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _job_id(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"job id must be a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"job id must be positive, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _status_names() -> str:
    return ", ".join(status.value for status in JobStatus)


def _status(text: str) -> JobStatus:
    try:
        return JobStatus(text.strip().upper())
    except ValueError:
        raise argparse.ArgumentTypeError(f"unknown status {text!r}; one of {_status_names()}") from None


def _payload(text: str, stdin: TextIO) -> dict[str, Any]:
    if text == "-":
        source, raw = "stdin", stdin.read()
    elif text.startswith("@"):
        source = text[1:]
        try:
            raw = Path(source).read_text()
        except OSError as exc:
            raise UsageError(f"cannot read the payload file {source!r}: {exc.strerror}") from None
    else:
        source, raw = "payload", text
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{source} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise UsageError(f"the payload must be a JSON object ({{...}}), got {_json_kind(value)}")
    return value


def _json_kind(value: Any) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _run_at(args: argparse.Namespace) -> datetime | None:
    if args.delay is not None:
        return datetime.now(timezone.utc) + timedelta(seconds=args.delay)
    return None if args.run_at is None else _time(args.run_at, "--run-at")


def _time(given: str, option: str) -> datetime:
    """An ISO 8601 time from the command line (UTC when it has no offset); UsageError names the option."""
    text = given.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{option} {given!r} is not an ISO 8601 time (e.g. 2026-12-01T15:00:00Z)") from None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


# -- output ------------------------------------------------------------------------------------------------


def _when(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def _short(text: str | None, width: int) -> str:
    if not text:
        return ""
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"


def _table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    cells = [[str(c) for c in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells)


def _job_detail(job: Job) -> str:
    rows: list[tuple[str, Any]] = [
        ("job_id", job.job_id),
        ("type", job.type),
        ("status", job.status.value + (" (cancel requested)" if job.cancel_requested else "")),
        ("priority", job.priority),
        ("attempts", f"{job.attempts}/{job.max_attempts}"),
        ("timeout", f"{job.timeout_seconds}s"),
        ("idempotency_key", job.idempotency_key or "-"),
        ("created_at", _when(job.created_at)),
        ("updated_at", _when(job.updated_at)),
        ("run_at", _when(job.run_at)),
        ("scheduled_at", _when(job.scheduled_at)),
        ("started_at", _when(job.started_at)),
        ("finished_at", _when(job.finished_at)),
        ("payload", json.dumps(job.payload, sort_keys=True)),
        ("result", json.dumps(job.result, sort_keys=True) if job.result is not None else "-"),
        ("error", job.error_message or "-"),
        ("progress", f"{job.progress.percent}% {job.progress.message}".strip() if job.progress else "-"),
    ]
    if job.depends_on:
        rows.append(("depends_on", ", ".join(map(str, job.depends_on)) + f" ({job.pending_dependencies} pending)"))
    if job.callback is not None:
        callback = job.callback
        state = f"{callback.state}, {callback.attempts} attempt(s)"
        if callback.last_error and callback.state != "DELIVERED":
            state += f", last error: {_short(callback.last_error, 80)}"
        rows.append(("callback", f"{callback.url} ({state})"))
    for name in ("concurrency_key", "unique_key", "fairness_key", "schedule"):
        if getattr(job, name) is not None:
            rows.append((name, getattr(job, name)))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name.ljust(width)}  {value}" for name, value in rows)


def _watch_line(job: Job) -> str:
    """What changed, for people; the time is the job's updated_at."""
    return f"{_when(job.updated_at)}  {_watch_state(job)}"


def _watch_state(job: Job) -> str:
    parts = [f"job {job.job_id}", job.status.value, f"attempt {job.attempts}/{job.max_attempts}"]
    if job.cancel_requested and not job.finished:
        parts.append("cancel requested")
    if job.progress is not None and job.status is JobStatus.PROCESSING:
        parts.append(
            f"{job.progress.percent}%" + (f" {_short(job.progress.message, 100)}" if job.progress.message else "")
        )
    if job.error_message:
        parts.append(f"error: {_short(job.error_message, 200)}")
    if job.status is JobStatus.COMPLETED and job.result is not None:
        parts.append(f"result: {_short(json.dumps(job.result, sort_keys=True), 200)}")
    return "  ".join(parts)


def _stats_text(stats: Stats) -> str:
    blocks = [
        _table(["STATUS", "JOBS"], [*stats.status_breakdown.items(), ("total", stats.total)]),
        _table(["TYPE", "JOBS"], stats.type_breakdown.items()) if stats.type_breakdown else "no jobs",
        f"average attempts of failed jobs: {stats.avg_attempts_for_failed_jobs:.2f}",
    ]
    if stats.recent_failures:
        blocks.append(
            "recent failures:\n"
            + _table(
                ["ID", "TYPE", "ATTEMPTS", "FAILED AT", "ERROR"],
                [
                    (f.job_id, f.type, f.attempts, _when(f.failed_at), _short(f.error, 60))
                    for f in stats.recent_failures
                ],
            )
        )
    return "\n\n".join(blocks)


def _emit_json(out: TextIO, value: Any) -> None:
    out.write(json.dumps(value, sort_keys=False) + "\n")
    out.flush()


# -- commands ----------------------------------------------------------------------------------------------


def _submit(client: JobClient, args: argparse.Namespace, out: TextIO) -> int:
    payload = _payload(args.payload, sys.stdin)
    job = client.submit(
        args.type,
        payload,
        idempotency_key=args.key,
        priority=args.priority,
        run_at=_run_at(args),
        max_attempts=args.max_attempts,
        timeout=args.timeout_seconds,
        depends_on=args.depends_on,
        callback_url=args.callback_url,
        concurrency_key=args.concurrency_key,
        unique_key=args.unique_key,
        fairness_key=args.fairness_key,
    )
    if args.json:
        _emit_json(out, job.to_dict())
    elif job.created:
        when = f", runs at {_when(job.run_at)}" if job.status is JobStatus.PENDING else ""
        out.write(f"job {job.job_id} submitted: {job.status.value} (type {job.type}, priority {job.priority}{when})\n")
    elif args.unique_key is not None and job.unique_key == args.unique_key and job.idempotency_key != args.key:
        out.write(f"job {job.job_id} with unique key {job.unique_key!r} is still {job.status.value}: merged into it\n")
    else:
        out.write(
            f"job {job.job_id} already existed with idempotency key {job.idempotency_key!r}: {job.status.value}\n"
        )
    return EXIT_OK


def _get(client: JobClient, args: argparse.Namespace, out: TextIO) -> int:
    job = client.get(args.job_id)
    out.write((json.dumps(job.to_dict()) if args.json else _job_detail(job)) + "\n")
    return EXIT_OK


def _list(client: JobClient, args: argparse.Namespace, out: TextIO) -> int:
    limit = args.limit or None
    page_size = min(limit, 500) if limit else 500
    filter = _filter(args)
    listed = client.list(
        status=filter.status,
        type=filter.type,
        page_size=page_size,
        idempotency_key=filter.idempotency_key,
        unique_key=filter.unique_key,
        concurrency_key=filter.concurrency_key,
        schedule=filter.schedule,
        created_after=filter.created_after,
        created_before=filter.created_before,
        fairness_key=filter.fairness_key,
    )
    jobs = list(islice(listed, limit))
    if args.json:
        _emit_json(out, [job.to_dict() for job in jobs])
        return EXIT_OK
    if not jobs:
        out.write("no jobs\n")
        return EXIT_OK
    rows = [
        (
            job.job_id,
            job.type,
            job.status.value,
            job.priority,
            f"{job.attempts}/{job.max_attempts}",
            _when(job.created_at),
            _short(job.error_message, 50),
        )
        for job in jobs
    ]
    out.write(_table(["ID", "TYPE", "STATUS", "PRI", "ATTEMPTS", "CREATED", "ERROR"], rows) + "\n")
    return EXIT_OK


def _watch(client: JobClient, args: argparse.Namespace, out: TextIO) -> int:
    last: Job | None = None
    shown = ""
    client.get(args.job_id)  # fails fast when the server is unreachable or the job unknown
    try:
        for job in client.watch(args.job_id, timeout=args.timeout, retry=WATCH_RETRY):
            last = job
            if args.json:
                _emit_json(out, job.to_dict())
            elif _watch_state(job) != shown:  # heartbeats change only updated_at: nothing to show people
                shown = _watch_state(job)
                out.write(_watch_line(job) + "\n")
                out.flush()
    except WaitTimeout as exc:
        _error(str(exc))
        return EXIT_TIMEOUT
    assert last is not None
    return EXIT_OK if last.status is JobStatus.COMPLETED else EXIT_FAILED


def _attempts(client: JobClient, args: argparse.Namespace, out: TextIO) -> int:
    attempts = client.attempts(args.job_id)
    if args.json:
        _emit_json(out, [attempt.to_dict() for attempt in attempts])
        return EXIT_OK
    if not attempts:
        out.write(f"job {args.job_id} has not run yet\n")
        return EXIT_OK
    rows = [
        (
            attempt.attempt,
            attempt.outcome,
            attempt.executor_id or "-",
            _when(attempt.started_at),
            f"{attempt.duration.total_seconds():.3f}s" if attempt.duration is not None else "-",
            _short(attempt.error_message, 60),
        )
        for attempt in attempts
    ]
    out.write(_table(["ATTEMPT", "OUTCOME", "EXECUTOR", "STARTED", "DURATION", "ERROR"], rows) + "\n")
    for attempt in attempts:
        if attempt.traceback:
            out.write(f"\nattempt {attempt.attempt} ({attempt.error_type or attempt.outcome}):\n")
            out.write(attempt.traceback.rstrip("\n") + "\n")
    return EXIT_OK


def _bulk(args: argparse.Namespace, out: TextIO, verb: tuple[str, str, str], action: Callable[..., int]) -> int:
    """cancel/retry with filter options: count, confirm, act with a progress line, report."""
    present, progressive, past = verb
    filter = _filter(args)
    if filter.empty:
        raise UsageError(f"give a job id, or filter options (--type, --status...) to {present} every job they select")
    matching = action(filter, validate_only=True)
    what = f"job{'' if matching == 1 else 's'} matching {filter.describe()}"
    if not matching:
        if args.json:
            _emit_json(out, {"count": 0})
        else:
            out.write(f"no {what}: nothing to {present}\n")
        return EXIT_OK
    if not args.yes and not _confirm(f"{present.capitalize()} {matching} {what}? [y/N] "):
        _error(f"not confirmed: nothing was {past} (--yes skips the question)")
        return EXIT_FAILED
    started = time.monotonic()
    with _Progress(f"{progressive} {matching} {what}", shown=not args.json):
        count = action(filter)
    if args.json:
        _emit_json(out, {"count": count})
    else:
        out.write(f"{past} {count} job{'' if count == 1 else 's'} in {time.monotonic() - started:.1f} s\n")
    return EXIT_OK


def _confirm(question: str) -> bool:
    sys.stderr.write(question)
    sys.stderr.flush()
    answer = sys.stdin.readline()
    if not answer:
        sys.stderr.write("\n")
    return answer.strip().lower() in {"y", "yes"}


class _Progress:
    """A line on stderr while a long call runs: rewritten every half second on a terminal ("… 12 s"),
    written once otherwise; none when not ``shown`` (--json: scripts read stdout, and stderr stays empty
    unless something went wrong)."""

    def __init__(self, text: str, shown: bool = True) -> None:
        self._text = text
        self._shown = shown
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._tty = shown and sys.stderr.isatty()

    def __enter__(self) -> _Progress:
        if self._tty:
            self._thread.start()
        elif self._shown:
            sys.stderr.write(f"{self._text}…\n")
            sys.stderr.flush()
        return self

    def _run(self) -> None:
        started = time.monotonic()
        while True:
            sys.stderr.write(f"\r{self._text}… {time.monotonic() - started:.0f} s")
            sys.stderr.flush()
            if self._done.wait(0.5):
                return

    def __exit__(self, *exc: object) -> None:
        if self._tty:
            self._done.set()
            self._thread.join()
            sys.stderr.write("\n")
            sys.stderr.flush()


def _cancel(client: JobClient, args: argparse.Namespace, out: TextIO) -> int:
    if args.job_id is None:
        return _bulk(args, out, ("cancel", "cancelling", "cancelled"), client.cancel_jobs)
    _single_job(args)
    job = client.cancel(args.job_id)
    if args.json:
        _emit_json(out, job.to_dict())
    elif job.status is JobStatus.CANCELLED:
        out.write(f"job {job.job_id} CANCELLED\n")
    else:
        out.write(f"job {job.job_id} is {job.status.value}: cancel requested, its executor will stop it\n")
    return EXIT_OK


def _single_job(args: argparse.Namespace) -> None:
    if not _filter(args).empty:
        raise UsageError(f"{args.command} takes a job id or filter options, not both")


def _retry(client: JobClient, args: argparse.Namespace, out: TextIO) -> int:
    if args.job_id is None:
        return _bulk(args, out, ("retry", "retrying", "re-queued"), client.retry_jobs)
    _single_job(args)
    job = client.retry(args.job_id)
    if args.json:
        _emit_json(out, job.to_dict())
    else:
        out.write(f"job {job.job_id} re-queued: {job.status.value}\n")
    return EXIT_OK


def _stats(client: JobClient, args: argparse.Namespace, out: TextIO) -> int:
    stats = client.stats()
    if args.json:
        _emit_json(out, stats.to_dict())
    else:
        out.write(_stats_text(stats) + "\n")
    return EXIT_OK


def _limits_list(client: JobClient, args: argparse.Namespace, out: TextIO) -> int:
    limits = client.list_limits()
    if args.json:
        _emit_json(out, [item.to_dict() for item in limits])
    elif not limits:
        out.write("no limits\n")
    else:
        out.write(_limits_table(limits) + "\n")
    return EXIT_OK


def _limits_table(limits: Sequence[TypeLimits]) -> str:
    def value(number: int | None) -> str:
        return "-" if number is None else str(number)

    rows = [
        (
            item.type,
            value(item.max_running),
            value(item.max_running_per_key),
            f"{item.rate_limit}/{item.rate_period_seconds or 60}s" if item.rate_limit is not None else "-",
        )
        for item in limits
    ]
    return _table(["TYPE", "MAX RUNNING", "PER KEY", "RATE"], rows)


def _limits_set(client: JobClient, args: argparse.Namespace, out: TextIO) -> int:
    rate, period = args.rate if args.rate is not None else (None, None)
    limits = client.set_limits(
        args.type,
        max_running=args.max_running,
        max_running_per_key=args.max_running_per_key,
        rate_limit=rate,
        rate_period_seconds=period,
    )
    out.write((json.dumps(limits.to_dict()) if args.json else _limits_table([limits])) + "\n")
    return EXIT_OK


def _limits_delete(client: JobClient, args: argparse.Namespace, out: TextIO) -> int:
    client.delete_limits(args.type)
    out.write(json.dumps({"deleted": args.type}) + "\n" if args.json else f"limits of {args.type} deleted\n")
    return EXIT_OK


def _schedules_table(schedules: Sequence[Schedule]) -> str:
    rows = [
        (
            s.name,
            s.cron,
            s.time_zone,
            s.job.type,
            "paused" if s.paused else _when(s.next_run_at),
            _when(s.last_run_at),
            s.last_job_id or "-",
        )
        for s in schedules
    ]
    return _table(["NAME", "CRON", "TIME ZONE", "TYPE", "NEXT RUN", "LAST RUN", "LAST JOB"], rows)


def _schedules_list(client: JobClient, args: argparse.Namespace, out: TextIO) -> int:
    schedules = client.list_schedules()
    if args.json:
        _emit_json(out, [item.to_dict() for item in schedules])
    elif not schedules:
        out.write("no schedules\n")
    else:
        out.write(_schedules_table(schedules) + "\n")
    return EXIT_OK


def _schedules_get(client: JobClient, args: argparse.Namespace, out: TextIO) -> int:
    return _print_schedule(client.get_schedule(args.name), args, out)


def _schedule_job(args: argparse.Namespace) -> JobSpec | None:
    """The job options of ``schedules create|update`` as a JobSpec; None when none was given (update)."""
    options = (args.payload, args.priority, args.max_attempts, args.timeout_seconds, args.unique_key)
    if args.job_type is None:
        if any(value is not None for value in options):
            raise UsageError("the job options replace the whole job: give --type too")
        return None
    return JobSpec(
        args.job_type,
        _payload(args.payload or "{}", sys.stdin),
        priority=args.priority,
        max_attempts=args.max_attempts,
        timeout=args.timeout_seconds,
        unique_key=args.unique_key,
    )


def _schedules_create(client: JobClient, args: argparse.Namespace, out: TextIO) -> int:
    job = _schedule_job(args)
    assert job is not None  # --type is required
    schedule = client.create_schedule(args.name, args.cron, job, time_zone=args.time_zone)
    if args.json:
        _emit_json(out, schedule.to_dict())
    else:
        out.write(f"schedule {schedule.name} created: next run at {_when(schedule.next_run_at)}\n")
    return EXIT_OK


def _schedules_delete(client: JobClient, args: argparse.Namespace, out: TextIO) -> int:
    client.delete_schedule(args.name)
    out.write(json.dumps({"deleted": args.name}) + "\n" if args.json else f"schedule {args.name} deleted\n")
    return EXIT_OK


def _schedules_update(client: JobClient, args: argparse.Namespace, out: TextIO) -> int:
    job = _schedule_job(args)
    if args.cron is None and args.time_zone is None and job is None:
        raise UsageError("nothing to change: give --cron, --time-zone or the job options (--type ...)")
    schedule = client.update_schedule(args.name, cron=args.cron, time_zone=args.time_zone, job=job)
    return _print_schedule(schedule, args, out)


def _schedules_pause(client: JobClient, args: argparse.Namespace, out: TextIO) -> int:
    return _print_schedule(client.pause_schedule(args.name), args, out)


def _schedules_resume(client: JobClient, args: argparse.Namespace, out: TextIO) -> int:
    return _print_schedule(client.resume_schedule(args.name), args, out)


def _print_schedule(schedule: Schedule, args: argparse.Namespace, out: TextIO) -> int:
    out.write((json.dumps(schedule.to_dict()) if args.json else _schedules_table([schedule])) + "\n")
    return EXIT_OK


def _schedules_trigger(client: JobClient, args: argparse.Namespace, out: TextIO) -> int:
    job = client.trigger_schedule(args.name)
    out.write((json.dumps(job.to_dict()) if args.json else _job_detail(job)) + "\n")
    return EXIT_OK


def _types_table(types: Sequence[JobType]) -> str:
    shown = ("READY", "PROCESSING", "PENDING", "WAITING", "COMPLETED", "FAILED", "CANCELLED")
    rows = [
        (
            item.type,
            "paused" if item.paused else "-",
            *(item.counts.get(status, 0) for status in shown),
            _limits_text(item.limits) if item.limits is not None else "-",
        )
        for item in types
    ]
    return _table(["TYPE", "PAUSED", *shown, "LIMITS"], rows)


def _limits_text(limits: TypeLimits) -> str:
    parts = []
    if limits.max_running is not None:
        parts.append(f"max_running={limits.max_running}")
    if limits.max_running_per_key is not None:
        parts.append(f"per_key={limits.max_running_per_key}")
    if limits.rate_limit is not None:
        parts.append(f"rate={limits.rate_limit}/{limits.rate_period_seconds or 60}s")
    return ",".join(parts)


def _types(client: JobClient, args: argparse.Namespace, out: TextIO) -> int:
    types = list(client.list_types())
    if args.json:
        _emit_json(out, [item.to_dict() for item in types])
    elif not types:
        out.write("no job types\n")
    else:
        out.write(_types_table(types) + "\n")
    return EXIT_OK


def _pause(client: JobClient, args: argparse.Namespace, out: TextIO) -> int:
    return _print_type(client.pause_type(args.type), "paused: no new attempt starts", args, out)


def _resume(client: JobClient, args: argparse.Namespace, out: TextIO) -> int:
    return _print_type(client.resume_type(args.type), "resumed", args, out)


def _print_type(job_type: JobType, what: str, args: argparse.Namespace, out: TextIO) -> int:
    out.write((json.dumps(job_type.to_dict()) if args.json else f"job type {job_type.type} {what}") + "\n")
    return EXIT_OK


def _executors(client: JobClient, args: argparse.Namespace, out: TextIO) -> int:
    executors = client.list_executors()
    if args.json:
        _emit_json(out, [item.to_dict() for item in executors])
    elif not executors:
        out.write("no executors\n")
    else:
        rows = [
            (
                item.executor_id,
                item.host,
                item.pid,
                f"{item.running}/{item.concurrency}",
                ",".join(item.types),
                _when(item.started_at),
                _when(item.last_seen_at),
            )
            for item in executors
        ]
        out.write(_table(["EXECUTOR", "HOST", "PID", "RUNNING", "TYPES", "STARTED", "LAST SEEN"], rows) + "\n")
    return EXIT_OK


COMMANDS: dict[str, Callable[[JobClient, argparse.Namespace, TextIO], int]] = {
    "submit": _submit,
    "get": _get,
    "list": _list,
    "watch": _watch,
    "attempts": _attempts,
    "cancel": _cancel,
    "retry": _retry,
    "stats": _stats,
    "limits list": _limits_list,
    "limits set": _limits_set,
    "limits delete": _limits_delete,
    "schedules list": _schedules_list,
    "schedules get": _schedules_get,
    "schedules create": _schedules_create,
    "schedules update": _schedules_update,
    "schedules pause": _schedules_pause,
    "schedules resume": _schedules_resume,
    "schedules trigger": _schedules_trigger,
    "schedules delete": _schedules_delete,
    "types": _types,
    "pause": _pause,
    "resume": _resume,
    "executors": _executors,
}


# -- main --------------------------------------------------------------------------------------------------


def _error(message: str) -> None:
    sys.stderr.write(f"{PROG}: {' '.join(message.split())}\n")
    sys.stderr.flush()


def _exit_code(error: JobClientError) -> int:
    if isinstance(error, (Unavailable, DeadlineExceeded, InvalidArgument, Unauthenticated, PermissionDenied)):
        return EXIT_USAGE
    return EXIT_FAILED


def _describe(error: JobClientError, server: str) -> str:
    if isinstance(error, Unavailable):
        return f"cannot reach the job service at {server}: {error.message}"
    if isinstance(error, DeadlineExceeded):
        return f"the job service at {server} did not answer in time: {error.message}"
    if isinstance(error, Unauthenticated):
        return f"not authenticated: {error.message} (set --token or JOBCTL_TOKEN)"
    return f"error: {error.message}"


def _complete(parser: argparse.ArgumentParser) -> None:
    """Answer the shell's tab completion and exit, when this run is one (argcomplete sets _ARGCOMPLETE)."""
    if "_ARGCOMPLETE" not in os.environ:
        return
    try:
        import argcomplete
    except ImportError:  # completion was registered, then argcomplete uninstalled: offer nothing
        raise SystemExit(EXIT_USAGE) from None
    argcomplete.autocomplete(parser)


def main(argv: Sequence[str] | None = None) -> int:
    """Run jobctl with ``argv`` (default: the command line); returns the exit code."""
    try:
        parser = build_parser()
        _complete(parser)
        args = parser.parse_args(argv)
        if args.ca_cert is not None and not Path(args.ca_cert).is_file():
            raise UsageError(f"--ca-cert {args.ca_cert!r} is not a readable file")
        client = JobClient(
            args.server,
            token=args.token,
            tls=args.tls,
            root_certificates=args.ca_cert,
            deadline=args.deadline,
            retry=CLI_RETRY,
        )
    except UsageError as exc:
        _error(f"error: {exc}")
        return EXIT_USAGE
    except ValueError as exc:  # an unusable token or target
        _error(f"error: {exc}")
        return EXIT_USAGE
    try:
        with client:
            name = f"{args.command} {args.action}" if getattr(args, "action", None) else args.command
            return COMMANDS[name](client, args, sys.stdout)
    except UsageError as exc:
        _error(f"error: {exc}")
        return EXIT_USAGE
    except JobClientError as exc:
        _error(_describe(exc, args.server))
        return _exit_code(exc)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (jobctl list | head): not an error. Keep Python from complaining at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
