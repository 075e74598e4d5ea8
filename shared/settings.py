"""Settings, each declared once: a field of a process's frozen settings dataclass.

A declaration, ``setting("GRPC_PORT", 50051, "gRPC port", minimum=1, maximum=65535)`` on a field of a
``Settings`` dataclass, carries the environment variable, the default, the help text, the range or
choices and the flag; the type is the field's annotation (bool, int, float, str, ``str | None``, or a
comma-separated ``tuple`` or ``frozenset`` of what ``parse`` makes of each item). From that one declaration come

- ``from_env()``: the frozen settings object, each value parsed and range-checked; a bad value raises
  SettingsError naming its variable (every process then exits 2 with the message);
- ``add_flags()`` and ``from_args()``: one command-line flag per setting (the field's name, dashed),
  overriding its variable and read by the same code, so a flag gets the same checks, and ``--help``;
- ``settings_table()``: the Markdown tables in the README and docs/*.md, which ``make docs`` rewrites
  (scripts/gen_settings_docs.py) and a test keeps in step with the declarations.

Unset and empty variables mean the default. Secrets (``secret=True``) have no flag, so they stay out of the
process list, and never appear in a repr or an error message. A field whose type is itself a ``Settings``
class is a group, read with its parent (the executor's ``callback``). Checks that span settings live in
the class's ``check()``, which runs on every construction, from the environment or in code.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import re
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Self

__all__ = [
    "DATABASE_POOLERS",
    "DEFAULT_DATABASE_URL",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "DatabaseSettings",
    "ProcessSettings",
    "Setting",
    "Settings",
    "SettingsError",
    "metrics_bind_host",
    "metrics_port",
    "setting",
    "settings_table",
]

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/jobs"
# What stands between a process and PostgreSQL; shared/database/engine.py says what each one changes.
DATABASE_POOLERS = ("none", "session", "transaction")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS = ("text", "json")
_DECLARATION = "setting"
_TRUE = {"1", "true", "yes", "on"}
# A flag's placeholder in --help, by the end of its field's name.
_METAVARS = (("_seconds", "SECONDS"), ("_days", "DAYS"), ("_port", "PORT"), ("_url", "URL"), ("_file", "FILE"))
_FALSE = {"0", "false", "no", "off"}


class SettingsError(ValueError):
    """A setting has a bad value; the message names the environment variable (and the flag, if one gave it)."""


@dataclass(frozen=True)
class Setting:
    """One setting's declaration; see ``setting()`` for the fields."""

    variable: str
    help: str
    flag: str | None
    minimum: float | None
    maximum: float | None
    choices: tuple[str, ...]
    parse: Callable[[str], Any] | None
    derive: Callable[[Mapping[str, Any]], Any] | None
    shown_default: str | None
    secret: bool
    metavar: str | None


def setting(
    variable: str,
    default: Any,
    help: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    choices: tuple[str, ...] = (),
    parse: Callable[[str], Any] | None = None,
    derive: Callable[[Mapping[str, Any]], Any] | None = None,
    shown_default: str | None = None,
    flag: str | None = "",
    secret: bool = False,
    metavar: str | None = None,
) -> Any:
    """Declare the dataclass field of one setting.

    ``parse`` checks and converts a str value (each item, for a list) and raises ValueError with what is
    wrong ("is not a job type"); ``derive`` computes the default when the variable is unset, from the
    settings declared above it (by field name); ``shown_default`` is how docs and --help show a default
    that is not a plain value; ``flag`` is the flag's name when it is not the field's (None: no flag).
    """
    declaration = Setting(
        variable,
        help,
        None if secret else flag,
        minimum,
        maximum,
        choices,
        parse,
        derive,
        shown_default,
        secret,
        metavar,
    )
    return dataclasses.field(default=default, repr=not secret, metadata={_DECLARATION: declaration})


