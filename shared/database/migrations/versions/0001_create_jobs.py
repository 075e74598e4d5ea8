"""Create the jobs table, its status type and one partial index per hot query.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TYPE job_status AS ENUM
            ('PENDING', 'READY', 'PROCESSING', 'COMPLETED', 'FAILED', 'CANCELLED');

        CREATE TABLE jobs (
            job_id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            type              text        NOT NULL,
            status            job_status  NOT NULL,
            priority          smallint    NOT NULL DEFAULT 5 CHECK (priority BETWEEN 1 AND 10),
            run_at            timestamptz NOT NULL DEFAULT now(),
            attempts          integer     NOT NULL DEFAULT 0,
            max_attempts      integer     NOT NULL DEFAULT 3 CHECK (max_attempts BETWEEN 1 AND 100),
            timeout_seconds   integer     NOT NULL CHECK (timeout_seconds > 0),
            cancel_requested  boolean     NOT NULL DEFAULT false,
            lease_owner       text,
            lease_token       uuid,
            lease_expires_at  timestamptz,
            created_at        timestamptz NOT NULL DEFAULT now(),
            updated_at        timestamptz NOT NULL DEFAULT now(),
            scheduled_at      timestamptz,
            started_at        timestamptz,
            finished_at       timestamptz,
            idempotency_key   text,
            traceparent       text,
            error_message     text,
            payload           jsonb       NOT NULL DEFAULT '{}'::jsonb,
            result            jsonb
        ) WITH (
            -- Rows are updated several times in their short life: leave room for HOT updates,
            -- and vacuum this table far more eagerly than the defaults would.
            fillfactor = 70,
            autovacuum_vacuum_scale_factor = 0.01,
            autovacuum_vacuum_threshold = 1000,
            autovacuum_analyze_scale_factor = 0.02,
            autovacuum_vacuum_cost_limit = 2000
        );

        -- lease_jobs: highest priority first, then due time, then id.
        CREATE INDEX jobs_ready_idx ON jobs (priority, run_at, job_id) WHERE status = 'READY';
        -- promote_due_jobs and the scheduler's next wake-up.
        CREATE INDEX jobs_pending_idx ON jobs (run_at) WHERE status = 'PENDING';
        -- rescue_expired_leases.
        CREATE INDEX jobs_processing_idx ON jobs (lease_expires_at) WHERE status = 'PROCESSING';
        -- One key, one job.
        CREATE UNIQUE INDEX jobs_idempotency_key_uq ON jobs (idempotency_key)
            WHERE idempotency_key IS NOT NULL;
        -- ListJobs filtered by status or type, newest first.
        CREATE INDEX jobs_status_job_id_idx ON jobs (status, job_id DESC);
        CREATE INDEX jobs_type_job_id_idx ON jobs (type, job_id DESC);
        -- prune_finished_jobs and GetStats' recent failures.
        CREATE INDEX jobs_finished_idx ON jobs (status, finished_at)
            WHERE status IN ('COMPLETED', 'FAILED', 'CANCELLED');

        -- GetStats must not count millions of rows. Statement-level triggers append one
        -- delta row per (type, status) a statement touched; appends never contend on a hot
        -- counter row. The scheduler folds the deltas together (compact_job_counts).
        CREATE TABLE job_counts (
            type      text       NOT NULL,
            status    job_status NOT NULL,
            jobs      bigint     NOT NULL,
            attempts  bigint     NOT NULL
        );

        CREATE FUNCTION job_counts_after_insert() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO job_counts (type, status, jobs, attempts)
            SELECT type, status, count(*), sum(attempts) FROM new_rows GROUP BY type, status;
            RETURN NULL;
        END $$;

        CREATE FUNCTION job_counts_after_delete() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO job_counts (type, status, jobs, attempts)
            SELECT type, status, -count(*), -sum(attempts) FROM old_rows GROUP BY type, status;
            RETURN NULL;
        END $$;

        CREATE FUNCTION job_counts_after_update() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO job_counts (type, status, jobs, attempts)
            SELECT type, status, sum(jobs), sum(attempts)
            FROM (
                SELECT type, status, 1 AS jobs, attempts FROM new_rows
                UNION ALL
                SELECT type, status, -1, -attempts FROM old_rows
            ) AS changes
            GROUP BY type, status
            HAVING sum(jobs) <> 0 OR sum(attempts) <> 0;
            RETURN NULL;
        END $$;

        CREATE TRIGGER jobs_count_insert AFTER INSERT ON jobs
            REFERENCING NEW TABLE AS new_rows
            FOR EACH STATEMENT EXECUTE FUNCTION job_counts_after_insert();
        CREATE TRIGGER jobs_count_delete AFTER DELETE ON jobs
            REFERENCING OLD TABLE AS old_rows
            FOR EACH STATEMENT EXECUTE FUNCTION job_counts_after_delete();
        CREATE TRIGGER jobs_count_update AFTER UPDATE ON jobs
            REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
            FOR EACH STATEMENT EXECUTE FUNCTION job_counts_after_update();
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE jobs;
        DROP TABLE job_counts;
        DROP FUNCTION job_counts_after_insert, job_counts_after_delete, job_counts_after_update;
        DROP TYPE job_status;
        """
    )
