-- pause_job_type: no executor starts a new attempt of this type from the next lease statement on
-- (lease_jobs and lease_limited_jobs read job_type_pauses). Pausing a paused type keeps its paused_at.
INSERT INTO job_type_pauses (type)
VALUES (:type)
ON CONFLICT (type) DO NOTHING
