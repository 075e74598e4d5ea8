-- select_alembic_version_exists: has any migration run here?
SELECT to_regclass('alembic_version') IS NOT NULL AS present
