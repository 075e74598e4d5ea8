"""The api process's settings, read once from the environment in ``__main__``.

Environment variables (flags of ``python -m services.api`` override the common ones):

- DATABASE_URL               PostgreSQL to use (postgresql://user:password@host:port/db)
- GRPC_PORT                  gRPC port (default 50051)
- HTTP_PORT                  REST shim, /health and /metrics (default 8000)
- BIND_HOST                  address both servers listen on (default 0.0.0.0)
- DB_POOL_SIZE               database connections of this process (default 10; per api process)
- API_PROCESSES              api processes sharing the two ports (SO_REUSEPORT), one interpreter each:
                             more than 1 uses more cores on one machine (default 1)
- MAX_PAYLOAD_BYTES          largest payload, encoded as JSON (default 1048576)
- MAX_BATCH_SIZE             most jobs in one SubmitJobs call (default 1000)
- MAX_PAGE_SIZE              largest ListJobs page (default 500)
- MAX_MESSAGE_BYTES          largest gRPC message and REST body (default 16777216)
- JOB_TIMEOUT_SECONDS        timeout_seconds of jobs submitted without one (default 300)
- WATCH_POLL_INTERVAL_SECONDS  how often WatchJob looks for changes (default 0.1)
- REQUEST_TIMEOUT_SECONDS    longest a unary RPC (and so a REST call) may take before it fails with
                             DEADLINE_EXCEEDED (504), whatever deadline the client sent (default 30)
- API_TOKENS                 comma-separated bearer tokens; when set (or API_TOKENS_FILE), every call
                             but health checks needs ``authorization: Bearer <token>``
- API_TOKENS_FILE            a file of tokens, one per line
- METRICS_REQUIRE_TOKEN      true: /metrics needs a token too (default false)
- TLS_CERT_FILE, TLS_KEY_FILE  serve gRPC and REST over TLS with this certificate and key (PEM)
- LOG_LEVEL, LOG_FORMAT      logging (INFO; text or json)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from services.api.auth import load_tokens
from shared.settings import (
    SettingsError,
    database_url_from_env,
    env_bool,
    env_float,
    env_int,
    env_log_format,
    env_log_level,
    env_str,
)

__all__ = ["ApiSettings"]

DEFAULT_GRPC_PORT = 50051
DEFAULT_HTTP_PORT = 8000
DEFAULT_BIND_HOST = "0.0.0.0"
DEFAULT_DB_POOL_SIZE = 10
DEFAULT_MAX_PAYLOAD_BYTES = 1024 * 1024
DEFAULT_MAX_BATCH_SIZE = 1000
DEFAULT_MAX_PAGE_SIZE = 500
DEFAULT_PAGE_SIZE = 50
DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024
DEFAULT_JOB_TIMEOUT_SECONDS = 300
DEFAULT_WATCH_POLL_INTERVAL_SECONDS = 0.1
DEFAULT_REQUEST_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class ApiSettings:
    database_url: str
    grpc_port: int = DEFAULT_GRPC_PORT
    http_port: int = DEFAULT_HTTP_PORT
    bind_host: str = DEFAULT_BIND_HOST
    db_pool_size: int = DEFAULT_DB_POOL_SIZE
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    max_page_size: int = DEFAULT_MAX_PAGE_SIZE
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    job_timeout_seconds: int = DEFAULT_JOB_TIMEOUT_SECONDS
    watch_poll_interval_seconds: float = DEFAULT_WATCH_POLL_INTERVAL_SECONDS
    request_timeout_seconds: float = DEFAULT_REQUEST_TIMEOUT_SECONDS
    log_level: str = "INFO"
    log_format: str = "text"
    api_tokens: frozenset[str] = frozenset()
    metrics_require_token: bool = False
    tls_cert_file: str = ""
    tls_key_file: str = ""
    processes: int = 1

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ApiSettings:
        """Build the settings from environment variables; SettingsError names a bad one."""
        tls_cert_file = env_str("TLS_CERT_FILE", "", env)
        tls_key_file = env_str("TLS_KEY_FILE", "", env)
        if bool(tls_cert_file) != bool(tls_key_file):
            raise SettingsError("TLS_CERT_FILE and TLS_KEY_FILE must be set together")
        for name, path in (("TLS_CERT_FILE", tls_cert_file), ("TLS_KEY_FILE", tls_key_file)):
            if path and not os.path.isfile(path):
                raise SettingsError(f"{name}={path!r} is not a readable file")
        return cls(
            api_tokens=load_tokens(env_str("API_TOKENS", "", env), env_str("API_TOKENS_FILE", "", env)),
            metrics_require_token=env_bool("METRICS_REQUIRE_TOKEN", False, env),
            tls_cert_file=tls_cert_file,
            tls_key_file=tls_key_file,
            database_url=database_url_from_env(env),
            grpc_port=env_int("GRPC_PORT", DEFAULT_GRPC_PORT, 1, 65535, env),
            http_port=env_int("HTTP_PORT", DEFAULT_HTTP_PORT, 1, 65535, env),
            bind_host=env_str("BIND_HOST", DEFAULT_BIND_HOST, env),
            db_pool_size=env_int("DB_POOL_SIZE", DEFAULT_DB_POOL_SIZE, 1, 500, env),
            max_payload_bytes=env_int("MAX_PAYLOAD_BYTES", DEFAULT_MAX_PAYLOAD_BYTES, 2, 64 * 1024 * 1024, env),
            max_batch_size=env_int("MAX_BATCH_SIZE", DEFAULT_MAX_BATCH_SIZE, 1, 100_000, env),
            max_page_size=env_int("MAX_PAGE_SIZE", DEFAULT_MAX_PAGE_SIZE, 1, 10_000, env),
            max_message_bytes=env_int("MAX_MESSAGE_BYTES", DEFAULT_MAX_MESSAGE_BYTES, 1024, 1024**3, env),
            job_timeout_seconds=env_int("JOB_TIMEOUT_SECONDS", DEFAULT_JOB_TIMEOUT_SECONDS, 1, 7 * 86400, env),
            watch_poll_interval_seconds=env_float(
                "WATCH_POLL_INTERVAL_SECONDS", DEFAULT_WATCH_POLL_INTERVAL_SECONDS, 0.01, 60, env
            ),
            request_timeout_seconds=env_float(
                "REQUEST_TIMEOUT_SECONDS", DEFAULT_REQUEST_TIMEOUT_SECONDS, 0.1, 3600, env
            ),
            log_level=env_log_level(env),
            log_format=env_log_format(env),
            processes=env_int("API_PROCESSES", 1, 1, 64, env),
        )
