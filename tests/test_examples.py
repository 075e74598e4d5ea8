"""The example handlers (examples/handlers.py), tested the way a team tests its own: in-process with
``services.executor.testing.run_handler``, no database and no service. tests/test_client.py runs them
through real processes with the example producer."""

from __future__ import annotations

import examples.handlers  # noqa: F401 - registers the example handlers, as --handlers examples.handlers does
from examples.jobs import Countdown, Flaky, WordCount, countdown, flaky, word_count
from services.executor.registry import default_registry
from services.executor.testing import JobStatus, run_handler


def test_each_example_type_takes_the_model_its_job_type_declares():
    for job_type in (word_count, countdown, flaky):
        registration = default_registry.get(job_type.name)
        assert registration is not None and registration.payload_type is job_type.payload_type


def test_word_count_counts_words_lines_and_the_most_frequent():
    run = run_handler(word_count, WordCount(text="to be or not to be\nthat is the question", top=2))
    assert run.status is JobStatus.COMPLETED
    assert run.result == {"words": 10, "lines": 2, "top": [["be", 2], ["to", 2]]}
    assert run_handler("examples.word_count", {"text": ""}).result == {"words": 0, "lines": 0, "top": []}


def test_word_count_refuses_a_bad_payload_without_retrying():
    run = run_handler(word_count, {"text": 12, "top": -1}, attempt=1, max_attempts=3)
    assert run.status is JobStatus.FAILED
    assert run.error_message == (
        "InvalidPayload: payload.text: input should be a valid string; "
        "payload.top: input should be greater than or equal to 0"
    )


def test_countdown_reports_progress_and_stops_when_cancelled():
    run = run_handler(countdown, Countdown(start=4, interval=0.01), attempt=2)
    assert run.status is JobStatus.COMPLETED and run.result == {"counted_from": 4, "attempt": 2}
    assert run.progress[0] == (0, "4 to go") and run.progress[-1] == (100, "done")
    assert [percent for percent, _ in run.progress] == sorted(percent for percent, _ in run.progress)

    cancelled = run_handler(countdown, Countdown(start=1000, interval=1), cancel_after=0.1)
    assert cancelled.status is JobStatus.CANCELLED
    timed_out = run_handler(countdown, Countdown(start=1000, interval=1), timeout_seconds=1)
    assert timed_out.will_retry and timed_out.error_message == "timed out after 1 s"
    assert "payload.interval" in (run_handler(countdown, {"interval": 61}).error_message or "")


def test_flaky_fails_its_first_attempts_then_succeeds():
    first = run_handler(flaky, Flaky(failures=2), attempt=1, max_attempts=3)
    assert first.will_retry and first.error_message == "ConnectionError: simulated outage on attempt 1 of 3"
    assert run_handler(flaky, Flaky(failures=2), attempt=3, max_attempts=3).result == {"succeeded_on_attempt": 3}
    assert run_handler(flaky, Flaky(failures=5), attempt=3, max_attempts=3).status is JobStatus.FAILED
