"""Settings come from the environment and the flags, each declared once; a bad value fails at start naming its
variable (and its flag), and the docs' tables are the declarations'."""

from __future__ import annotations

import argparse
import operator
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from scripts import gen_settings_docs
from scripts.run_local import RunLocalSettings
from services.api.auth import Role
from services.api.settings import ApiSettings
from services.executor.handlers.send_email import SmtpSettings
from services.executor.settings import ExecutorSettings
from services.scheduler.settings import SchedulerSettings
from shared.settings import Settings, SettingsError, setting, settings_table

ROOT = Path(__file__).resolve().parents[1]
# Each process's settings, and the module whose --help shows them (the executor's lists the SMTP ones too).
PROCESSES: dict[str, list[type[Settings]]] = {
    "services.api": [ApiSettings],
    "services.scheduler": [SchedulerSettings],
    "services.executor": [ExecutorSettings, SmtpSettings],
}


def parser_for(settings_class: type[Settings]) -> argparse.ArgumentParser:
    """The flags a process's parser gets from its settings (the scheduler's and the executor's __main__ modules
    cannot share one interpreter: each registers the same metric names)."""
    parser = argparse.ArgumentParser()
    settings_class.add_flags(parser)
    return parser


def test_defaults() -> None:
    settings = ApiSettings.from_env({})
    assert (settings.grpc_port, settings.http_port) == (50051, 8000)
    assert settings.max_payload_bytes == 1024 * 1024
    assert settings.max_batch_size == 1000 and settings.max_page_size == 500
    assert settings == ApiSettings()  # the declared defaults, read or constructed


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"GRPC_PORT": "abc"}, "GRPC_PORT"),
        ({"HTTP_PORT": "70000"}, "HTTP_PORT"),
        ({"MAX_PAYLOAD_BYTES": "-1"}, "MAX_PAYLOAD_BYTES"),
        ({"WATCH_POLL_INTERVAL_SECONDS": "nan"}, "WATCH_POLL_INTERVAL_SECONDS"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
        ({"DATABASE_URL": "mysql://localhost/db"}, "DATABASE_URL"),
        ({"API_PROCESSES": "65"}, "API_PROCESSES"),
        ({"METRICS_REQUIRE_TOKEN": "maybe"}, "METRICS_REQUIRE_TOKEN"),
        ({"API_TOKENS": "owner=0123456789abcdef"}, "API_TOKENS"),
        ({"TOKEN_RATE_BURST": "0"}, "TOKEN_RATE_BURST"),
        ({"AUTH_FAILURE_WINDOW_SECONDS": "0"}, "AUTH_FAILURE_WINDOW_SECONDS"),
        ({"METRICS_MAX_LABEL_VALUES": "0"}, "METRICS_MAX_LABEL_VALUES"),
        ({"TLS_CERT_FILE": "/no/such/cert.pem", "TLS_KEY_FILE": "/no/such/key.pem"}, "TLS_CERT_FILE"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], name: str) -> None:
    with pytest.raises(SettingsError, match=name):
        ApiSettings.from_env(env)


def test_every_process_reads_logging_settings_the_same_way() -> None:
    for settings_class in (ApiSettings, SchedulerSettings, ExecutorSettings):
        read = settings_class.from_env({"LOG_LEVEL": "debug", "LOG_FORMAT": "JSON"})
        assert (read.log_level, read.log_format) == ("DEBUG", "json")
        with pytest.raises(SettingsError, match="LOG_LEVEL='verbose' must be one of DEBUG, INFO, WARNING, ERROR"):
            settings_class.from_env({"LOG_LEVEL": "verbose"})


