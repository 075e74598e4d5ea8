"""The executor's pure parts, without a database: settings, backoff, result encoding, the handler registry."""

from __future__ import annotations

import argparse
import functools
import random
import sys
import textwrap
import threading
import time

import pytest

from services.executor.__main__ import build_parser, resolve_types
from services.executor.context import JobContext
from services.executor.outcomes import (
    MAX_TRACEBACK_BYTES,
    BackoffPolicy,
    InvalidResult,
    clean_message,
    encode_result,
    error_type,
    format_traceback,
)
from services.executor.registry import (
    HandlerRegistry,
    Mode,
    RegistryError,
    load_entry_points,
    load_handler_modules,
)
from services.executor.settings import ExecutorSettings
from shared.settings import SettingsError

# -- settings ------------------------------------------------------------------------------------------


def test_defaults_and_environment():
    assert ExecutorSettings.from_env({}) == ExecutorSettings(database_url="postgresql://postgres@127.0.0.1:5432/jobs")
    settings = ExecutorSettings.from_env(
        {
            "EXECUTOR_CONCURRENCY": "64",
            "EXECUTOR_TYPES": "send_email, http_request,send_email",
            "EXECUTOR_HANDLERS": "a.b,c",
            "DATABASE_POOLER": "Transaction",
            "RETRY_BACKOFF_BASE_SECONDS": "2",
            "RETRY_BACKOFF_CAP_SECONDS": "60",
            "METRICS_PORT": "0",
            "LOG_FORMAT": "JSON",
        }
    )
    assert settings.concurrency == 64
    assert settings.max_abandoned_threads == 64  # follows the concurrency unless set
    assert settings.types == ("send_email", "http_request")
    assert settings.handler_modules == ("a.b", "c")
    assert settings.database_pooler == "transaction"
    assert settings.listens is False
    assert (settings.retry_backoff_base_seconds, settings.retry_backoff_cap_seconds) == (2.0, 60.0)
    assert settings.metrics_port == 0
    assert settings.log_format == "json"


def test_a_short_lease_gets_a_heartbeat_well_inside_it():
    settings = ExecutorSettings.from_env({"EXECUTOR_LEASE_SECONDS": "6"})
    assert settings.heartbeat_interval_seconds == 2.0


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"EXECUTOR_CONCURRENCY": "0"}, "EXECUTOR_CONCURRENCY=0 is below the minimum 1"),
        ({"EXECUTOR_TYPES": "Bad Type"}, "EXECUTOR_TYPES: 'Bad Type' is not a job type"),
        ({"EXECUTOR_POLL_INTERVAL_SECONDS": "nan"}, "EXECUTOR_POLL_INTERVAL_SECONDS='nan' is not a number"),
        ({"RETRY_BACKOFF_BASE_SECONDS": "10", "RETRY_BACKOFF_CAP_SECONDS": "5"}, "RETRY_BACKOFF_CAP_SECONDS=5.0"),
        ({"EXECUTOR_MAX_RESULT_BYTES": "1"}, "EXECUTOR_MAX_RESULT_BYTES=1 is below"),
        ({"METRICS_PORT": "70000"}, "METRICS_PORT=70000 is above"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL='LOUD'"),
        ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL="),
    ],
)
def test_bad_values_name_their_variable(env, message):
    with pytest.raises(SettingsError) as error:
        ExecutorSettings.from_env(env)
    assert message in str(error.value)


def test_flags_override_the_environment_and_are_named_when_bad():
    parser = build_parser()
    args = parser.parse_args(["--concurrency", "3", "--types", "echo", "--database-pooler", "transaction"])
    settings = ExecutorSettings.from_args(args, {"EXECUTOR_CONCURRENCY": "50", "EXECUTOR_TYPES": "sleep"})
    assert (settings.concurrency, settings.types, settings.listens) == (3, ("echo",), False)
    assert ExecutorSettings.from_args(parser.parse_args([]), {"EXECUTOR_CONCURRENCY": "50"}).concurrency == 50
    assert ExecutorSettings.from_args(parser.parse_args([]), {}).concurrency == ExecutorSettings.concurrency == 100
    with pytest.raises(SettingsError, match=r"^--shutdown-grace: EXECUTOR_SHUTDOWN_GRACE_SECONDS"):
        ExecutorSettings.from_args(parser.parse_args(["--shutdown-grace", "-1"]), {})


