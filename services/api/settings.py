"""The api process's settings: one frozen object, built from the environment and the flags in ``__main__``.

Each field is one declaration (shared/settings.py): variable, flag, type, range, default and help, from which
``--help`` and the README's table are made too.
"""

from __future__ import annotations

import ipaddress
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from services.api.auth import Role, load_tokens
from shared.egress import EgressPolicy
from shared.settings import ProcessSettings, SettingsError, setting

__all__ = ["BULK_BATCH_SIZE", "BULK_SELECT_SIZE", "DEFAULT_PAGE_SIZE", "ApiSettings", "is_loopback"]

# The ListJobs page of a request without page_size (MAX_PAGE_SIZE bounds the ones that have one).
DEFAULT_PAGE_SIZE = 50
# Jobs per transaction of CancelJobs and RetryJobs: short enough that executors and submits never wait
# long on their row locks, long enough that 100,000 jobs take a hundred round trips.
BULK_BATCH_SIZE = 1000
# Matching ids CancelJobs and RetryJobs read at a time (no lock held), for BULK_SELECT_SIZE / BULK_BATCH_SIZE
# transactions. Larger than a batch because a read may cost as much as the matches left, however many it
# returns (docs/search.md: a bulk action right after another one, on stale statistics).
BULK_SELECT_SIZE = 10 * BULK_BATCH_SIZE
MAX_PROCESSES = 64


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address, or "localhost") is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _readable_file(raw: str) -> str:
    if not os.path.isfile(raw):
        raise ValueError("is not a readable file")
    return raw


