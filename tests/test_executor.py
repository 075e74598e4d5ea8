"""The executor as operators run it: a real ``python -m services.executor`` process against real PostgreSQL.

The helpers (starting executors, submitting jobs, reading metrics) are in tests/support/executors.py, the
``executors`` and ``start_executor`` fixtures in tests/conftest.py.
"""

from __future__ import annotations

import signal
import time
from datetime import datetime, timedelta, timezone

import pytest

from shared.jobs import FINISHED_STATUSES, JobStatus
from tests.support.database import fresh_database, server_url
from tests.support.executors import TEST_HANDLERS, Executor, get_jobs, submit, wait_for_jobs
from tests.support.gateway import gateway
from tests.support.job_rows import execute
from tests.support.processes import ServiceProcess, wait_until

# -- the basics ----------------------------------------------------------------------------------------


def test_echo_completes_with_its_payload_as_result_within_milliseconds_of_submit(engine, start_executor):
    # A 60 s poll: only LISTEN/NOTIFY can explain a fast start.
    executor = start_executor(env={"EXECUTOR_POLL_INTERVAL_SECONDS": "60"})
    time.sleep(0.3)  # the listener is connected right after start
    [job_id] = submit(engine, "echo", {"greeting": "hello", "n": [1, 2, 3]})
    job = wait_for_jobs(engine, [job_id], timeout=5)[job_id]
    assert job.status is JobStatus.COMPLETED
    assert job.result == {"greeting": "hello", "n": [1, 2, 3]}
    assert job.attempts == 1
    assert job.lease_token is None and job.lease_owner is None and job.lease_expires_at is None
    assert job.started_at is not None and job.finished_at is not None
    wake_up = (job.started_at - job.created_at).total_seconds()
    assert wake_up < 0.5, f"leased {wake_up:.3f}s after submit"
    wait_until(lambda: executor.metric("jobs_completed_total", job_type="echo") == 1, 5)
    assert executor.metric("job_duration_seconds_count", job_type="echo") == 1
    assert executor.metric("job_queue_wait_seconds_count", job_type="echo") == 1
    assert executor.metric("worker_up") == 1
    assert executor.metric("leases_taken_total") == 1


def test_jobs_start_in_priority_order_then_submit_order(engine, start_executor):
    priorities = [5, 1, 10, 3, 1, 5, 2, 10, 1]
    ids = [submit(engine, "echo", {"i": i}, priority=p)[0] for i, p in enumerate(priorities)]
    start_executor("--concurrency", "1")
    jobs = wait_for_jobs(engine, ids)
    started = sorted(jobs.values(), key=lambda job: job.started_at)
    expected = [job_id for _, job_id in sorted(zip(priorities, ids, strict=True))]
    assert [job.job_id for job in started] == expected


def test_behind_a_transaction_pooler_it_polls_without_listen(engine, start_executor):
    executor = start_executor("--poll-interval", "0.1", env={"DATABASE_POOLER": "transaction"})
    assert "poll only (DATABASE_POOLER=transaction)" in executor.output()
    assert "database: DATABASE_POOLER=transaction" in executor.output()
    ids = submit(engine, "echo", {"x": 1}, count=3)
    jobs = wait_for_jobs(engine, ids, timeout=5)
    assert {job.status for job in jobs.values()} == {JobStatus.COMPLETED}


# -- failures, retries and timeouts ---------------------------------------------------------------------


def test_failures_retry_with_growing_delays_then_fail_and_retry_job_brings_it_back(engine, start_executor):
    executor = start_executor(env={"RETRY_BACKOFF_BASE_SECONDS": "1", "RETRY_BACKOFF_CAP_SECONDS": "3600"})
    [job_id] = submit(engine, "fail", {"message": "smtp down"}, max_attempts=3)
    delays = []
    for attempt in (1, 2):
        job = wait_for_jobs(engine, [job_id], {JobStatus.PENDING})[job_id]
        assert job.attempts == attempt
        assert job.error_message == "DeliberateFailure: smtp down"
        assert job.lease_token is None and job.finished_at is None
        delays.append((job.run_at - job.updated_at).total_seconds())
        # Play the scheduler: the retry is due now.
        execute(engine, "UPDATE jobs SET status = 'READY', run_at = now() WHERE job_id = :id", id=job_id)
        execute(engine, "SELECT pg_notify('jobs_ready', '')")
    # Equal jitter: attempt n waits between half and all of base * 2**(n-1).
    assert 0.5 <= delays[0] <= 1.0 + 0.05
    assert 1.0 <= delays[1] <= 2.0 + 0.05
    assert delays[1] > delays[0]
    job = wait_for_jobs(engine, [job_id])[job_id]
    assert job.status is JobStatus.FAILED
    assert job.attempts == 3
    assert job.error_message == "DeliberateFailure: smtp down"
    assert job.finished_at is not None
    wait_until(lambda: executor.metric("jobs_retried_total", job_type="fail") == 2, 5)
    assert executor.metric("jobs_failed_total", job_type="fail") == 1

    gateway(engine).retry_job(job_id)
    job = wait_for_jobs(engine, [job_id], {JobStatus.PENDING})[job_id]
    assert job.attempts == 1