# -- backoff and results -------------------------------------------------------------------------------


def test_backoff_grows_exponentially_with_equal_jitter_up_to_the_cap():
    policy = BackoffPolicy(base_seconds=1.0, cap_seconds=3600.0)
    rng = random.Random(7)
    for attempt in range(1, 12):
        ceiling = min(3600.0, 2.0 ** (attempt - 1))
        delays = [policy.delay(attempt, rng) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays), attempt
    assert all(1800 <= policy.delay(100, rng) <= 3600 for _ in range(100))
    assert BackoffPolicy(0.0, 0.0).delay(5) == 0.0


def test_results_must_be_small_json_objects():
    assert encode_result(None, 100) == "{}"
    assert encode_result({"é": [1, 2.5, None, True]}, 100) == '{"é":[1,2.5,null,true]}'
    for bad, reason in [
        ([1], "not a dict"),
        ({"x": object()}, "not JSON-serialisable"),
        ({"x": float("inf")}, "not JSON-serialisable"),
        ({"x": "\x00"}, "NUL"),
        ({"x": "\ud800"}, "not valid Unicode"),
        ({"x": "é" * 60}, "bytes as JSON; the limit is 100"),
    ]:
        with pytest.raises(InvalidResult, match=reason):
            encode_result(bad, 100)
    recursive: dict[str, object] = {}
    recursive["self"] = recursive
    with pytest.raises(InvalidResult):
        encode_result(recursive, 100)


def test_error_messages_are_bounded_and_storable():
    assert clean_message("a\x00b") == "a\\0b"
    long = clean_message("x" * 10_000)
    assert len(long) == 4000 and long.endswith("(truncated)")
    assert clean_message("\ud800") == "?"


# -- the registry --------------------------------------------------------------------------------------


def _raise_at_depth(depth: int, message: str) -> None:
    if depth:
        _and_again(depth - 1, message)  # two functions by turns: Python prints every frame, none folded
    raise ValueError(message)


def _and_again(depth: int, message: str) -> None:
    _raise_at_depth(depth, message)


def _raised(function, *args):
    try:
        function(*args)
    except Exception as error:
        return error
    raise AssertionError("did not raise")


def test_tracebacks_are_bounded_keeping_the_innermost_frames():
    short = format_traceback(_raised(_raise_at_depth, 2, "near"))
    assert short.startswith("Traceback (most recent call last):") and short.count(", in _raise_at_depth") == 3
    assert short.count(", in _and_again") == 2
    assert short.endswith("ValueError: near\n") and error_type(_raised(_raise_at_depth, 0, "x")) == "ValueError"

    deep = format_traceback(_raised(_raise_at_depth, 300, "the innermost" + "\x00" + "message"))
    assert len(deep.encode()) <= MAX_TRACEBACK_BYTES
    assert deep.startswith("... (") and "outer lines of the traceback omitted" in deep.splitlines()[0]
    assert deep.endswith("ValueError: the innermost\\0message\n")  # NUL replaced: PostgreSQL text refuses it
    assert ", in _raised" not in deep and ", in _raise_at_depth" in deep.splitlines()[-3]  # the outermost went

    huge = format_traceback(_raised(_raise_at_depth, 0, "x" * 100_000))
    assert len(huge.encode()) <= MAX_TRACEBACK_BYTES and "... (truncated)" in huge


def test_a_traceback_starts_at_the_handler_and_keeps_its_causes():
    def handler():
        try:
            {}["missing"]
        except KeyError as error:
            raise RuntimeError("lookup failed") from error

    def plumbing():
        handler()

    error = _raised(plumbing)
    text = format_traceback(error, skip_files={__file__})
    # Every leading frame in this file is plumbing here, up to the last one: the raising frame stays.
    assert ", in plumbing" not in text and ", in handler" in text
    assert "KeyError: 'missing'" in text and "The above exception was the direct cause" in text
    assert text.rstrip().endswith("RuntimeError: lookup failed")
    assert "missing" not in format_traceback(error).split("RuntimeError")[-1].replace("lookup failed", "")


