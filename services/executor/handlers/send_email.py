"""``send_email``: send one email through an SMTP server with smtplib.

Payload:
    to        address or list of addresses (required)
    subject   text (default "")
    body      plain-text body (default "")
    html      optional HTML alternative of the body
    cc, bcc   optional address or list of addresses
    reply_to  optional address

Result: ``{"message_id": "<...>", "recipients": [...], "refused": {address: "code message"}}``.

Settings: SMTP_* variables (``SmtpSettings`` below), checked at executor start when send_email will run.

Errors: invalid payloads (a subject or address with a character no header may carry: control
characters, NEL, U+2028 and U+2029 included), 5xx answers and a server without an extension the message
needs (SMTPUTF8 for non-ASCII addresses) fail at once (PermanentError); 4xx answers, refused connections
and timeouts retry. Every SMTP failure's message names the server tried (``SMTP server host:port: ...``).
Delivery is at-least-once like every job: a retry after a lost answer can send twice.
"""

from __future__ import annotations

import functools
import smtplib
import ssl
import unicodedata
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any

from services.executor.context import JobContext
from services.executor.errors import PermanentError
from services.executor.outcomes import describe_error
from services.executor.registry import handler
from shared.settings import Settings, SettingsError, setting

__all__ = ["SmtpSettings", "build_message", "send_email", "smtp_settings"]

MAX_RECIPIENTS = 100


def _address(raw: str) -> str:
    if not _is_address(raw):
        raise ValueError("is not an email address")
    return raw


@dataclass(frozen=True)
class SmtpSettings(Settings, flags=False):
    """The SMTP server send_email uses: environment only, read when an executor will run send_email."""

    host: str = setting("SMTP_HOST", "localhost", "the send_email handler's SMTP server")
    port: int = setting(
        "SMTP_PORT", 25, "its port: 465 is usual with SMTP_SSL, 587 with SMTP_STARTTLS", minimum=1, maximum=65535
    )
    starttls: bool = setting("SMTP_STARTTLS", False, "upgrade the connection with STARTTLS")
    ssl: bool = setting("SMTP_SSL", False, "implicit TLS from the first byte")
    username: str | None = setting("SMTP_USERNAME", None, "log in as this user")
    password: str | None = setting("SMTP_PASSWORD", None, "with this password (needs SMTP_USERNAME)", secret=True)
    sender: str = setting("SMTP_FROM", "jobservice@localhost", "the From address", parse=_address)
    timeout_seconds: float = setting(
        "SMTP_TIMEOUT_SECONDS", 30.0, "longest one SMTP conversation may take", minimum=0.1, maximum=3600.0
    )

    @property
    def server(self) -> str:
        """host:port, as failures name it."""
        return f"{self.host}:{self.port}"

    def check(self) -> None:
        """STARTTLS or implicit TLS, not both; a password only with a user name."""
        if self.starttls and self.ssl:
            raise SettingsError("SMTP_STARTTLS and SMTP_SSL are both true; choose one")
        if self.password and not self.username:
            raise SettingsError("SMTP_PASSWORD is set but SMTP_USERNAME is not")


@functools.cache
def smtp_settings() -> SmtpSettings:
    """The SMTP settings of this process, read from the environment once."""
    return SmtpSettings.from_env()