def test_fail_succeeds_after_its_first_times_attempts(engine, start_executor):
    start_executor(env={"RETRY_BACKOFF_BASE_SECONDS": "0", "RETRY_BACKOFF_CAP_SECONDS": "0"})
    [job_id] = submit(engine, "fail", {"times": 1}, max_attempts=3)
    wait_for_jobs(engine, [job_id], {JobStatus.PENDING})
    execute(engine, "UPDATE jobs SET status = 'READY', run_at = now() WHERE job_id = :id", id=job_id)
    job = wait_for_jobs(engine, [job_id])[job_id]
    assert job.status is JobStatus.COMPLETED
    assert job.result == {"succeeded_on_attempt": 2}
    assert job.error_message is None


def test_a_permanent_error_fails_at_once(engine, start_executor):
    start_executor()
    [job_id] = submit(engine, "fail", {"message": "bad input", "permanent": True}, max_attempts=5)
    job = wait_for_jobs(engine, [job_id])[job_id]
    assert job.status is JobStatus.FAILED
    assert job.attempts == 1
    assert job.error_message == "PermanentError: bad input"


def test_timeouts_fail_the_attempt_and_free_the_slot(engine, start_executor):
    executor = start_executor("--concurrency", "2")
    # One async handler (its task is cancelled) and one sync handler that ignores cancellation (abandoned).
    [async_id] = submit(engine, "sleep", {"seconds": 30}, timeout_seconds=1, max_attempts=1)
    [sync_id] = submit(engine, "tests.block_sync", {"seconds": 4}, timeout_seconds=1, max_attempts=2)
    jobs = wait_for_jobs(engine, [async_id, sync_id], FINISHED_STATUSES | {JobStatus.PENDING}, timeout=5)
    assert jobs[async_id].status is JobStatus.FAILED
    assert jobs[async_id].error_message == "timed out after 1 s"
    assert jobs[sync_id].status is JobStatus.PENDING  # retryable: attempts remain
    assert jobs[sync_id].error_message == "timed out after 1 s"
    for job in jobs.values():
        assert (job.updated_at - job.started_at).total_seconds() < 2.5
    # Both slots are free again at once, although the sync handler's thread still runs.
    assert executor.metric("abandoned_threads") == 1
    ids = submit(engine, "echo", {}, count=2)
    assert {job.status for job in wait_for_jobs(engine, ids, timeout=2).values()} == {JobStatus.COMPLETED}
    wait_until(lambda: executor.metric("abandoned_threads") == 0, 10, what="the abandoned thread to return")
    assert executor.alive()


# -- cancel ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("job_type", ["sleep", "tests.cooperative_sync"])
def test_cancelling_a_running_job_ends_it_cancelled(engine, start_executor, job_type):
    executor = start_executor()
    [job_id] = submit(engine, job_type, {"seconds": 60})
    wait_for_jobs(engine, [job_id], {JobStatus.PROCESSING})
    gateway(engine).cancel_job(job_id)
    requested = time.monotonic()
    job = wait_for_jobs(engine, [job_id], timeout=5)[job_id]
    assert time.monotonic() - requested < 2
    assert job.status is JobStatus.CANCELLED
    assert job.error_message == "cancelled by request"
    assert job.result is None
    assert job.lease_token is None
    wait_until(lambda: executor.metric("jobs_cancelled_total", job_type=job_type) == 1, 5)
    assert executor.metric("abandoned_threads") == 0  # the cooperative handler returned


# -- shutdown -------------------------------------------------------------------------------------------