@dataclass(frozen=True)
class _Declared:
    """A declared field as a class sees it: its name (``callback.timeout_seconds`` in a group), flag, type,
    default and declaration."""

    name: str
    flag: str | None
    kind: Any
    default: Any
    setting: Setting


class Settings:
    """Base of the settings dataclasses (``@dataclass(frozen=True)`` subclasses with ``setting()`` fields).

    ``flags=False`` in the class statement gives a class no flags (the send_email handler's SMTP settings,
    read by the handler itself).
    """

    flags: ClassVar[bool] = True

    def __init_subclass__(cls, flags: bool = True, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.flags = flags

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """Checks that span settings; raise SettingsError naming the variables."""

    @classmethod
    def declared(cls, prefix: str = "") -> Iterator[_Declared]:
        """Every setting of the class, groups' included, in declaration order."""
        hints = typing.get_type_hints(cls)
        for field in dataclasses.fields(cls):  # type: ignore[arg-type]
            kind = _base_type(hints[field.name])
            if isinstance(kind, type) and issubclass(kind, Settings):
                yield from kind.declared(f"{prefix}{field.name}.")
                continue
            declaration: Setting | None = field.metadata.get(_DECLARATION)
            if declaration is None:
                continue
            flag = None
            if declaration.flag is not None and cls.flags:
                flag = declaration.flag or "--" + (prefix + field.name).replace(".", "-").replace("_", "-")
            yield _Declared(prefix + field.name, flag, kind, field.default, declaration)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        """The settings in ``env`` (default: the process's environment); SettingsError names a bad one."""
        env = os.environ if env is None else env
        hints = typing.get_type_hints(cls)
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):  # type: ignore[arg-type]
            kind = _base_type(hints[field.name])
            declaration: Setting | None = field.metadata.get(_DECLARATION)
            if isinstance(kind, type) and issubclass(kind, Settings):
                values[field.name] = kind.from_env(env)
            elif declaration is not None:
                raw = env.get(declaration.variable, "").strip()
                if raw:
                    values[field.name] = _read(declaration, kind, raw)
                elif declaration.derive is not None:
                    values[field.name] = declaration.derive(values)
                else:
                    values[field.name] = field.default
        return cls(**values)

    @classmethod
    def read_one(cls, name: str, env: Mapping[str, str] | None = None) -> Any:
        """The setting of field ``name`` alone, checked as ``from_env`` checks it (a derived default is not
        derived: the declared one is used)."""
        env = os.environ if env is None else env
        declared = next(declared for declared in cls.declared() if declared.name == name)
        raw = env.get(declared.setting.variable, "").strip()
        return _read(declared.setting, declared.kind, raw) if raw else declared.default

    @classmethod
    def add_flags(cls, parser: argparse.ArgumentParser) -> None:
        """One flag per setting that has one, each overriding its variable; its help names the variable."""
        for declared in cls.declared():
            if declared.flag is None:
                continue
            extra: dict[str, Any] = {"action": argparse.BooleanOptionalAction} if declared.kind is bool else {}
            if declared.kind is not bool:
                extra["metavar"] = declared.setting.metavar or _metavar(declared)
            text = _flag_help(declared, _default(declared))
            parser.add_argument(declared.flag, dest=declared.setting.variable, help=text, default=None, **extra)

    @classmethod
    def from_args(cls, args: argparse.Namespace, env: Mapping[str, str] | None = None) -> Self:
        """``env`` with the flags given in ``args`` laid over it, read like the environment alone; a bad flag
        value's SettingsError names the flag and its variable."""
        merged = dict(os.environ if env is None else env)
        given: dict[str, str] = {}
        for declared in cls.declared():
            value = getattr(args, declared.setting.variable, None) if declared.flag else None
            if value is not None:
                merged[declared.setting.variable] = _plain(value)
                given[declared.setting.variable] = str(declared.flag)
        try:
            return cls.from_env(merged)
        except SettingsError as error:
            culprit = next((flag for variable, flag in given.items() if re.match(rf"{variable}\b", str(error))), None)
            if culprit is None:
                raise
            raise SettingsError(f"{culprit}: {error}") from None

    @classmethod
    def environment_only(cls) -> list[str]:
        """The variables without a flag."""
        return [declared.setting.variable for declared in cls.declared() if declared.flag is None]