@dataclass(frozen=True)
class ApiSettings(ProcessSettings):
    """Everything the api process is configured with."""

    grpc_port: int = setting("GRPC_PORT", 50051, "gRPC port", minimum=1, maximum=65535)
    http_port: int = setting("HTTP_PORT", 8000, "REST, /health and /metrics port", minimum=1, maximum=65535)
    processes: int = setting(
        "API_PROCESSES",
        1,
        "api processes sharing both ports (SO_REUSEPORT; /metrics sums them), one interpreter each: more than "
        "1 uses more cores of one machine",
        minimum=1,
        maximum=MAX_PROCESSES,
        flag="--processes",
    )
    db_pool_size: int = setting("DB_POOL_SIZE", 10, "database connections of each api process", minimum=1, maximum=500)
    max_payload_bytes: int = setting(
        "MAX_PAYLOAD_BYTES", 1024 * 1024, "largest payload, encoded as JSON", minimum=2, maximum=64 * 1024 * 1024
    )
    max_batch_size: int = setting(
        "MAX_BATCH_SIZE", 1000, "most jobs in one SubmitJobs call", minimum=1, maximum=100_000
    )
    max_page_size: int = setting(
        "MAX_PAGE_SIZE",
        500,
        f"largest ListJobs page (the default page: {DEFAULT_PAGE_SIZE})",
        minimum=1,
        maximum=10_000,
    )
    max_message_bytes: int = setting(
        "MAX_MESSAGE_BYTES",
        16 * 1024 * 1024,
        "largest gRPC message, and REST body (413 from its Content-Length, unread) or reply",
        minimum=1024,
        maximum=1024**3,
    )
    http_header_timeout_seconds: float = setting(
        "HTTP_HEADER_TIMEOUT_SECONDS",
        30.0,
        "how long a REST connection may take to send a request's headers, from its start or the previous reply; "
        "also how long an idle one stays open",
        minimum=0.1,
        maximum=3600.0,
    )
    http_body_timeout_seconds: float = setting(
        "HTTP_BODY_TIMEOUT_SECONDS",
        30.0,
        "how long a REST request's body may take to arrive (408 after)",
        minimum=0.1,
        maximum=3600.0,
    )
    job_timeout_seconds: int = setting(
        "JOB_TIMEOUT_SECONDS", 300, "timeout_seconds of jobs submitted without one", minimum=1, maximum=7 * 86400
    )
    watch_poll_interval_seconds: float = setting(
        "WATCH_POLL_INTERVAL_SECONDS", 0.1, "how often WatchJob looks for changes", minimum=0.01, maximum=60.0
    )
    request_timeout_seconds: float = setting(
        "REQUEST_TIMEOUT_SECONDS",
        30.0,
        "longest a unary RPC (and so a REST call) may take before it fails with DEADLINE_EXCEEDED (504); a "
        "client's grpc-timeout (gRPC metadata or HTTP header) can only shorten it",
        minimum=0.1,
        maximum=3600.0,
    )
    bulk_request_timeout_seconds: float = setting(
        "BULK_REQUEST_TIMEOUT_SECONDS",
        600.0,
        "the same for CancelJobs and RetryJobs (POST /jobs:cancel, /jobs:retry), which answer once every job of "
        "their filter is done",
        minimum=0.1,
        maximum=86400.0,
    )
    tokens: str = setting(
        "API_TOKENS",
        "",
        "comma-separated bearer tokens (16+ characters), each `TOKEN` (role admin) or `ROLE=TOKEN` (read, submit "
        "or admin); when set (or API_TOKENS_FILE), every call but health checks needs `authorization: Bearer "
        "<token>` of a role that may make it, else UNAUTHENTICATED / 401 (no token, a wrong one) or "
        "PERMISSION_DENIED / 403 (a role that may not)",
        secret=True,
    )
    tokens_file: str = setting(
        "API_TOKENS_FILE",
        "",
        "a file of tokens, one per line (# comments), written as in API_TOKENS",
        flag="--api-tokens-file",
    )
    # Declared after the tokens: its default depends on whether there are any.
    bind_host: str = setting(
        "BIND_HOST",
        "127.0.0.1",
        "address both servers listen on; any but loopback without tokens needs ALLOW_UNAUTHENTICATED",
        derive=lambda values: "0.0.0.0" if values["tokens"] or values["tokens_file"] else "127.0.0.1",
        shown_default="127.0.0.1 without tokens, 0.0.0.0 with them",
    )
    allow_unauthenticated: bool = setting(
        "ALLOW_UNAUTHENTICATED",
        False,
        "serve without tokens on a BIND_HOST other than loopback, on purpose (a warning at start)",
    )
    token_rate_limit: float = setting(
        "TOKEN_RATE_LIMIT",
        0.0,
        "calls per second each token may make on average, per api process, else RESOURCE_EXHAUSTED / 429; 0: no limit",
        minimum=0.0,
        maximum=1_000_000,
    )
    token_rate_burst: int = setting(
        "TOKEN_RATE_BURST",
        1,
        "calls a token may make at once above its rate",
        minimum=1,
        maximum=1_000_000,
        derive=lambda values: max(1, math.ceil(values["token_rate_limit"])),
        shown_default="one second's worth of TOKEN_RATE_LIMIT",
    )
    auth_failure_limit: int = setting(
        "AUTH_FAILURE_LIMIT",
        20,
        "wrong tokens offered from one client address (IPv6: one /64) after which it is refused until "
        "AUTH_FAILURE_WINDOW_SECONDS after its first; 0: never",
        minimum=0,
        maximum=1_000_000,
    )
    auth_failure_window_seconds: float = setting(
        "AUTH_FAILURE_WINDOW_SECONDS", 60.0, "the window of AUTH_FAILURE_LIMIT", minimum=1, maximum=86_400
    )
    metrics_require_token: bool = setting("METRICS_REQUIRE_TOKEN", False, "/metrics needs a token too")
    tls_cert_file: str = setting(
        "TLS_CERT_FILE",
        "",
        "PEM certificate: with TLS_KEY_FILE, gRPC and REST are served over TLS",
        parse=_readable_file,
    )
    tls_key_file: str = setting("TLS_KEY_FILE", "", "PEM private key of TLS_CERT_FILE", parse=_readable_file)
    egress: EgressPolicy = field(default_factory=EgressPolicy)
    # The tokens of API_TOKENS and API_TOKENS_FILE together and their roles, read when the settings are made.
    api_tokens: Mapping[str, Role] = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "api_tokens", load_tokens(self.tokens, self.tokens_file))
        # A callback_url must not name this process's own ports either.
        object.__setattr__(self, "egress", self.egress.closing(self.grpc_port, self.http_port))
        if not self.api_tokens and not self.allow_unauthenticated and not is_loopback(self.bind_host):
            raise SettingsError(
                f"BIND_HOST={self.bind_host} without API_TOKENS would let anyone who reaches it call every method: "
                "set API_TOKENS (or API_TOKENS_FILE), bind 127.0.0.1, or set ALLOW_UNAUTHENTICATED=true on purpose"
            )

    def check(self) -> None:
        """TLS needs both files."""
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise SettingsError("TLS_CERT_FILE and TLS_KEY_FILE must be set together")
