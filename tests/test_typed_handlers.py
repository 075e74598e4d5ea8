"""Typed handlers: a payload annotated with a pydantic model or a dataclass arrives validated, a payload that
does not fit fails the job at once naming each field, and a model returned is stored as its JSON.

First in-process, through ``services.executor.testing.run_handler`` (which runs the executor's own Runner),
then through a real executor process against PostgreSQL.
"""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import sys
import textwrap
import time
from datetime import date
from typing import TYPE_CHECKING, Any

import pytest
from pydantic import BaseModel, Field

from jobclient import JobDefinition
from services.executor import InvalidPayload, PermanentError
from services.executor.outcomes import InvalidResult, encode_result
from services.executor.registry import HandlerRegistry, Mode, RegistryError
from services.executor.testing import UNREGISTERED_TYPE, JobStatus, run_handler, run_handler_async
from tests.support.executors import submit, wait_for_jobs

if TYPE_CHECKING:  # only for the type checker: registration must cope with names it cannot resolve
    from services.executor import JobContext


class Order(BaseModel):
    sku: str
    quantity: int = Field(ge=1)
    gift: bool = False


class Shipped(BaseModel):
    sku: str
    parcels: int
    ship_on: date


@dataclasses.dataclass
class Point:
    x: int
    y: int


def ship(payload: Order, ctx: JobContext) -> Shipped:
    assert isinstance(payload, Order)
    return Shipped(sku=payload.sku, parcels=payload.quantity, ship_on=date(2030, 5, 17))


async def move(payload: Point, ctx: JobContext) -> Point:
    assert isinstance(payload, Point)
    await asyncio.sleep(0)
    return Point(payload.x + 1, payload.y + 1)