def _base_type(hint: Any) -> Any:
    """``str | None`` -> str; ``tuple[str, ...]`` -> tuple, ``frozenset[int]`` -> frozenset; the rest as it is."""
    if isinstance(hint, types.UnionType):
        (hint,) = (arg for arg in typing.get_args(hint) if arg is not type(None))
    return typing.get_origin(hint) or hint


def _read(declaration: Setting, kind: Any, raw: str) -> Any:
    """One value, parsed and checked; SettingsError names the variable (never showing a secret)."""
    variable = declaration.variable
    shown = variable if declaration.secret else f"{variable}={raw!r}"
    if kind in (tuple, frozenset):
        items: list[Any] = []
        for item in (part.strip() for part in raw.split(",")):
            if item:
                try:
                    items.append(declaration.parse(item) if declaration.parse else item)
                except ValueError as error:
                    raise SettingsError(f"{variable}: {item!r} {error}") from None
        return kind(dict.fromkeys(items))
    try:
        if declaration.parse is not None:
            return declaration.parse(raw)
        if kind is bool:
            return _boolean(raw)
        if kind is str:
            return _choice(raw, declaration.choices)
        value = _number(raw, kind)
    except ValueError as error:
        raise SettingsError(f"{shown} {error}") from None
    if declaration.minimum is not None and value < declaration.minimum:
        raise SettingsError(f"{variable}={value} is below the minimum {declaration.minimum}")
    if declaration.maximum is not None and value > declaration.maximum:
        raise SettingsError(f"{variable}={value} is above the maximum {declaration.maximum}")
    return value


def _boolean(raw: str) -> bool:
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise ValueError("is not a boolean (use true or false)")


def _choice(raw: str, choices: tuple[str, ...]) -> str:
    if not choices:
        return raw
    # Compared without case, returned as declared (LOG_LEVEL=debug is DEBUG, LOG_FORMAT=JSON is json).
    for choice in choices:
        if raw.lower() == choice.lower():
            return choice
    raise ValueError(f"must be one of {', '.join(choices)}")


def _number(raw: str, kind: Any) -> float:
    if kind is int:
        try:
            return int(raw)
        except ValueError:
            raise ValueError("is not a whole number") from None
    try:
        value = float(raw)
    except ValueError:
        raise ValueError("is not a number") from None
    if math.isnan(value):
        raise ValueError("is not a number")
    return value


# ---- how settings are shown: --help and the docs' tables ------------------------------------------------


def _plain(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, tuple):
        return ",".join(str(item) for item in value)
    if isinstance(value, frozenset):
        return ",".join(str(item) for item in sorted(value))
    return "" if value is None else str(value)


def _default(declared: _Declared) -> str:
    if declared.setting.shown_default is not None:
        return declared.setting.shown_default
    return _plain(declared.default)


def _range(declaration: Setting) -> str:
    if declaration.choices:
        return ", ".join(declaration.choices)
    low, high = declaration.minimum, declaration.maximum
    if low is not None and high is not None:
        return f"{_plain(low)} to {_plain(high)}"
    if low is not None:
        return f"at least {_plain(low)}"
    if high is not None:
        return f"at most {_plain(high)}"
    return ""


def _metavar(declared: _Declared) -> str:
    name = declared.name
    if declared.kind in (tuple, frozenset):
        return "A,B"
    for suffix, metavar in _METAVARS:
        if name.endswith(suffix):
            return metavar
    if declared.setting.choices:
        return "{" + ",".join(declared.setting.choices) + "}"
    return {int: "N", float: "X"}.get(declared.kind, "TEXT")


