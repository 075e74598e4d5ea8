"""Settings come from the environment, and a bad value fails at start naming its variable."""

from __future__ import annotations

import pytest

from services.api.settings import ApiSettings
from shared.settings import SettingsError, env_bool, env_float, env_int


def test_defaults() -> None:
    settings = ApiSettings.from_env({})
    assert (settings.grpc_port, settings.http_port) == (50051, 8000)
    assert settings.max_payload_bytes == 1024 * 1024
    assert settings.max_batch_size == 1000 and settings.max_page_size == 500


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
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], name: str) -> None:
    with pytest.raises(SettingsError, match=name):
        ApiSettings.from_env(env)


def test_readers() -> None:
    env = {"A": " 5 ", "B": "2.5", "C": "yes", "D": "off"}
    assert env_int("A", 1, env=env) == 5
    assert env_int("MISSING", 7, env=env) == 7
    assert env_float("B", 0.0, env=env) == 2.5
    assert env_bool("C", False, env=env) is True
    assert env_bool("D", True, env=env) is False
    with pytest.raises(SettingsError, match="C"):
        env_int("C", 1, env=env)
    with pytest.raises(SettingsError, match="A"):
        env_bool("A", True, env=env)


def test_every_process_reads_logging_settings_the_same_way() -> None:
    from services.executor.settings import ExecutorSettings
    from services.scheduler.settings import SchedulerSettings

    for settings_class in (ApiSettings, SchedulerSettings, ExecutorSettings):
        read = settings_class.from_env({"LOG_LEVEL": "debug", "LOG_FORMAT": "JSON"})
        assert (read.log_level, read.log_format) == ("DEBUG", "json")
        with pytest.raises(SettingsError, match="LOG_LEVEL='VERBOSE' must be one of DEBUG, INFO, WARNING, ERROR"):
            settings_class.from_env({"LOG_LEVEL": "verbose"})
