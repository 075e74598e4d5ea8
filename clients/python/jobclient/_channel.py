"""Connection settings, and the construction both clients (sync and asyncio) share."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from jobclient._calls import DEFAULT_BULK_DEADLINE, CallOptions
from jobclient.retry import DEFAULT_RETRY, RetryPolicy

__all__ = ["DEFAULT_DEADLINE", "DEFAULT_TARGET", "BaseClient", "ConnectionSettings"]

DEFAULT_TARGET = "localhost:50051"
DEFAULT_DEADLINE = 10.0

# Reconnect quickly after the api restarts (gRPC's own default starts at 1 s and grows to 2 minutes, during
# which every call fails at once), and accept list pages as large as the api may send.
_CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
)


@dataclass(frozen=True)
class ConnectionSettings:
    target: str
    token: str | None
    credentials: grpc.ChannelCredentials | None
    options: tuple[tuple[str, Any], ...]

    @classmethod
    def build(
        cls,
        target: str,
        token: str | None,
        tls: bool,
        root_certificates: bytes | str | Path | None,
        options: Sequence[tuple[str, Any]],
    ) -> ConnectionSettings:
        if not target:
            raise ValueError("target must be host:port")
        if token is not None and (not token or any(ch.isspace() for ch in token)):
            raise ValueError("token must be a non-empty string without spaces")
        credentials = None
        if tls or root_certificates is not None:
            roots = root_certificates
            if isinstance(roots, (str, Path)):
                roots = Path(roots).read_bytes()
            credentials = grpc.ssl_channel_credentials(root_certificates=roots)
        return cls(target, token, credentials, (*_CHANNEL_OPTIONS, *options))

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()

    def sync_channel(self) -> grpc.Channel:
        if self.credentials is None:
            return grpc.insecure_channel(self.target, options=self.options)
        return grpc.secure_channel(self.target, self.credentials, options=self.options)

    def aio_channel(self) -> grpc.aio.Channel:
        if self.credentials is None:
            return grpc.aio.insecure_channel(self.target, options=self.options)
        return grpc.aio.secure_channel(self.target, self.credentials, options=self.options)


class BaseClient:
    """What JobClient and AsyncJobClient share: their arguments, and the options every call gets."""

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        token: str | None = None,
        tls: bool = False,
        root_certificates: bytes | str | Path | None = None,
        deadline: float | None = DEFAULT_DEADLINE,
        retry: RetryPolicy = DEFAULT_RETRY,
        options: Sequence[tuple[str, Any]] = (),
        bulk_deadline: float | None = DEFAULT_BULK_DEADLINE,
    ) -> None:
        self._settings = ConnectionSettings.build(target, token, tls, root_certificates, options)
        self._options = CallOptions(deadline, retry, bulk_deadline)
        self._connect()

    def _connect(self) -> None:
        raise NotImplementedError

    @property
    def target(self) -> str:
        return self._settings.target

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.target!r})"
