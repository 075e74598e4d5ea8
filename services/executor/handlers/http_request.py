"""``http_request``: call an HTTP(S) URL, so services in any language can be the target of jobs.

Payload:
    url       http:// or https:// URL (required)
    method    GET (default), HEAD, POST, PUT, PATCH, DELETE or OPTIONS
    headers   object of header name -> string value
    body      a string (sent as is), or any other JSON value (sent as JSON, Content-Type application/json)
    timeout   seconds for the whole exchange (default 30; never past the job's own deadline)

Result on 2xx: ``{"status": 200, "headers": {...}, "body": "<text, at most 64 KiB>", "truncated": false}``.
Network errors, timeouts, 5xx, 408, 425 and 429 are retryable failures; any other status (3xx left
after following redirects, 4xx) fails the job at once: sending the same request again would not help.

Where it may go: the egress policy (shared/egress.py, EGRESS_ALLOW_NETWORKS) is checked on the URL and on
every redirect hop, after DNS resolution, and the connection goes to the checked address. A refused
destination (loopback, private, link-local, CGNAT, ... unless opened), a redirect to anything but
http(s), and more than 10 redirects fail the job at once, before anything is connected to.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from yarl import URL

from services.executor.context import JobContext
from services.executor.errors import PermanentError
from services.executor.handlers.basic import number_field
from services.executor.registry import handler
from shared.egress import EgressPolicy, EgressRefused, check_url, egress_connector

__all__ = ["RESPONSE_BODY_LIMIT", "HttpAnswer", "configure", "exchange", "http_request", "redact_url"]

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
DEFAULT_TIMEOUT_SECONDS = 30.0
MAX_TIMEOUT_SECONDS = 3600.0
RESPONSE_BODY_LIMIT = 64 * 1024
RETRYABLE_STATUSES = frozenset({408, 425, 429})
ERROR_BODY_SNIPPET = 200
MAX_REDIRECTS = 10
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# Dropped when a redirect leaves the origin they were meant for.
ORIGIN_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})

_egress = EgressPolicy()


class HttpStatusError(Exception):
    """A non-2xx answer that may succeed when retried (5xx, 408, 425, 429)."""


@handler("http_request")
async def http_request(payload: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Send the request; see the module docstring for the payload and the result."""
    url = payload.get("url")
    if not isinstance(url, str) or not url:
        raise PermanentError("payload.url is required (an http:// or https:// URL)")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PermanentError(f"payload.url must be an http:// or https:// URL with a host, got {url!r}")
    method = payload.get("method", "GET")
    if not isinstance(method, str) or method.upper() not in METHODS:
        raise PermanentError(f"payload.method must be one of {', '.join(sorted(METHODS))}, got {method!r}")
    method = method.upper()
    headers = payload.get("headers") or {}
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and "\n" not in k + v and "\r" not in k + v
        for k, v in headers.items()
    ):
        raise PermanentError("payload.headers must be an object of one-line string values")
    data: bytes | None = None
    if "body" in payload and payload["body"] is not None:
        body = payload["body"]
        if isinstance(body, str):
            data = body.encode("utf-8")
        else:
            data = json.dumps(body, separators=(",", ":")).encode("utf-8")
            if not any(k.lower() == "content-type" for k in headers):
                headers = {**headers, "Content-Type": "application/json"}
    timeout = number_field(
        payload, "timeout", default=DEFAULT_TIMEOUT_SECONDS, minimum=0.001, maximum=MAX_TIMEOUT_SECONDS
    )
    timeout = max(0.001, min(timeout, ctx.remaining_seconds))

    answer = await exchange(method, url, headers=headers, data=data, timeout=timeout, body_limit=RESPONSE_BODY_LIMIT)
    status = answer.status
    text = answer.text.replace("\x00", "\ufffd")  # jsonb cannot store NUL
    if 200 <= status < 300:
        return {"status": status, "headers": answer.headers, "body": text, "truncated": answer.truncated}
    message = f"{method} {redact_url(url)} answered HTTP {status}: {text[:ERROR_BODY_SNIPPET]}"
    if status >= 500 or status in RETRYABLE_STATUSES:
        raise HttpStatusError(message)
    raise PermanentError(message)


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    headers: dict[str, str]
    text: str  # the body's first ``body_limit`` bytes, decoded
    truncated: bool  # the body was longer


