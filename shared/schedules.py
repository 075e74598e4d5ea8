"""Domain types for periodic (cron) schedules: the cron expression in its time zone, the job template
each occurrence submits, a stored schedule, and a validated new one.

Cron expressions are parsed and evaluated by croniter (pallets-eco); this module only fixes the dialect:

- five fields, ``minute hour day-of-month month day-of-week``, read in the schedule's IANA time zone,
  with day-of-month and day-of-week OR-ed when both are restricted (as every cron does);
- or six fields with a leading seconds field (``*/10 * * * * *``: every ten seconds), as Quartz, Spring
  and robfig/cron write it;
- or one of ``@yearly @annually @monthly @weekly @daily @midnight @hourly``.

Daylight saving time follows Vixie cron: an occurrence in the hour skipped in spring runs when the
clocks jump (02:30 becomes 03:00); in the hour repeated in autumn, a fixed-time occurrence (neither the
minute nor the hour field starts with ``*``) runs once, the first time, while ``*/15 * * * *`` and the
like run in both passes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, CroniterError, croniter

from shared.egress import DEFAULT_POLICY, EgressPolicy
from shared.errors import InvalidArgument
from shared.jobs import DEFAULT_MAX_ATTEMPTS, DEFAULT_PRIORITY, TYPE_PATTERN, NewJob, ValidatedJob

__all__ = [
    "CRON_MAX_LENGTH",
    "DEFAULT_TIME_ZONE",
    "CronExpression",
    "JobTemplate",
    "NewSchedule",
    "Schedule",
    "occurrence_idempotency_key",
]

DEFAULT_TIME_ZONE = "UTC"
CRON_MAX_LENGTH = 256
TIME_ZONE_MAX_LENGTH = 64
CRON_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_ONE_SECOND = timedelta(seconds=1)


class CronExpression:
    """A validated cron expression in a time zone; every time it gives or takes is timezone-aware."""

    def __init__(self, expression: str, time_zone: str = DEFAULT_TIME_ZONE) -> None:
        """Parse ``expression`` in ``time_zone``; raise InvalidArgument naming ``cron`` or ``time_zone``."""
        self.expression = expression.strip()
        self.time_zone = time_zone or DEFAULT_TIME_ZONE
        if "\x00" in self.expression or len(self.expression) > CRON_MAX_LENGTH:
            raise InvalidArgument("cron", f"must be at most {CRON_MAX_LENGTH} characters without NUL")
        fields = CRON_ALIASES.get(self.expression.lower(), self.expression).split()
        if len(fields) not in (5, 6):
            raise InvalidArgument(
                "cron",
                f"has {len(fields)} fields; write five (minute hour day-of-month month day-of-week), "
                "six with a leading seconds field, or an alias such as @daily",
            )
        self._croniter_expression = " ".join(fields)
        minute_hour = fields[-5:-3]
        # Vixie cron runs a fixed-time job once when the clocks go back; wildcard jobs run in both passes.
        self._once_in_repeated_hour = not any(part.startswith("*") for part in minute_hour)
        try:
            croniter(self._croniter_expression, datetime.now(timezone.utc), second_at_beginning=True)
        except (CroniterError, ValueError, TypeError, KeyError, IndexError) as exc:
            raise InvalidArgument("cron", f"is not a valid cron expression: {exc}") from None
        self.zone = _zone(self.time_zone)

    def next_after(self, moment: datetime) -> datetime | None:
        """The first occurrence strictly after ``moment`` (UTC); None when none comes in the next 50 years."""
        iterator = self._iterator(moment)
        try:
            while True:
                candidate = self._utc(iterator.get_next(datetime))
                if not self._skipped(candidate):
                    return candidate
        except CroniterBadDateError:
            return None

    def latest_at_or_before(self, moment: datetime) -> datetime | None:
        """The last occurrence at or before ``moment`` (UTC); None when none in the 50 years before."""
        # Occurrences fall on whole seconds: start just past the second ``moment`` is in, then step back.
        start = moment.replace(microsecond=0) + _ONE_SECOND
        iterator = self._iterator(start)
        try:
            while True:
                candidate = self._utc(iterator.get_prev(datetime))
                if not self._skipped(candidate):
                    return candidate
        except CroniterBadDateError:
            return None

    def _iterator(self, moment: datetime) -> Any:
        if moment.tzinfo is None:
            raise ValueError("moment must be timezone-aware")
        return croniter(self._croniter_expression, moment.astimezone(self.zone), second_at_beginning=True)

    @staticmethod
    def _utc(moment: datetime) -> datetime:
        return moment.astimezone(timezone.utc)

    def _skipped(self, moment: datetime) -> bool:
        """Whether this occurrence is the second pass of a fixed time through a repeated (autumn) hour."""
        return self._once_in_repeated_hour and moment.astimezone(self.zone).fold == 1

    def __repr__(self) -> str:
        return f"CronExpression({self.expression!r}, {self.time_zone!r})"


def _zone(name: str) -> ZoneInfo:
    if len(name) > TIME_ZONE_MAX_LENGTH or "\x00" in name:
        raise InvalidArgument("time_zone", "is not a time zone name")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidArgument(
            "time_zone", f"unknown time zone {name!r}; use an IANA name such as UTC or Europe/Paris"
        ) from None


def occurrence_idempotency_key(schedule_id: int, occurrence: datetime) -> str:
    """The idempotency key of one occurrence's job: one occurrence, one job, whoever submits it."""
    return f"schedule:{schedule_id}:{int(occurrence.timestamp())}"