@pytest.mark.parametrize("settings_class", [ApiSettings, SchedulerSettings, ExecutorSettings, RunLocalSettings])
def test_every_flag_overrides_its_variable_with_the_same_checks(settings_class: type[Settings]) -> None:
    """Each bounded setting, given out of range by its flag, fails as its variable would, and the message names
    both; a good flag wins over its variable."""
    parser = parser_for(settings_class)
    bounded = [declared for declared in settings_class.declared() if declared.flag and declared.setting.maximum]
    assert bounded
    for declared in bounded:
        variable, maximum = declared.setting.variable, declared.setting.maximum
        assert maximum is not None
        too_big = str(int(maximum) + 1)
        with pytest.raises(SettingsError) as from_env:
            settings_class.from_env({variable: too_big})
        with pytest.raises(SettingsError) as from_flag:
            settings_class.from_args(parser.parse_args([str(declared.flag), too_big]), {})
        assert str(from_flag.value) == f"{declared.flag}: {from_env.value}"
        assert variable in str(from_env.value)
        # A good flag wins over a bad variable.
        good = declared.default if declared.default is not None else declared.setting.minimum
        read = settings_class.from_args(parser.parse_args([str(declared.flag), str(good)]), {variable: too_big})
        assert operator.attrgetter(declared.name)(read) == good


def test_boolean_flags_go_both_ways() -> None:
    parser = parser_for(ApiSettings)
    assert ApiSettings.from_args(parser.parse_args(["--metrics-require-token"]), {}).metrics_require_token is True
    env = {"METRICS_REQUIRE_TOKEN": "true"}
    assert ApiSettings.from_args(parser.parse_args(["--no-metrics-require-token"]), env).metrics_require_token is False
    assert ApiSettings.from_args(parser.parse_args([]), env).metrics_require_token is True