@handler("send_email", check=smtp_settings)
def send_email(payload: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Send the email described by ``payload`` (runs in a thread: smtplib blocks)."""
    settings = smtp_settings()
    message, recipients = build_message(payload, settings.sender)
    timeout = max(0.1, min(settings.timeout_seconds, ctx.remaining_seconds))
    try:
        client: smtplib.SMTP
        if settings.ssl:
            client = smtplib.SMTP_SSL(
                settings.host, settings.port, timeout=timeout, context=ssl.create_default_context()
            )
        else:
            client = smtplib.SMTP(settings.host, settings.port, timeout=timeout)
        with client:
            if settings.starttls:
                client.starttls(context=ssl.create_default_context())
            if settings.username:
                client.login(settings.username, settings.password or "")
            refused = client.send_message(message, from_addr=settings.sender, to_addrs=recipients)
    # Every failure names the server it tried: a misconfigured SMTP_HOST is then obvious in the log line
    # and the job's error_message.
    except smtplib.SMTPRecipientsRefused as error:
        answers = {address: _answer(code, text) for address, (code, text) in error.recipients.items()}
        if all(code >= 500 for code, _ in error.recipients.values()):
            raise PermanentError(f"SMTP server {settings.server} refused every recipient: {answers}") from error
        raise RuntimeError(f"SMTP server {settings.server} refused recipients for now: {answers}") from error
    except smtplib.SMTPNotSupportedError as error:  # an OSError too: before the retryable ones below
        raise PermanentError(f"SMTP server {settings.server} cannot send this message: {error}") from error
    except smtplib.SMTPResponseException as error:
        text = f"SMTP server {settings.server} answered {_answer(error.smtp_code, error.smtp_error)}"
        if error.smtp_code >= 500:
            raise PermanentError(text) from error
        raise RuntimeError(text) from error
    except OSError as error:  # refused, unreachable, timed out, disconnected, TLS: all worth a retry
        raise ConnectionError(f"SMTP server {settings.server}: {describe_error(error)}") from error
    ctx.logger.info("email sent to %d recipients", len(recipients) - len(refused))
    return {
        "message_id": message["Message-ID"],
        "recipients": [address for address in recipients if address not in refused],
        "refused": {address: _answer(code, text) for address, (code, text) in refused.items()},
    }


def build_message(payload: dict[str, Any], sender: str) -> tuple[EmailMessage, list[str]]:
    """The message and its envelope recipients; PermanentError names the first bad field."""
    to = _addresses(payload, "to", required=True)
    cc = _addresses(payload, "cc")
    bcc = _addresses(payload, "bcc")
    subject = _text(payload, "subject", header=True)
    body = _text(payload, "body")
    html = payload.get("html")
    reply_to = payload.get("reply_to")
    if reply_to is not None and not (isinstance(reply_to, str) and _is_address(reply_to)):
        raise PermanentError("payload.reply_to must be an email address")
    if html is not None and not isinstance(html, str):
        raise PermanentError("payload.html must be a string")
    recipients = list(dict.fromkeys([*to, *cc, *bcc]))
    if len(recipients) > MAX_RECIPIENTS:
        raise PermanentError(f"at most {MAX_RECIPIENTS} recipients (to, cc and bcc together)")
    try:
        message = EmailMessage()
        message["From"] = sender
        message["To"] = ", ".join(to)
        if cc:
            message["Cc"] = ", ".join(cc)
        if reply_to:
            message["Reply-To"] = reply_to.strip()
        message["Subject"] = subject
        message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
        message.set_content(body)
        if html:
            message.add_alternative(html, subtype="html")
    except ValueError as error:  # what the email package refuses beyond the checks above: still the payload's fault
        raise PermanentError(f"payload cannot be sent as an email: {error}") from error
    return message, recipients


def _addresses(payload: dict[str, Any], name: str, required: bool = False) -> list[str]:
    value = payload.get(name)
    if value is None or value == [] or value == "":
        if required:
            raise PermanentError(f"payload.{name} is required (an address or a list of addresses)")
        return []
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not all(isinstance(v, str) and _is_address(v) for v in values):
        raise PermanentError(f"payload.{name} must be an email address or a list of them, got {value!r}")
    return [v.strip() for v in values]


def _text(payload: dict[str, Any], name: str, header: bool = False) -> str:
    value = payload.get(name, "")
    if not isinstance(value, str):
        raise PermanentError(f"payload.{name} must be a string")
    if header and _header_unsafe(value.replace("\t", " ")):
        raise PermanentError(
            f"payload.{name} must be one line without control characters (line and paragraph separators, "
            "NEL and vertical tab included)"
        )
    return value


def _is_address(value: str) -> bool:
    value = value.strip()
    local, at, domain = value.rpartition("@")
    return bool(at and local and domain) and not any(c in value for c in " ,<>") and not _header_unsafe(value)


def _header_unsafe(value: str) -> bool:
    """Whether ``value`` has a character no mail header may carry: a control character (C0, DEL, C1 with
    NEL) or a line or paragraph separator, which Python's email package refuses as line breaks."""
    return any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in value)


def _answer(code: int, text: bytes | str) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"{code} {text}".strip()