def test_sigterm_lets_short_jobs_finish_and_hands_long_ones_back_uncounted(engine, start_executor):
    executor = start_executor("--concurrency", "3", "--shutdown-grace", "3")
    [short_id] = submit(engine, "sleep", {"seconds": 1})
    [long_id] = submit(engine, "sleep", {"seconds": 60})
    [sync_id] = submit(engine, "tests.block_sync", {"seconds": 60})
    wait_for_jobs(engine, [short_id, long_id, sync_id], {JobStatus.PROCESSING, JobStatus.COMPLETED})
    executor.signal(signal.SIGTERM)
    assert executor.wait_stopped(20) == 0
    jobs = get_jobs(engine, [short_id, long_id, sync_id])
    assert jobs[short_id].status is JobStatus.COMPLETED
    for job_id in (long_id, sync_id):
        job = jobs[job_id]
        assert job.status is JobStatus.READY
        assert job.attempts == 0
        assert job.lease_token is None and job.lease_owner is None and job.lease_expires_at is None
    output = executor.output()
    assert "handed 2 unfinished jobs back" in output
    assert "Traceback" not in output


def test_a_second_signal_skips_the_grace_period(engine, start_executor):
    executor = start_executor("--shutdown-grace", "60")
    [job_id] = submit(engine, "sleep", {"seconds": 60})
    wait_for_jobs(engine, [job_id], {JobStatus.PROCESSING})
    executor.signal(signal.SIGTERM)
    wait_until(lambda: "stopping: waiting up to" in executor.output(), 5)
    executor.signal(signal.SIGINT)
    assert executor.wait_stopped(10) == 0
    assert get_jobs(engine, [job_id])[job_id].status is JobStatus.READY


# -- lease fencing --------------------------------------------------------------------------------------


def test_a_stale_outcome_is_dropped_and_counted(engine, start_executor):
    # No lease checks during the job: the executor only finds out when it writes the outcome.
    executor = start_executor(
        env={
            "EXECUTOR_LEASE_SECONDS": "120",
            "EXECUTOR_HEARTBEAT_INTERVAL_SECONDS": "60",
            "EXECUTOR_CANCEL_CHECK_INTERVAL_SECONDS": "60",
        }
    )
    [job_id] = submit(engine, "sleep", {"seconds": 2})
    wait_for_jobs(engine, [job_id], {JobStatus.PROCESSING})
    # Another party took the job over (as after a rescue and a new lease): a new token.
    execute(engine, "UPDATE jobs SET lease_token = gen_random_uuid() WHERE job_id = :id", id=job_id)
    wait_until(lambda: executor.metric("stale_outcomes_total") == 1, 10, what="the stale outcome")
    job = get_jobs(engine, [job_id])[job_id]
    assert job.status is JobStatus.PROCESSING  # the newer holder's job was not overwritten
    assert job.result is None
    assert "stale outcome dropped" in executor.output()
    assert executor.metric("jobs_completed_total", job_type="sleep") == 0


def test_a_lost_lease_is_noticed_while_running_and_the_job_left_to_its_new_holder(engine, start_executor):
    executor = start_executor()
    [job_id] = submit(engine, "sleep", {"seconds": 60})
    wait_for_jobs(engine, [job_id], {JobStatus.PROCESSING})
    execute(engine, "UPDATE jobs SET lease_token = gen_random_uuid() WHERE job_id = :id", id=job_id)
    wait_until(lambda: executor.metric("leases_lost_total") == 1, 5, what="the lost lease")
    assert executor.metric("jobs_running") == 0  # the slot is free
    job = get_jobs(engine, [job_id])[job_id]
    assert job.status is JobStatus.PROCESSING  # nothing written over the new holder's lease
    assert "lease lost while running" in executor.output()


def test_re_leasing_a_job_still_running_here_discards_the_old_attempt(engine, start_executor):
    # The lease is taken away (as by the scheduler's rescue) and the same executor leases the job again
    # before any lease check: the old attempt must not complete it, nor steal the new attempt's slot.
    executor = start_executor(env={"EXECUTOR_CANCEL_CHECK_INTERVAL_SECONDS": "60"})
    [job_id] = submit(engine, "sleep", {"seconds": 2})
    wait_for_jobs(engine, [job_id], {JobStatus.PROCESSING})
    execute(
        engine,
        "UPDATE jobs SET status = 'READY', lease_token = NULL, lease_owner = NULL"
        " WHERE job_id = :id AND status = 'PROCESSING'",
        id=job_id,
    )
    execute(engine, "SELECT pg_notify('jobs_ready', '')")
    job = wait_for_jobs(engine, [job_id])[job_id]
    assert (job.status, job.attempts) == (JobStatus.COMPLETED, 2)
    assert executor.metric("leases_lost_total") == 1
    wait_until(lambda: executor.metric("jobs_completed_total", job_type="sleep") == 1, 5)
    assert executor.metric("jobs_running") == 0
    assert executor.metric("stale_outcomes_total") == 0