def configure(policy: EgressPolicy) -> None:
    """Use this egress policy for every outbound request from now on (the executor calls this once at
    start, with EGRESS_ALLOW_NETWORKS and EGRESS_DENY_PORTS)."""
    global _egress
    _egress = policy


async def exchange(
    method: str,
    url: str,
    *,
    headers: dict[str, str],
    data: bytes | None,
    timeout: float,
    body_limit: int,
    allow_redirects: bool = True,
) -> HttpAnswer:
    """One HTTP exchange within ``timeout`` seconds, for the handlers that call out (http_request,
    jobs.callback), following up to MAX_REDIRECTS redirects when ``allow_redirects``.

    Every hop obeys the egress policy (shared/egress.py): a refused destination, a bad URL, a redirect to
    anything but http(s) and too many redirects are PermanentErrors; a timeout is a TimeoutError and a
    network error a ConnectionError (both retryable). Messages name the method and the URL without
    credentials, and a refused destination is never connected to."""
    try:
        return await asyncio.wait_for(
            _follow(method, url, headers, data, body_limit, allow_redirects, _egress), timeout=timeout
        )
    except asyncio.TimeoutError as error:
        raise TimeoutError(f"{method} {redact_url(url)}: no complete answer within {timeout:g} s") from error
    except aiohttp.InvalidURL as error:
        raise PermanentError(f"{method} {redact_url(url)}: invalid URL: {error}") from error
    except aiohttp.ClientError as error:
        raise ConnectionError(f"{method} {redact_url(url)}: {type(error).__name__}: {error}") from error


async def _follow(
    method: str,
    url: str,
    headers: dict[str, str],
    data: bytes | None,
    body_limit: int,
    allow_redirects: bool,
    policy: EgressPolicy,
) -> HttpAnswer:
    """The exchange, redirects handled here so that each hop's URL is checked before it is requested."""
    first = where = redact_url(url)
    origin: URL | None = None
    async with aiohttp.ClientSession(connector=egress_connector(policy)) as session:
        for _ in range(MAX_REDIRECTS + 1):
            try:
                target = check_url(url, policy)
                if origin is not None and target.origin() != origin:  # credentials stay with their origin
                    headers = {name: value for name, value in headers.items() if name.lower() not in ORIGIN_HEADERS}
                origin = target.origin()
                async with session.request(
                    method, target, headers=headers, data=data, allow_redirects=False
                ) as response:
                    location = response.headers.get("Location")
                    if not (allow_redirects and response.status in REDIRECT_STATUSES and location):
                        raw = await _read_at_most(response.content, body_limit + 1)
                        charset = response.charset or "utf-8"
                        status = response.status
                        answered = {name: ", ".join(response.headers.getall(name)) for name in response.headers}
                        break
                    try:
                        url = str(response.url.join(URL(location)))
                    except ValueError as error:
                        raise EgressRefused(f"redirected to an invalid URL: {error}") from None
            except EgressRefused as error:  # resolving a host name, too, can refuse it
                hop = "" if where == first else f" redirected to {where}"
                raise PermanentError(f"{method} {first}{hop}: {error}") from None
            where = redact_url(url)
            if response.status == 303 or (response.status in (301, 302) and method == "POST"):
                method, data = ("HEAD" if method == "HEAD" else "GET"), None  # as browsers and aiohttp do
        else:
            raise PermanentError(f"{method} {first}: more than {MAX_REDIRECTS} redirects")
    try:
        text = raw[:body_limit].decode(charset, "replace")
    except LookupError:  # an unknown charset name in Content-Type
        text = raw[:body_limit].decode("utf-8", "replace")
    return HttpAnswer(status, answered, text, len(raw) > body_limit)


def redact_url(url: str) -> str:
    """The URL without credentials, for error messages."""
    parts = urlsplit(url)
    if parts.username or parts.password:
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
        parts = parts._replace(netloc=netloc)
    return parts._replace(query="").geturl()


async def _read_at_most(stream: aiohttp.StreamReader, limit: int) -> bytes:
    """Up to ``limit`` bytes of the body: ``StreamReader.read(n)`` returns what has arrived so far, which
    on a busy machine may be a first chunk of a longer body."""
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = await stream.read(limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)
