"""Completion webhooks: a callback URL per job, delivered by a jobs.callback job.

When a job with a callback_url reaches COMPLETED, FAILED or CANCELLED, a row trigger inserts one READY
job of type ``jobs.callback`` whose payload holds the URL and the finished job as JSON (the shape GET
/jobs/{id} shows), and records that delivery job's id in the parent's callback_job_id. The executors'
built-in ``jobs.callback`` handler POSTs it: leasing, retries with backoff, timeouts, metrics and
tracing are those of every job.

Ordinary jobs pay nothing: the triggers' WHEN clauses are evaluated in C on each row and are false
whenever callback_url is NULL; no PL/pgSQL runs for them.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        -- The newest delivery job of this job (a job retried with RetryJob gets a new one each time
        -- it finishes). No foreign key: delivery jobs are pruned like any other finished job.
        ALTER TABLE jobs ADD COLUMN callback_job_id bigint;

        -- A timestamp as protobuf's JSON mapping (and so GET /jobs/{id}) writes it: RFC 3339 in UTC
        -- with a 'Z', and 0, 3 or 6 fractional digits, whichever is the shortest exact one.
        CREATE FUNCTION job_json_timestamp(ts timestamptz) RETURNS text
        LANGUAGE sql STABLE PARALLEL SAFE AS $$
            SELECT to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS')
                   || CASE
                          WHEN CAST(extract(microseconds FROM ts) AS bigint) % 1000000 = 0 THEN ''
                          WHEN CAST(extract(microseconds FROM ts) AS bigint) % 1000 = 0
                              THEN to_char(ts AT TIME ZONE 'UTC', '.MS')
                          ELSE to_char(ts AT TIME ZONE 'UTC', '.US')
                      END
                   || 'Z'
        $$;

        -- The webhook body: {"event": "job.finished", "job": {...}} with the job's fields named and
        -- shaped as GET /jobs/{id} shows them (unset fields as null, int64 as numbers), as of the
        -- moment it finished. callback shows the delivery as it starts: SENDING, no attempt yet.
        CREATE FUNCTION job_callback_body(j jobs, delivery_job_id bigint) RETURNS jsonb
        LANGUAGE sql STABLE PARALLEL SAFE AS $$
            SELECT jsonb_build_object(
                'event', 'job.finished',
                'job', jsonb_build_object(
                    'job_id', j.job_id,
                    'type', j.type,
                    'idempotency_key', j.idempotency_key,
                    'status', j.status,
                    'priority', j.priority,
                    'payload', j.payload,
                    'created_at', job_json_timestamp(j.created_at),
                    'updated_at', job_json_timestamp(j.updated_at),
                    'scheduled_at', job_json_timestamp(j.scheduled_at),
                    'started_at', job_json_timestamp(j.started_at),
                    'finished_at', job_json_timestamp(j.finished_at),
                    'error_message', j.error_message,
                    'attempts', j.attempts,
                    'result', j.result,
                    'max_attempts', j.max_attempts,
                    'timeout_seconds', j.timeout_seconds,
                    'run_at', job_json_timestamp(j.run_at),
                    'cancel_requested', j.cancel_requested,
                    'progress', CASE WHEN j.progress_percent IS NOT NULL THEN jsonb_build_object(
                                    'percent', j.progress_percent,
                                    'message', coalesce(j.progress_message, ''),
                                    'updated_at', job_json_timestamp(j.progress_at)) END,
                    'depends_on', to_jsonb(j.depends_on),
                    'pending_dependencies', j.pending_dependencies,
                    'callback', jsonb_build_object(
                                    'url', j.callback_url,
                                    'state', 'SENDING',
                                    'attempts', 0,
                                    'last_error', NULL,
                                    'delivery_job_id', delivery_job_id,
                                    'delivered_at', NULL),
                    'concurrency_key', j.concurrency_key,
                    'unique_key', j.unique_key,
                    'schedule', j.schedule_name))
        $$;

        -- Queue the delivery of j's webhook; its job id. The constants are the delivery policy:
        -- priority 3 (ahead of default-priority work: a receiver waits on it), 10 attempts with the
        -- executors' backoff (RETRY_BACKOFF_*), 30 s per attempt. The delivery carries the job's
        -- traceparent, so its spans join the job's trace.
        CREATE FUNCTION enqueue_job_callback(j jobs) RETURNS bigint LANGUAGE plpgsql AS $$
        DECLARE
            -- Taken before the insert so the body can name it (it is also the Webhook-Id header).
            delivery_job_id bigint := nextval(pg_get_serial_sequence('jobs', 'job_id'));
        BEGIN
            INSERT INTO jobs (job_id, type, status, priority, max_attempts, timeout_seconds, traceparent,
                              payload)
            OVERRIDING SYSTEM VALUE
            VALUES (delivery_job_id, 'jobs.callback', 'READY', 3, 10, 30, j.traceparent,
                    jsonb_build_object('url', j.callback_url,
                                       'job_id', j.job_id,
                                       'body', job_callback_body(j, delivery_job_id)));
            -- Repeats within one transaction are folded into one notification by PostgreSQL.
            PERFORM pg_notify('jobs_ready', '');
            RETURN delivery_job_id;
        END $$;

        -- AFTER (not BEFORE) so that the body is the row as finally written, whatever other triggers
        -- did. The parent is then updated from its own AFTER trigger; that update leaves status
        -- alone, so the WHEN clause (a status change) keeps it from firing again. updated_at is left
        -- alone too: it stays the time the job finished, as in the body.
        CREATE FUNCTION jobs_enqueue_callback() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            UPDATE jobs SET callback_job_id = enqueue_job_callback(NEW) WHERE job_id = NEW.job_id;
            RETURN NULL;
        END $$;

        CREATE TRIGGER jobs_callback_on_finish AFTER UPDATE ON jobs
            FOR EACH ROW
            WHEN (NEW.callback_url IS NOT NULL
                  AND NEW.status IN ('COMPLETED', 'FAILED', 'CANCELLED')
                  AND OLD.status IS DISTINCT FROM NEW.status)
            EXECUTE FUNCTION jobs_enqueue_callback();

        -- A job may be stored already finished (for example CANCELLED because a job it depends on
        -- failed); it never goes through an UPDATE of its status, so inserts are covered too.
        CREATE TRIGGER jobs_callback_on_insert_finished AFTER INSERT ON jobs
            FOR EACH ROW
            WHEN (NEW.callback_url IS NOT NULL AND NEW.status IN ('COMPLETED', 'FAILED', 'CANCELLED'))
            EXECUTE FUNCTION jobs_enqueue_callback();

        -- Jobs as the API shows them: each with its webhook's delivery job (a primary-key lookup, none
        -- for a job without a callback; see the callback_delivery_* fields of shared/jobs.py). Every read
        -- that answers a client selects from here. "j.*" is expanded when the view is created: a migration
        -- that adds a column to jobs must create the view again (tests/test_schema.py checks it did).
        CREATE VIEW jobs_shown AS
        SELECT j.*,
               d.status AS callback_delivery_status,
               d.attempts AS callback_delivery_attempts,
               d.error_message AS callback_delivery_error,
               d.finished_at AS callback_delivery_finished_at,
               (j.callback_job_id IS NOT NULL AND d.job_id IS NULL) AS callback_delivery_pruned
        FROM jobs AS j
        LEFT JOIN jobs AS d ON d.job_id = j.callback_job_id;
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP VIEW jobs_shown;
        DROP TRIGGER jobs_callback_on_insert_finished ON jobs;
        DROP TRIGGER jobs_callback_on_finish ON jobs;
        DROP FUNCTION jobs_enqueue_callback();
        DROP FUNCTION enqueue_job_callback(jobs);
        DROP FUNCTION job_callback_body(jobs, bigint);
        DROP FUNCTION job_json_timestamp(timestamptz);
        ALTER TABLE jobs DROP COLUMN callback_job_id;
        """
    )