@pytest.mark.parametrize("module", list(PROCESSES))
def test_help_names_every_variable_and_flag(module: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", module, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())  # argparse wraps lines
    for settings_class in PROCESSES[module]:
        for declared in settings_class.declared():
            assert declared.setting.variable in text, declared.setting.variable
            assert declared.flag is None or declared.flag in text
            # Secrets have no flag: a flag's value shows in the process list.
            assert not (declared.setting.secret and declared.flag)


def test_a_secret_is_never_shown() -> None:
    secret = "s3cret-value-that-is-long"
    with pytest.raises(SettingsError) as short:
        ExecutorSettings.from_env({"CALLBACK_SIGNING_SECRET": "short"})
    assert "'short'" not in str(short.value) and "CALLBACK_SIGNING_SECRET" in str(short.value)
    smtp = SmtpSettings.from_env({"SMTP_USERNAME": "me", "SMTP_PASSWORD": secret})
    assert smtp.password == secret and secret not in repr(smtp)
    api = ApiSettings.from_env({"API_TOKENS": secret})
    assert api.api_tokens == {secret: Role.ADMIN} and secret not in repr(api)


def test_derived_defaults_follow_the_settings_they_come_from() -> None:
    settings = ExecutorSettings.from_env({"EXECUTOR_CONCURRENCY": "40", "EXECUTOR_LEASE_SECONDS": "9"})
    assert settings.max_abandoned_threads == 40
    assert settings.heartbeat_interval_seconds == 3.0
    given = ExecutorSettings.from_env({"EXECUTOR_CONCURRENCY": "40", "EXECUTOR_MAX_ABANDONED_THREADS": "2"})
    assert given.max_abandoned_threads == 2
    # A token's burst is one second's worth of its rate unless TOKEN_RATE_BURST says otherwise.
    assert ApiSettings.from_env({"TOKEN_RATE_LIMIT": "2.5"}).token_rate_burst == 3
    assert ApiSettings.from_env({"TOKEN_RATE_LIMIT": "2.5", "TOKEN_RATE_BURST": "7"}).token_rate_burst == 7


def test_checks_across_settings_hold_for_objects_made_in_code_too() -> None:
    with pytest.raises(SettingsError, match="EXECUTOR_HEARTBEAT_INTERVAL_SECONDS=30 must be below"):
        ExecutorSettings(lease_seconds=30, heartbeat_interval_seconds=30)
    with pytest.raises(SettingsError, match="TLS_CERT_FILE and TLS_KEY_FILE must be set together"):
        ApiSettings(tls_cert_file=__file__)


def test_lists_are_trimmed_deduplicated_and_each_item_checked() -> None:
    settings = ExecutorSettings.from_env({"EXECUTOR_TYPES": " echo, sleep,,echo ", "EXECUTOR_HANDLERS": "a.b"})
    assert settings.types == ("echo", "sleep") and settings.handler_modules == ("a.b",)
    with pytest.raises(SettingsError, match="EXECUTOR_TYPES: 'Bad Type' is not a job type"):
        ExecutorSettings.from_env({"EXECUTOR_TYPES": "echo,Bad Type"})


def test_one_setting_alone() -> None:
    """run_local reads the executors' grace without the executors' other settings, which are theirs to refuse."""
    env = {"EXECUTOR_SHUTDOWN_GRACE_SECONDS": "12", "EXECUTOR_CONCURRENCY": "0"}
    assert ExecutorSettings.read_one("shutdown_grace_seconds", env) == 12.0
    assert RunLocalSettings.from_env({}).stop_timeout is None
    with pytest.raises(SettingsError, match="EXECUTOR_SHUTDOWN_GRACE_SECONDS"):
        ExecutorSettings.read_one("shutdown_grace_seconds", {"EXECUTOR_SHUTDOWN_GRACE_SECONDS": "-1"})


def test_a_new_declaration_needs_nothing_else() -> None:
    """The mechanism, on a class of its own: type from the annotation, flag from the field's name."""

    @dataclass(frozen=True)
    class Example(Settings):
        batch_size: int = setting("EXAMPLE_BATCH_SIZE", 5, "how many", minimum=1, maximum=9)
        names: tuple[str, ...] = setting("EXAMPLE_NAMES", (), "which ones")
        label: str | None = setting("EXAMPLE_LABEL", None, "what to call it")

    parser = argparse.ArgumentParser()
    Example.add_flags(parser)
    read = Example.from_args(parser.parse_args(["--batch-size", "7", "--names", "a,b"]), {"EXAMPLE_LABEL": "x"})
    assert read == Example(batch_size=7, names=("a", "b"), label="x")
    assert Example.from_env({}) == Example()
    assert "| `--batch-size` | `EXAMPLE_BATCH_SIZE` | 5 | 1 to 9 | how many |" in settings_table(Example)


def test_the_docs_tables_are_the_declarations() -> None:
    """README.md and docs/*.md: every marked settings table is what `make docs` would write."""
    tables = 0
    for path in gen_settings_docs.documents():
        text = path.read_text()
        assert gen_settings_docs.render(text) == text, f"{path.name}: run `make docs` and commit"
        tables += text.count("<!-- settings: ")
    assert tables >= len(gen_settings_docs.TABLES)


def test_a_bad_flag_stops_the_process_with_exit_code_2_naming_it() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "services.api", "--processes", "65"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "--processes: API_PROCESSES=65 is above the maximum 64" in result.stderr


def test_database_pooler_is_read_by_every_process_and_the_scheduler_refuses_a_transaction_pool() -> None:
    for settings_class in (ApiSettings, SchedulerSettings, ExecutorSettings):
        assert settings_class.from_env({}).database_pooler == "none"
        assert settings_class.from_env({"DATABASE_POOLER": "Session"}).database_pooler == "session"
        with pytest.raises(
            SettingsError, match="DATABASE_POOLER='statement' must be one of none, session, transaction"
        ):
            settings_class.from_env({"DATABASE_POOLER": "statement"})
    assert ApiSettings.from_env({"DATABASE_POOLER": "transaction"}).database_pooler == "transaction"
    assert ExecutorSettings.from_env({"DATABASE_POOLER": "transaction"}).listens is False
    with pytest.raises(SettingsError, match="DATABASE_POOLER=transaction: the scheduler needs a session"):
        SchedulerSettings.from_env({"DATABASE_POOLER": "transaction"})


def test_a_multi_host_url_becomes_repeated_host_parameters_for_sqlalchemy() -> None:
    from sqlalchemy import create_engine

    from shared.database.engine import sqlalchemy_url

    url = sqlalchemy_url("postgresql://jobs:pw@db-a:5432,db-b:5433/jobs?target_session_attrs=read-write")
    assert url == "postgresql+psycopg2://jobs:pw@/jobs?host=db-a:5432&host=db-b:5433&target_session_attrs=read-write"
    # What libpq then receives: the hosts and ports side by side, the other parameters passed through.
    engine = create_engine(url)
    _, params = engine.dialect.create_connect_args(engine.url)
    assert (params["host"], params["port"], params["target_session_attrs"]) == ("db-a,db-b", "5432,5433", "read-write")
    assert sqlalchemy_url("postgresql://jobs@db:5432/jobs") == "postgresql+psycopg2://jobs@db:5432/jobs"