def test_heartbeats_extend_leases(engine, start_executor):
    executor = start_executor(env={"EXECUTOR_LEASE_SECONDS": "2", "EXECUTOR_HEARTBEAT_INTERVAL_SECONDS": "0.3"})
    [job_id] = submit(engine, "sleep", {"seconds": 3})
    first = wait_for_jobs(engine, [job_id], {JobStatus.PROCESSING})[job_id].lease_expires_at
    wait_until(lambda: get_jobs(engine, [job_id])[job_id].lease_expires_at != first, 3, what="a heartbeat")
    job = wait_for_jobs(engine, [job_id], timeout=10)[job_id]
    assert job.status is JobStatus.COMPLETED  # ran past its first lease's expiry, still its own
    assert executor.metric("heartbeats_total") >= 2


# -- restricting and loading handlers -------------------------------------------------------------------


def test_types_restricts_the_jobs_an_executor_leases(engine, start_executor):
    executor = start_executor("--types", "echo,no.such.type")
    assert "no.such.type" in executor.output()  # warned: no handler, never leased
    [echo_id] = submit(engine, "echo", {})
    [sleep_id] = submit(engine, "sleep", {"seconds": 0})
    [unknown_id] = submit(engine, "no.such.type", {})
    assert wait_for_jobs(engine, [echo_id])[echo_id].status is JobStatus.COMPLETED
    time.sleep(0.5)  # a few polls
    jobs = get_jobs(engine, [sleep_id, unknown_id])
    assert {job.status for job in jobs.values()} == {JobStatus.READY}
    # What the "no executor serves a type with READY jobs" alert reads: echo only.
    served = {key for key, value in executor.metrics().items() if key.startswith("worker_up_by_type") and value == 1}
    assert served == {'worker_up_by_type{job_type="echo"}'}


def test_an_executor_without_handler_modules_leaves_their_types_alone(engine, start_executor):
    start_executor(env={"EXECUTOR_HANDLERS": ""})
    [record_id] = submit(engine, "tests.record", {})
    [echo_id] = submit(engine, "echo", {})
    wait_for_jobs(engine, [echo_id])
    time.sleep(0.4)
    assert get_jobs(engine, [record_id])[record_id].status is JobStatus.READY


def test_handlers_from_a_module_given_by_flag(engine, start_executor, tmp_path):
    start_executor("--handlers", TEST_HANDLERS, env={"EXECUTOR_HANDLERS": "", "RECORD_DIR": str(tmp_path)})
    ids = submit(engine, "tests.record", {}, count=3)
    jobs = wait_for_jobs(engine, ids)
    assert all(job.status is JobStatus.COMPLETED and job.result == {"job_id": job.job_id} for job in jobs.values())
    recorded = sorted(int(line.split()[0]) for path in tmp_path.iterdir() for line in path.read_text().splitlines())
    assert recorded == sorted(ids)


# -- bad input never crashes the executor ---------------------------------------------------------------