def _flag_help(declared: _Declared, default: str) -> str:
    declaration = declared.setting
    notes = [declaration.variable]
    if default:
        notes.append(f"default {default}")
    if _range(declaration) and not declaration.choices:
        notes.append(_range(declaration))
    # argparse expands %-formats in help texts.
    return f"{declaration.help} [{'; '.join(notes)}]".replace("%", "%%")


def settings_table(cls: type[Settings], only: Callable[[str], bool] = lambda _: True, inherited: bool = True) -> str:
    """The Markdown table of ``cls``'s settings whose variable ``only`` accepts: flag, variable, default,
    allowed values and meaning. ``inherited=False`` leaves out the settings every process shares."""
    shared = {declared.setting.variable for declared in ProcessSettings.declared()}
    rows = ["| flag | variable | default | allowed | meaning |", "|---|---|---|---|---|"]
    for declared in cls.declared():
        variable = declared.setting.variable
        if not only(variable) or (not inherited and variable in shared):
            continue
        cells = [
            f"`{declared.flag}`" if declared.flag else "",
            f"`{variable}`",
            _default(declared).replace("|", "\\|"),
            _range(declared.setting),
            declared.setting.help.replace("|", "\\|"),
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


# ---- what every process has ------------------------------------------------------------------------------


def _postgres_url(raw: str) -> str:
    if not raw.startswith(("postgresql://", "postgres://", "postgresql+psycopg2://")):
        raise ValueError("must start with postgresql://")
    return raw


def metrics_port(default: int) -> Any:
    """The METRICS_PORT setting of a process whose Prometheus endpoint defaults to ``default``."""
    return setting("METRICS_PORT", default, "Prometheus /metrics port; 0 turns it off", minimum=0, maximum=65535)


def metrics_bind_host() -> Any:
    """The METRICS_BIND_HOST setting of a process with a /metrics port of its own (the scheduler's, the
    executor's). Metrics stay on this machine unless a deployment opens them (docker-compose.yml and
    deploy/k8s do)."""
    return setting("METRICS_BIND_HOST", "127.0.0.1", "address /metrics listens on; 0.0.0.0 for every interface")


@dataclass(frozen=True)
class DatabaseSettings(Settings):
    """Where the database is: what the migrations need."""

    database_url: str = setting(
        "DATABASE_URL",
        DEFAULT_DATABASE_URL,
        "the PostgreSQL database (postgresql://user:password@host:port/db; a primary and its standbys: "
        "postgresql://user@a:5432,b:5432/db?target_session_attrs=read-write); the variable keeps a password out "
        "of the process list, where a flag would show it",
        parse=_postgres_url,
    )


@dataclass(frozen=True)
class ProcessSettings(DatabaseSettings):
    """The settings every process has."""

    database_pooler: str = setting(
        "DATABASE_POOLER",
        "none",
        "what stands between the process and PostgreSQL: none (direct), or the pool mode of a PgBouncer in "
        "front, session or transaction: no start-up options (the role sets timezone and statement_timeout); "
        "with transaction executors poll instead of LISTEN and the scheduler refuses to start (docs/deploy.md)",
        choices=DATABASE_POOLERS,
    )
    log_level: str = setting("LOG_LEVEL", "INFO", "the least severe log records written", choices=LOG_LEVELS)
    log_format: str = setting(
        "LOG_FORMAT", "text", "text for people, json for log collectors (one object per line)", choices=LOG_FORMATS
    )
    # Clients choose job types (and schedule names): more distinct ones than this are counted as "_other".
    metrics_max_label_values: int = setting(
        "METRICS_MAX_LABEL_VALUES",
        100,
        "distinct job types (and, in the scheduler, schedule names) a metric labels; later ones count as `_other`",
        minimum=1,
        maximum=100_000,
    )
