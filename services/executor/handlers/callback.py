"""``jobs.callback``: deliver a completion webhook (see docs/callbacks.md).

The database queues one such job when a job submitted with a ``callback_url`` finishes (migration
0005); its payload is ``{"url": ..., "job_id": <the finished job>, "body": {"event": "job.finished",
"job": {...}}}``. This handler POSTs ``body`` as JSON with:

    Content-Type        application/json
    User-Agent          jobservice-webhooks/1
    Webhook-Id          the delivery job's id: the same on every retry, so receivers can de-duplicate
    Webhook-Signature   t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" keyed by the secret>,
                        only when CALLBACK_SIGNING_SECRET is set

Any 2xx answer delivers it. Anything else (3xx included: redirects are not followed, the signed body
must not travel elsewhere), a network error or a timeout is a retryable failure: the delivery runs
again after the executor's backoff until its attempts are used up, and then stays FAILED with the last
error. A URL the egress policy refuses (an internal address, written or resolved; shared/egress.py)
fails at once, without connecting. The secret appears in no log, error or job.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any
from urllib.parse import urlsplit

from services.executor.context import JobContext
from services.executor.errors import PermanentError
from services.executor.handlers.http_request import ERROR_BODY_SNIPPET, exchange, redact_url
from services.executor.registry import handler
from services.executor.settings import CallbackSettings
from shared.jobs import CALLBACK_JOB_TYPE

__all__ = ["CallbackDeliveryError", "configure", "deliver_callback", "signature_header"]

USER_AGENT = "jobservice-webhooks/1"

_settings = CallbackSettings()


class CallbackDeliveryError(Exception):
    """The receiver did not answer 2xx; the delivery is retried."""


def configure(settings: CallbackSettings) -> None:
    """Use these settings from now on (the executor calls this once at start)."""
    global _settings
    _settings = settings


def signature_header(secret: str, body: bytes, timestamp: int) -> str:
    """The Webhook-Signature value: ``t=<timestamp>,v1=<hex HMAC-SHA256 of "<timestamp>.<body>">``."""
    signed = str(timestamp).encode() + b"." + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


@handler(CALLBACK_JOB_TYPE)
async def deliver_callback(payload: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """POST the webhook; the result records the receiver's status."""
    url = payload.get("url")
    if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname:
        raise PermanentError("payload.url must be an http:// or https:// URL with a host")
    body = payload.get("body")
    if not isinstance(body, dict):
        raise PermanentError("payload.body must be a JSON object")
    data = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    settings = _settings
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, "Webhook-Id": str(ctx.job_id)}
    if settings.signing_secret is not None:
        headers["Webhook-Signature"] = signature_header(settings.signing_secret, data, int(time.time()))
    timeout = max(0.001, min(settings.timeout_seconds, ctx.remaining_seconds))
    where = redact_url(url)
    answer = await exchange(
        "POST", url, headers=headers, data=data, timeout=timeout, body_limit=ERROR_BODY_SNIPPET, allow_redirects=False
    )
    status, text = answer.status, answer.text
    if 200 <= status < 300:
        ctx.logger.info("webhook for job %s delivered to %s (HTTP %d)", payload.get("job_id"), where, status)
        return {"status": status}
    message = f"POST {where} answered HTTP {status}"
    if 300 <= status < 400:
        message += " (redirects are not followed)"
    if text.strip():
        message += f": {text.strip()}"
    raise CallbackDeliveryError(message)