def test_bad_results_and_payloads_fail_the_job_with_a_clear_error(engine, start_executor):
    executor = start_executor()
    cases = {
        "set": "not JSON-serialisable",
        "list": "handler returned list, not a dict",
        "huge": "bytes as JSON; the limit is 1048576",
        "nan": "not JSON-serialisable",
        "nul": "NUL characters",
    }
    ids = {kind: submit(engine, "tests.bad_result", {"kind": kind}, max_attempts=3)[0] for kind in cases}
    sync_ids = {kind: submit(engine, "tests.bad_result_sync", {"kind": kind})[0] for kind in ("set", "huge")}
    [exit_id] = submit(engine, "tests.exit", {}, max_attempts=1)
    # A payload the API would refuse, written behind its back.
    # (PENDING first, so that the executor cannot run it before the payload is replaced).
    [array_id] = submit(engine, "echo", {}, scheduled_at=datetime.now(timezone.utc) + timedelta(hours=1))
    execute(
        engine,
        "UPDATE jobs SET payload = '[1, 2]'::jsonb, status = 'READY', run_at = now() WHERE job_id = :id",
        id=array_id,
    )
    jobs = wait_for_jobs(engine, [*ids.values(), *sync_ids.values(), exit_id, array_id])
    for kind, job_id in sync_ids.items():
        assert (jobs[job_id].status, jobs[job_id].attempts) == (JobStatus.FAILED, 1)
        assert cases[kind] in (jobs[job_id].error_message or ""), jobs[job_id].error_message
    for kind, expected in cases.items():
        job = jobs[ids[kind]]
        assert job.status is JobStatus.FAILED, kind
        assert job.attempts == 1, kind  # retrying would return the same thing
        assert expected in (job.error_message or ""), (kind, job.error_message)
    assert jobs[exit_id].status is JobStatus.FAILED
    assert "SystemExit" in (jobs[exit_id].error_message or "")
    assert jobs[array_id].status is JobStatus.FAILED
    assert jobs[array_id].error_message == "payload must be a JSON object, got list"
    # Still serving.
    [echo_id] = submit(engine, "echo", {"still": "here"})
    assert wait_for_jobs(engine, [echo_id])[echo_id].status is JobStatus.COMPLETED
    assert executor.alive()


# -- start-up checks ------------------------------------------------------------------------------------


def test_bad_settings_fail_at_start_naming_the_variable(db):
    for env, args, expected in [
        ({"EXECUTOR_CONCURRENCY": "many"}, [], "EXECUTOR_CONCURRENCY='many' is not a whole number"),
        ({}, ["--concurrency", "0"], "--concurrency: EXECUTOR_CONCURRENCY=0 is below the minimum 1"),
        ({"DATABASE_POOLER": "maybe"}, [], "DATABASE_POOLER='maybe' must be one of none, session, transaction"),
        ({"EXECUTOR_LEASE_SECONDS": "5", "EXECUTOR_HEARTBEAT_INTERVAL_SECONDS": "5"}, [], "must be below"),
        ({"EXECUTOR_HANDLERS": "no_such_module_xyz"}, [], "cannot import handler module 'no_such_module_xyz'"),
        ({"EXECUTOR_TYPES": "nothing.registered"}, [], "no job type to run"),
        ({"SMTP_STARTTLS": "true", "SMTP_SSL": "true"}, [], "SMTP_STARTTLS and SMTP_SSL are both true"),
    ]:
        process = Executor(db, args, env)
        process.start()
        code = process.wait_stopped(20)
        process.stop()
        assert code == 2, (env, args, process.output())
        assert expected in process.output(), (expected, process.output())


def test_a_database_behind_the_code_stops_the_executor_with_a_hint():
    with fresh_database(server_url(), "unmigrated", migrated=False) as url:
        process = Executor(url)
        process.start()
        code = process.wait_stopped(20)
        process.stop()
    assert code == 2
    assert "jobservice migrate" in process.output()


def test_help_describes_the_flags():
    process = ServiceProcess("services.executor", {}, ["--help"]).start()
    assert process.process is not None
    assert process.process.wait(20) == 0
    process.stop()
    output = process.output()
    for flag in ("--concurrency", "--types", "--handlers", "--database-pooler", "--shutdown-grace", "--metrics-port"):
        assert flag in output
    assert "EXECUTOR_CONCURRENCY" in output and "RETRY_BACKOFF_BASE_SECONDS" in output


def test_list_handlers_shows_built_ins_and_loaded_modules():
    process = ServiceProcess(
        "services.executor", {"EXECUTOR_HANDLERS": TEST_HANDLERS}, ["--list-handlers", "--metrics-port", "0"]
    ).start()
    assert process.process is not None
    assert process.process.wait(20) == 0
    process.stop()
    lines = dict(line.split("\t", 1) for line in process.output().splitlines() if "\t" in line)
    assert lines["echo"].startswith("inline\t")
    assert lines["sleep"].startswith("async\t")
    assert lines["send_email"].startswith("thread\t")
    assert lines["http_request"].startswith("async\t")
    assert lines["tests.record"] == "async\ttests.handlers_for_tests.record\tdict"
    assert lines["tests.typed"] == "thread\ttests.handlers_for_tests.typed\ttests.handlers_for_tests.Invoice"
