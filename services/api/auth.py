"""Who may call what: bearer tokens with roles, the one table of the role each RPC needs, a rate limit
per token, and a refusal of client addresses that keep offering wrong tokens.

Tokens come from API_TOKENS (comma-separated) and/or API_TOKENS_FILE (one per line, # comments). Each
entry is ``TOKEN`` (role admin: everything, as before roles existed) or ``ROLE=TOKEN`` with ROLE one of
``read``, ``submit`` or ``admin``. With no tokens configured the API is open and every caller is admin.
Tokens are compared in constant time and never logged: logs name a token by its fingerprint, the first
8 hex digits of its SHA-256.

The wrapper of every RPC, gRPC or REST (services/api/instrumentation.py), makes one call,
``TokenChecker.authorize``, which returns the caller's Principal or raises Unauthenticated,
PermissionDenied or TooManyRequests (mapped to gRPC and HTTP statuses by services/api/errors.py).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import ipaddress
import logging
import math
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from shared.errors import PermissionDenied, TooManyRequests, Unauthenticated
from shared.settings import SettingsError

__all__ = [
    "ANYONE",
    "METHOD_ROLES",
    "OPEN_METHODS",
    "FailedAuthentications",
    "Principal",
    "RateLimiter",
    "Role",
    "TokenChecker",
    "client_address",
    "current_caller",
    "fingerprint",
    "load_tokens",
    "set_current_caller",
]

log = logging.getLogger(__name__)


class Role(enum.IntEnum):
    """What a token may do; each role may do everything the ones below it may."""

    READ = 1  # every Get, List, Watch and Stats call
    SUBMIT = 2  # read, and submitting jobs
    ADMIN = 3  # everything: cancel, retry, limits, schedules...

    @property
    def label(self) -> str:
        return self.name.lower()


_JOBS = "/jobs.v1.JobService/"

# The one table: the least role each RPC needs. An RPC missing here is refused to every token
# (PERMISSION_DENIED), and tests/test_api_roles.py fails until it has an entry. Calls needing ``admin``
# are the ones that change what others submitted; each is logged with the caller's role and fingerprint
# (services/api/audit.py).
METHOD_ROLES: Mapping[str, Role] = MappingProxyType(
    {
        _JOBS + "GetCaller": Role.READ,
        _JOBS + "GetJob": Role.READ,
        _JOBS + "ListJobs": Role.READ,
        _JOBS + "ListJobAttempts": Role.READ,
        _JOBS + "WatchJob": Role.READ,
        _JOBS + "GetStats": Role.READ,
        _JOBS + "ListTypeLimits": Role.READ,
        _JOBS + "ListJobTypes": Role.READ,
        _JOBS + "ListExecutors": Role.READ,
        _JOBS + "GetSchedule": Role.READ,
        _JOBS + "ListSchedules": Role.READ,
        _JOBS + "SubmitJob": Role.SUBMIT,
        _JOBS + "SubmitJobs": Role.SUBMIT,
        _JOBS + "CancelJob": Role.ADMIN,
        _JOBS + "RetryJob": Role.ADMIN,
        _JOBS + "CancelJobs": Role.ADMIN,
        _JOBS + "RetryJobs": Role.ADMIN,
        _JOBS + "SetTypeLimits": Role.ADMIN,
        _JOBS + "DeleteTypeLimits": Role.ADMIN,
        _JOBS + "PauseJobType": Role.ADMIN,
        _JOBS + "ResumeJobType": Role.ADMIN,
        _JOBS + "CreateSchedule": Role.ADMIN,
        _JOBS + "DeleteSchedule": Role.ADMIN,
        _JOBS + "UpdateSchedule": Role.ADMIN,
        _JOBS + "PauseSchedule": Role.ADMIN,
        _JOBS + "ResumeSchedule": Role.ADMIN,
        _JOBS + "TriggerSchedule": Role.ADMIN,
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": Role.READ,
        # Not an RPC: the api's Prometheus endpoint, when METRICS_REQUIRE_TOKEN is set.
        "/metrics": Role.READ,
    }
)

# Health checks stay open so that load balancers and orchestrators need no token.
OPEN_METHODS = frozenset({"/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch"})

# An entry "word=rest" names a role: a word shorter than any token cannot be a token of its own.
_ROLE_ENTRY = re.compile(r"([A-Za-z]{1,15})=(.*)")
_MIN_TOKEN_LENGTH = 16


def fingerprint(token: str) -> str:
    """How logs name a token: the first 8 hex digits of its SHA-256 (the token cannot be recovered)."""
    return hashlib.sha256(token.encode()).hexdigest()[:8]


def load_tokens(tokens: str, tokens_file: str) -> dict[str, Role]:
    """The configured tokens and their roles; SettingsError names the variable when one is unusable."""
    entries = [("API_TOKENS", entry.strip()) for entry in tokens.split(",") if entry.strip()]
    if tokens_file:
        try:
            lines = Path(tokens_file).read_text().splitlines()
        except OSError as exc:
            raise SettingsError(f"API_TOKENS_FILE={tokens_file!r} cannot be read: {exc.strerror}") from None
        entries += [
            ("API_TOKENS_FILE", line.strip()) for line in lines if line.strip() and not line.lstrip().startswith("#")
        ]
    found: dict[str, Role] = {}
    for variable, entry in entries:
        role, token = Role.ADMIN, entry
        named = _ROLE_ENTRY.fullmatch(entry)
        if named:
            try:
                role = Role[named.group(1).upper()]
            except KeyError:
                raise SettingsError(
                    f"{variable}: unknown role {named.group(1)!r} (roles: read, submit, admin; write a token "
                    "that contains '=' as admin=TOKEN)"
                ) from None
            token = named.group(2).strip()
        if len(token) < _MIN_TOKEN_LENGTH or any(ch.isspace() for ch in token):
            raise SettingsError(f"{variable}: every token must be at least 16 characters without spaces")
        if found.get(token, role) != role:
            raise SettingsError(f"{variable}: token {fingerprint(token)} is given two different roles")
        found[token] = role
    return found


@dataclass(frozen=True)
class Principal:
    """Who is calling: the role of the token it offered, and that token's fingerprint ("" without tokens)."""

    role: Role
    fingerprint: str = ""

    def may_call(self, method: str) -> bool:
        needed = METHOD_ROLES.get(method)
        return method in OPEN_METHODS or (needed is not None and self.role >= needed)

    def __str__(self) -> str:
        return f"{self.role.label} token {self.fingerprint}" if self.fingerprint else "anyone (no API_TOKENS)"