def untyped(payload: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    return payload


def registry_with(*handlers: tuple[str | JobDefinition[Any], Any], inline: bool = False) -> HandlerRegistry:
    registry = HandlerRegistry()
    for job_type, function in handlers:
        registry.register(job_type, function, inline=inline)
    return registry


# -- registration: the annotation is read once --------------------------------------------------------------


def test_registration_reads_the_payload_type_once_and_leaves_untyped_handlers_alone():
    registry = registry_with(("ship", ship), ("move", move), ("untyped", untyped), ("lambda", lambda p, c: p))
    assert registry.get("ship").payload_type is Order
    assert registry.get("move").payload_type is Point
    assert registry.get("move").mode is Mode.ASYNC  # still async behind the validation
    for name in ("untyped", "lambda"):
        registration = registry.get(name)
        assert registration.payload_type is None
        assert registration.function is registration.handler  # called as it is: nothing added per job
    # Registering the same function again (a module imported twice) is no duplicate.
    registry.register("ship", ship)


def test_a_declared_job_type_gives_its_payload_type_and_must_agree_with_the_annotation():
    shipping = JobDefinition("ship", Order)
    registry = registry_with((shipping, ship), (JobDefinition("ship_any", Order), lambda payload, ctx: payload.sku))
    assert registry.get("ship").payload_type is Order
    assert registry.get("ship_any").payload_type is Order  # unannotated: the declared type
    with pytest.raises(RegistryError, match=r"declares its payload as Order, but .*move takes .*Point"):
        registry.register(JobDefinition("other", Order), move)
    with pytest.raises(RegistryError, match=r"declares its payload as Order.*untyped takes dict"):
        registry.register(JobDefinition("other", Order), untyped)
    with pytest.raises(RegistryError, match="not a pydantic model or a dataclass"):
        registry.register(JobDefinition("other", dict), untyped)


def test_a_payload_annotation_that_cannot_be_resolved_is_refused_at_registration(tmp_path, monkeypatch):
    module = tmp_path / "unresolvable_handlers_for_tests.py"
    module.write_text(
        textwrap.dedent(
            """
            from __future__ import annotations
            from typing import TYPE_CHECKING
            if TYPE_CHECKING:
                from somewhere import Missing

            def handler(payload: Missing, ctx):
                return {}
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    from unresolvable_handlers_for_tests import handler  # type: ignore[import-not-found]

    with pytest.raises(RegistryError, match=r"cannot resolve the payload annotation .*NameError.*Missing"):
        HandlerRegistry().register("missing", handler)


def test_an_executor_without_typed_handlers_starts_without_importing_pydantic():
    # pydantic costs a few hundred milliseconds of start-up; only typed handlers (or results) need it.
    script = (
        "import sys; from services.executor.__main__ import main; "
        "main(['--list-handlers']); print('pydantic' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    assert "send_email\tthread\t" in result.stdout
    assert result.stdout.splitlines()[-1] == "False"


# -- in-process, through the executor's Runner ---------------------------------------------------------------


@pytest.mark.parametrize("inline", [False, True], ids=["thread", "inline"])
def test_a_good_payload_arrives_as_the_model_and_the_returned_model_is_stored_as_json(inline):
    registry = registry_with(("ship", ship), inline=inline)
    run = run_handler("ship", {"sku": "A-1", "quantity": "3"}, registry=registry)
    assert run.status is JobStatus.COMPLETED, run.error_message
    assert run.result == {"sku": "A-1", "parcels": 3, "ship_on": "2030-05-17"}


def test_a_bad_payload_fails_at_once_naming_each_field():
    registry = registry_with(("ship", ship))
    run = run_handler("ship", {"quantity": 0, "gift": "maybe"}, attempt=1, max_attempts=5, registry=registry)
    assert run.status is JobStatus.FAILED and not run.will_retry  # attempts left, yet no retry
    assert run.error_message == (
        "InvalidPayload: payload.sku: field required; payload.quantity: input should be greater than or equal to 1; "
        "payload.gift: input should be a valid boolean, unable to interpret input"
    )


def test_dataclasses_and_async_handlers_and_nested_locations():
    registry = registry_with(("move", move))
    assert run_handler("move", Point(1, 2), registry=registry).result == {"x": 2, "y": 3}
    run = run_handler("move", {"x": "left"}, registry=registry)
    assert run.status is JobStatus.FAILED
    assert "payload.x: input should be a valid integer" in run.error_message
    assert "payload.y: field required" in run.error_message

    class Batch(BaseModel):
        points: list[dict[str, Point]]

    batch = JobDefinition("batch", Batch)
    nested = registry_with((batch, lambda payload, ctx: {"n": len(payload.points)}))
    assert run_handler(batch, {"points": [{"a": {"x": 1, "y": 2}}]}, registry=nested).result == {"n": 1}
    run = run_handler(batch, {"points": [{"a": {"x": 1, "y": 2}}, {"b": {"x": 1}}]}, registry=nested)
    assert run.status is JobStatus.FAILED  # the declared type (unannotated handler), with the index of the item
    assert run.error_message == "InvalidPayload: payload.points[1].b.y: field required"


def test_validation_errors_are_permanent_errors():
    assert issubclass(InvalidPayload, PermanentError)


def test_results_may_be_models_or_dataclasses_but_must_still_be_json_objects():
    assert encode_result(Point(1, 2), 1000) == '{"x":1,"y":2}'
    assert encode_result(Shipped(sku="é", parcels=1, ship_on=date(2030, 1, 1)), 1000) == (
        '{"sku":"é","parcels":1,"ship_on":"2030-01-01"}'
    )
    with pytest.raises(InvalidResult, match="the limit is 10"):
        encode_result(Point(1, 2), 10)
    with pytest.raises(InvalidResult, match="not JSON-serialisable"):
        encode_result(Point(float("nan"), 1), 1000)
    with pytest.raises(InvalidResult, match="handler returned list"):
        encode_result([Point(1, 2)], 1000)


def test_a_handler_function_runs_under_its_own_registration_or_a_test_one():
    assert run_handler(ship, Order(sku="B", quantity=2), registry=registry_with(("ship", ship))).job_type == "ship"
    run = run_handler(lambda payload, ctx: {"type": ctx.type, "got": payload}, (1, 2), registry=HandlerRegistry())
    assert run.job_type == UNREGISTERED_TYPE
    assert run.status is JobStatus.FAILED and "payload must be a JSON object" in run.error_message
    tupled = run_handler(lambda payload, ctx: {"got": payload}, {"pair": (1, 2)}, registry=HandlerRegistry())
    assert tupled.result == {"got": {"pair": [1, 2]}}  # through JSON, as from the jobs table
    with pytest.raises(LookupError, match="no handler is registered for job type 'nope'"):
        run_handler("nope", {}, registry=HandlerRegistry())
    with pytest.raises(ValueError, match="payload cannot be stored as JSON"):
        run_handler(untyped, {"when": date(2030, 1, 1)}, registry=HandlerRegistry())


def test_failures_map_to_outcomes_as_in_the_executor():
    def failing(payload: dict[str, Any], ctx: JobContext) -> None:
        if payload.get("permanent"):
            raise PermanentError("bad input")
        raise ConnectionError("downstream is down")

    registry = registry_with(("failing", failing))
    retried = run_handler("failing", {}, attempt=1, max_attempts=3, registry=registry)
    assert retried.status is JobStatus.PENDING and retried.will_retry
    assert retried.error_message == "ConnectionError: downstream is down" and retried.retry_delay > 0
    last = run_handler("failing", {}, attempt=3, max_attempts=3, registry=registry)
    assert last.status is JobStatus.FAILED and last.retry_delay is None
    permanent = run_handler("failing", {"permanent": True}, attempt=1, registry=registry)
    assert permanent.status is JobStatus.FAILED and permanent.error_message == "PermanentError: bad input"


def test_the_context_gives_progress_deadline_and_cancellation():
    def reporting(payload: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
        ctx.report_progress(40, "first half")
        ctx.wait_cancelled(0.2)
        ctx.report_progress(90, "almost")
        return {"job_id": ctx.job_id, "attempt": ctx.attempt, "remaining": ctx.remaining_seconds}

    run = run_handler(reporting, {}, job_id=77, attempt=2, timeout_seconds=60, registry=HandlerRegistry())
    assert run.status is JobStatus.COMPLETED
    assert run.result["job_id"] == 77 and run.result["attempt"] == 2 and 0 < run.result["remaining"] <= 60
    assert run.progress == [(40, "first half"), (90, "almost")]

    def waiting(payload: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
        return {"cancelled": ctx.wait_cancelled(60)}

    started = time.monotonic()
    cancelled = run_handler(waiting, {}, cancel_after=0.2, registry=HandlerRegistry())
    assert cancelled.status is JobStatus.CANCELLED and cancelled.error_message == "cancelled by request"
    timed_out = run_handler(waiting, {}, timeout_seconds=1, attempt=3, max_attempts=3, registry=HandlerRegistry())
    assert timed_out.status is JobStatus.FAILED and timed_out.error_message == "timed out after 1 s"
    assert time.monotonic() - started < 30  # neither waited for the handler's 60 s


def test_run_handler_async_serves_callers_inside_an_event_loop():
    async def main() -> JobStatus:
        run = await run_handler_async(move, {"x": 1, "y": 1}, registry=registry_with(("move", move)))
        return run.status

    assert asyncio.run(main()) is JobStatus.COMPLETED


# -- through a real executor ---------------------------------------------------------------------------------


def test_typed_jobs_through_an_executor(engine, start_executor):
    start_executor()
    good = submit(engine, "tests.typed", {"customer": "acme", "amount_cents": 250, "due": "2030-02-01",
                                          "lines": [{"sku": "a", "quantity": 2}, {"sku": "b"}]})[0]  # fmt: skip
    bad = submit(
        engine, "tests.typed", {"amount_cents": -1, "due": "soon", "lines": [{"quantity": 1}]}, max_attempts=3
    )[0]
    greeting = submit(engine, "tests.typed_dataclass", {"name": "ada", "times": 2})[0]
    wrong_greeting = submit(engine, "tests.typed_dataclass", {"times": "often"}, max_attempts=3)[0]
    jobs = wait_for_jobs(engine, [good, bad, greeting, wrong_greeting])

    assert jobs[good].status is JobStatus.COMPLETED, jobs[good].error_message
    assert jobs[good].result == {
        "customer": "acme", "total_cents": 750, "due": "2030-02-01", "issued_at": "2030-01-02T03:04:05Z",
    }  # fmt: skip
    assert jobs[greeting].result == {"name": "hello ada hello ada", "times": 2}

    assert jobs[bad].status is JobStatus.FAILED and jobs[bad].attempts == 1  # 3 allowed, 1 used: no retry
    assert jobs[bad].error_message.startswith("InvalidPayload: payload.customer: field required; ")
    for field in ("payload.amount_cents: input should be greater than 0", "payload.due: input should be a valid date",
                  "payload.lines[0].sku: field required"):  # fmt: skip
        assert field in jobs[bad].error_message
    assert jobs[wrong_greeting].status is JobStatus.FAILED and jobs[wrong_greeting].attempts == 1
    assert jobs[wrong_greeting].error_message == (
        "InvalidPayload: payload.name: field required; "
        "payload.times: input should be a valid integer, unable to parse string as an integer"
    )