def test_registry_tells_sync_from_async_and_refuses_duplicates():
    registry = HandlerRegistry()

    async def run_async(payload, ctx):
        return payload

    def run_sync(payload, ctx):
        return payload

    class AsyncCallable:
        async def __call__(self, payload, ctx):
            return payload

    assert registry.register("a", run_async).is_async
    assert not registry.register("b", run_sync).is_async
    assert registry.register("c", functools.partial(run_async)).is_async
    assert registry.register("d", AsyncCallable()).is_async
    assert registry.types() == ["a", "b", "c", "d"]
    with pytest.raises(RegistryError, match="already has a handler"):
        registry.register("a", run_sync)
    registry.register("a", run_sync, replace=True)
    assert not registry.get("a").is_async
    assert registry.register("inline", run_sync, inline=True).mode is Mode.INLINE
    assert registry.get("b").mode is Mode.THREAD
    with pytest.raises(RegistryError, match="inline=True is for plain functions"):
        registry.register("f", run_async, inline=True)
    with pytest.raises(RegistryError, match="must be 1-128 characters"):
        registry.register("Not Valid", run_sync)
    with pytest.raises(RegistryError, match="not callable"):
        registry.register("e", "nope")


def test_types_are_the_requested_ones_that_have_a_handler():
    registry = HandlerRegistry()
    registry.register("echo", lambda payload, ctx: payload)
    registry.register("sleep", lambda payload, ctx: payload)
    assert resolve_types((), registry) == ["echo", "sleep"]
    assert resolve_types(("sleep", "missing"), registry) == ["sleep"]


def test_handler_modules_that_fail_to_import_are_named():
    with pytest.raises(RegistryError, match="cannot import handler module 'no_such_module_for_tests'"):
        load_handler_modules(["no_such_module_for_tests"])


def test_entry_points_register_modules_and_functions(tmp_path, monkeypatch):
    package = tmp_path / "ep_handlers_for_tests"
    package.mkdir()
    (package / "__init__.py").write_text(
        textwrap.dedent(
            """
            def shout(payload, ctx):
                return {"text": payload["text"].upper()}
            """
        )
    )
    dist_info = tmp_path / "ep_handlers_for_tests-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: ep-handlers-for-tests\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text(
        "[jobservice.handlers]\nshout = ep_handlers_for_tests:shout\nplain_module = ep_handlers_for_tests\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = HandlerRegistry()
    try:
        assert sorted(load_entry_points(registry)) == ["plain_module", "shout"]
    finally:
        sys.modules.pop("ep_handlers_for_tests", None)
    shout = registry.get("shout")
    assert shout is not None and shout.function({"text": "hi"}, None) == {"text": "HI"}
    assert "plain_module" not in registry  # a module registers through its own decorators


def test_help_is_built_from_the_real_flags():
    parser = build_parser()
    assert isinstance(parser, argparse.ArgumentParser)
    text = parser.format_help()
    assert "EXECUTOR_CONCURRENCY" in text and "EXECUTOR_MAX_RESULT_BYTES" in text


def test_context_cancellation_reaches_waiting_threads():
    ctx = JobContext(1, "t", attempt=2, max_attempts=2, timeout_seconds=30)
    assert not ctx.cancelled and ctx.is_last_attempt
    assert 29 < ctx.remaining_seconds <= 30
    assert ctx.wait_cancelled(0.01) is False
    waiter = threading.Thread(target=lambda: results.append(ctx.wait_cancelled(10)))
    results: list[bool] = []
    started = time.monotonic()
    waiter.start()
    time.sleep(0.05)
    ctx.cancel()
    waiter.join(5)
    assert results == [True] and time.monotonic() - started < 2
    assert ctx.cancelled and ctx.wait_cancelled(0) is True


def test_report_progress_keeps_the_latest_and_checks_its_range() -> None:
    from services.executor.context import JobContext

    ctx = JobContext(1, "t", 1, 3, 30.0)
    assert ctx.take_progress() is None
    ctx.report_progress(10, "starting")
    ctx.report_progress(42.6, "x" * 5000)
    percent, message = ctx.take_progress() or (None, "")
    assert percent == 43 and len(message) == 1000
    assert ctx.take_progress() is None
    for bad in (-1, 100.5):
        with pytest.raises(ValueError, match="between 0 and 100"):
            ctx.report_progress(bad)
