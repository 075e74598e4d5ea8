"""Built-in handlers, registered on import:

- ``echo``          returns its payload.
- ``sleep``         sleeps ``seconds`` (default 1), stopping early when cancelled.
- ``fail``          raises ``message`` on its first ``times`` attempts (on every attempt when ``times`` is
                    absent); ``permanent: true`` makes the failure non-retryable.
- ``send_email``    sends an email over SMTP (see ``send_email``; configured by SMTP_* variables).
- ``http_request``  calls a URL (see ``http_request``); 2xx succeeds, 5xx/408/429/network errors retry, other
                    statuses and destinations the egress policy refuses (shared/egress.py) fail at once.
- ``jobs.callback`` delivers a completion webhook (queued by the database when a job with a callback_url
                    finishes; see ``callback``).
"""

from __future__ import annotations

from services.executor.handlers import basic, callback, http_request, send_email

__all__ = ["basic", "callback", "http_request", "send_email"]