# Every caller when the api has no tokens.
ANYONE = Principal(Role.ADMIN)

_CALLER: ContextVar[Principal] = ContextVar("caller", default=ANYONE)


def current_caller() -> Principal:
    """The Principal of the RPC being served (set by the RPC wrapper)."""
    return _CALLER.get()


def set_current_caller(principal: Principal) -> None:
    _CALLER.set(principal)


def client_address(peer: str) -> str:
    """The address part of a gRPC peer (``ipv4:10.0.0.7:51234`` -> ``10.0.0.7``), else ``peer`` itself."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rpartition(":")[0] or rest
    if kind == "ipv6":
        return rest.rpartition(":")[0].strip("[]") or rest
    return peer


def _address_group(address: str) -> str:
    """The unit failures are counted per: one IPv4 address, or one IPv6 /64 (what one host usually holds)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:64]
    if ip.version == 6 and ip.ipv4_mapped is None:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip.ipv4_mapped or ip) if ip.version == 6 else str(ip)


def _retry_after(seconds: float) -> int:
    return max(1, math.ceil(seconds))


class RateLimiter:
    """A token bucket per key: ``rate`` calls per second on average, up to ``burst`` at once. Used from
    the event loop only (no locks)."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens left, when counted)

    def wait_seconds(self, key: str) -> float:
        """0 and one call counted when a call may go now; else how long until it may."""
        now = self._clock()
        left, then = self._buckets.get(key, (float(self.burst), now))
        left = min(float(self.burst), left + (now - then) * self.rate)
        if left >= 1:
            self._buckets[key] = (left - 1, now)
            return 0.0
        self._buckets[key] = (left, now)
        return (1 - left) / self.rate


class FailedAuthentications:
    """Failed authentications per client address (IPv6: per /64) in fixed windows: after ``limit``
    failures within ``window_seconds`` of the first, the address is refused until that window ends,
    whatever token it offers. At most ``max_addresses`` are remembered (the least recently failing are
    forgotten). Used from the event loop only (no locks)."""

    def __init__(
        self,
        limit: int,
        window_seconds: float,
        max_addresses: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window_seconds = window_seconds
        self.max_addresses = max_addresses
        self._clock = clock
        self._windows: OrderedDict[str, tuple[float, int]] = OrderedDict()  # group -> (window start, failures)

    def blocked_for(self, address: str) -> float:
        """Seconds until ``address`` may try again; 0 when it may now."""
        if not self.limit:
            return 0.0
        window = self._windows.get(_address_group(address))
        if window is None or window[1] < self.limit:
            return 0.0
        return max(0.0, window[0] + self.window_seconds - self._clock())

    def record_failure(self, address: str) -> None:
        if not self.limit:
            return
        group, now = _address_group(address), self._clock()
        start, failures = self._windows.pop(group, (now, 0))
        if now - start >= self.window_seconds:
            start, failures = now, 0
        self._windows[group] = (start, failures + 1)
        while len(self._windows) > self.max_addresses:
            self._windows.popitem(last=False)
        if failures + 1 == self.limit:
            log.warning(
                "%d failed authentications from %s: refusing it for up to %g s", self.limit, group, self.window_seconds
            )


class TokenChecker:
    """Authenticates and authorizes calls; see the module docstring."""

    def __init__(
        self,
        tokens: Mapping[str, Role],
        rate_limit: float = 0.0,
        rate_burst: int = 1,
        failure_limit: int = 0,
        failure_window_seconds: float = 60.0,
    ) -> None:
        self._principals = [(token.encode(), Principal(role, fingerprint(token))) for token, role in tokens.items()]
        self._rate = RateLimiter(rate_limit, rate_burst) if rate_limit > 0 else None
        self.failures = FailedAuthentications(failure_limit, failure_window_seconds)

    @property
    def enabled(self) -> bool:
        return bool(self._principals)

    def authorize(self, method: str, authorization: str | None, client: str = "") -> Principal:
        """The caller of ``method`` who sent ``authorization`` (``Bearer <token>``) from ``client`` (an
        address); raises Unauthenticated, PermissionDenied or TooManyRequests. Without tokens every
        caller is admin, but a method missing from METHOD_ROLES is refused all the same."""
        if method in OPEN_METHODS:
            return ANYONE
        needed = METHOD_ROLES.get(method)
        if needed is None:
            raise PermissionDenied(f"{method} is not in the api's role table: no token may call it", None)
        if not self._principals:
            return ANYONE
        blocked = self.failures.blocked_for(client)
        if blocked:
            raise TooManyRequests(
                "too many failed authentications from this address; try again later", _retry_after(blocked)
            )
        principal = self._principal(authorization)
        if principal is None:
            if authorization:  # a wrong guess; a call without any token (a console before its prompt) is none
                self.failures.record_failure(client)
            raise Unauthenticated("a valid 'authorization: Bearer <token>' is required")
        if principal.role < needed:
            raise PermissionDenied(
                f"{method.rsplit('/', 1)[-1]} needs a token of role {needed.label} or above; "
                f"this one has role {principal.role.label}",
                needed.label,
                principal,
            )
        if self._rate is not None:
            wait = self._rate.wait_seconds(principal.fingerprint)
            if wait:
                raise TooManyRequests(
                    f"this token's rate limit ({self._rate.rate:g} calls/s) is used up", _retry_after(wait)
                )
        return principal

    def _principal(self, authorization: str | None) -> Principal | None:
        if not authorization or not authorization.startswith("Bearer "):
            return None
        offered = authorization[len("Bearer ") :].strip().encode()
        # Compare against every token so the time taken says nothing about which one nearly matched.
        found = None
        for token, principal in self._principals:
            if hmac.compare_digest(offered, token):
                found = principal
        return found
