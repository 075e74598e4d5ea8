"""The database layer: the one place where SQL runs.

- ``engine``: connecting, and translating driver errors into the service's own.
- ``queries``: the named SQL statements under ``sql/``, one file each.
- ``jobs``: what the API does to jobs (submit, get, list, stats, cancel, retry).
- ``schema``: checking that the schema matches the code.
"""
