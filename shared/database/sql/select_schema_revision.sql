-- select_schema_revision: the Alembic revision the database is at; no row before any migration.
SELECT version_num AS revision FROM alembic_version