@dataclass(frozen=True)
class JobTemplate:
    """What each occurrence's job is made of: a submit without its time, key or dependencies."""

    type: str
    payload: dict[str, Any] = field(default_factory=dict)
    priority: int = DEFAULT_PRIORITY
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    timeout_seconds: int | None = None
    callback_url: str | None = None
    concurrency_key: str | None = None
    unique_key: str | None = None
    fairness_key: str | None = None

    def to_json(self) -> str:
        """The template as stored in job_schedules.job_template (jsonb)."""
        return json.dumps(self.__dict__, separators=(",", ":"), ensure_ascii=False, allow_nan=False)

    @classmethod
    def from_stored(cls, value: dict[str, Any]) -> JobTemplate:
        """A template read back from the jsonb column; keys this code does not know are ignored."""
        known = {name: value[name] for name in cls.__dataclass_fields__ if name in value}
        return cls(**known)

    def new_job(self, schedule_name: str, idempotency_key: str | None, occurrence: datetime | None) -> ValidatedJob:
        """The job of one occurrence, with its payload encoded as submit_jobs wants it; without an
        occurrence (TriggerSchedule) the job is due at once and has no idempotency key."""
        job = NewJob(
            type=self.type,
            payload=self.payload,
            idempotency_key=idempotency_key,
            priority=self.priority,
            scheduled_at=occurrence,
            max_attempts=self.max_attempts,
            timeout_seconds=self.timeout_seconds,
            callback_url=self.callback_url,
            concurrency_key=self.concurrency_key,
            unique_key=self.unique_key,
            schedule_name=schedule_name,
            fairness_key=self.fairness_key,
        )
        return ValidatedJob(job, json.dumps(self.payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False))


@dataclass(frozen=True)
class Schedule:
    """One row of job_schedules."""

    schedule_id: int
    name: str
    cron: str
    time_zone: str
    template: JobTemplate
    next_run_at: datetime
    created_at: datetime
    last_run_at: datetime | None = None
    last_job_id: int | None = None
    # Set while paused (PauseSchedule): the schedule submits nothing.
    paused_at: datetime | None = None

    @property
    def paused(self) -> bool:
        return self.paused_at is not None


@dataclass(frozen=True)
class NewSchedule:
    """A schedule as CreateSchedule received it. ``validate`` checks every rule once."""

    name: str
    cron: str
    time_zone: str
    job: NewJob

    def validate(
        self, max_payload_bytes: int, now: datetime, egress: EgressPolicy = DEFAULT_POLICY
    ) -> tuple[CronExpression, JobTemplate, datetime]:
        """Raise InvalidArgument naming the first bad field (``schedule.<field>``); else the parsed
        expression, the job template and the first occurrence after ``now``. ``egress`` judges the
        job's callback_url (see NewJob.validate)."""
        try:
            return self._validate(max_payload_bytes, now, egress)
        except InvalidArgument as exc:
            raise exc.within("schedule") from None

    def _validate(
        self, max_payload_bytes: int, now: datetime, egress: EgressPolicy
    ) -> tuple[CronExpression, JobTemplate, datetime]:
        if not self.name:
            raise InvalidArgument("name", "is required")
        if not TYPE_PATTERN.fullmatch(self.name):
            raise InvalidArgument("name", "must be 1-128 characters of a-z 0-9 _ . -")
        if not self.cron.strip():
            raise InvalidArgument("cron", "is required")
        expression = CronExpression(self.cron, self.time_zone)
        first = expression.next_after(now)
        if first is None:
            raise InvalidArgument("cron", f"{self.cron!r} never fires: no date matches it")
        job = self.job
        forbidden = {
            "scheduled_at": (job.scheduled_at is not None, "each occurrence's job is scheduled at its occurrence"),
            "idempotency_key": (job.idempotency_key is not None, "each occurrence's job gets a key of its own"),
            "depends_on": (bool(job.depends_on), "a schedule's jobs cannot depend on other jobs"),
            "depends_on_index": (bool(job.depends_on_index), "a schedule's jobs cannot depend on other jobs"),
        }
        for name, (present, why) in forbidden.items():
            if present:
                raise InvalidArgument(f"job.{name}", f"is not allowed in a schedule's job: {why}")
        try:
            job.validate(max_payload_bytes, egress=egress)
        except InvalidArgument as exc:
            raise exc.within("job") from None
        template = JobTemplate(
            type=job.type,
            payload=job.payload,
            priority=job.priority,
            max_attempts=job.max_attempts,
            timeout_seconds=job.timeout_seconds,
            callback_url=job.callback_url,
            concurrency_key=job.concurrency_key,
            unique_key=job.unique_key,
            fairness_key=job.fairness_key,
        )
        return expression, template, first
