"""Reading settings from the environment: typed, bounded, and failing at start with the variable's name.

Each process builds one frozen settings object in its ``__main__`` from these readers.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

__all__ = [
    "DEFAULT_DATABASE_URL",
    "DEFAULT_LOG_FORMAT",
    "DEFAULT_LOG_LEVEL",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "SettingsError",
    "database_url_from_env",
    "env_bool",
    "env_choice",
    "env_float",
    "env_int",
    "env_log_format",
    "env_log_level",
    "env_str",
]

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/jobs"
DEFAULT_LOG_LEVEL = "INFO"
DEFAULT_LOG_FORMAT = "text"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS = ("text", "json")


class SettingsError(ValueError):
    """A setting has a bad value; the message names the environment variable."""


def env_str(name: str, default: str, env: Mapping[str, str] | None = None) -> str:
    value = (os.environ if env is None else env).get(name, "").strip()
    return value or default


def env_int(
    name: str,
    default: int,
    minimum: int | None = None,
    maximum: int | None = None,
    env: Mapping[str, str] | None = None,
) -> int:
    raw = (os.environ if env is None else env).get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a whole number") from None
    _check_range(name, value, minimum, maximum)
    return value


def env_float(
    name: str,
    default: float,
    minimum: float | None = None,
    maximum: float | None = None,
    env: Mapping[str, str] | None = None,
) -> float:
    raw = (os.environ if env is None else env).get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None
    if value != value:  # NaN
        raise SettingsError(f"{name}={raw!r} is not a number")
    _check_range(name, value, minimum, maximum)
    return value


def env_bool(name: str, default: bool, env: Mapping[str, str] | None = None) -> bool:
    raw = (os.environ if env is None else env).get(name, "").strip().lower()
    if not raw:
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"{name}={raw!r} is not a boolean (use true or false)")


def _check_range(name: str, value: float, minimum: float | None, maximum: float | None) -> None:
    if minimum is not None and value < minimum:
        raise SettingsError(f"{name}={value} is below the minimum {minimum}")
    if maximum is not None and value > maximum:
        raise SettingsError(f"{name}={value} is above the maximum {maximum}")


def database_url_from_env(env: Mapping[str, str] | None = None) -> str:
    """DATABASE_URL, checked to be a PostgreSQL URL."""
    url = env_str("DATABASE_URL", DEFAULT_DATABASE_URL, env)
    if not url.startswith(("postgresql://", "postgres://", "postgresql+psycopg2://")):
        raise SettingsError(f"DATABASE_URL={url!r} must start with postgresql://")
    return url


def env_choice(
    name: str, default: str, choices: tuple[str, ...], env: Mapping[str, str] | None = None, upper: bool = False
) -> str:
    """One of ``choices`` (compared upper- or lower-cased); SettingsError names the variable otherwise."""
    value = env_str(name, default, env)
    value = value.upper() if upper else value.lower()
    if value not in choices:
        raise SettingsError(f"{name}={value!r} must be one of {', '.join(choices)}")
    return value


def env_log_level(env: Mapping[str, str] | None = None) -> str:
    """LOG_LEVEL, every process's: DEBUG, INFO, WARNING or ERROR."""
    return env_choice("LOG_LEVEL", DEFAULT_LOG_LEVEL, LOG_LEVELS, env, upper=True)


def env_log_format(env: Mapping[str, str] | None = None) -> str:
    """LOG_FORMAT, every process's: text or json."""
    return env_choice("LOG_FORMAT", DEFAULT_LOG_FORMAT, LOG_FORMATS, env)
