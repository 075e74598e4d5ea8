"""``send_email``: send one email through an SMTP server with smtplib.

Payload:
    to        address or list of addresses (required)
    subject   text (default "")
    body      plain-text body (default "")
    html      optional HTML alternative of the body
    cc, bcc   optional address or list of addresses
    reply_to  optional address

Result: ``{"message_id": "<...>", "recipients": [...], "refused": {address: "code message"}}``.

Settings (environment, checked at executor start when send_email will run):
    SMTP_HOST (localhost), SMTP_PORT (25; 465 is usual with SMTP_SSL, 587 with SMTP_STARTTLS),
    SMTP_STARTTLS (false), SMTP_SSL (false; implicit TLS), SMTP_USERNAME, SMTP_PASSWORD (login when a
    username is set), SMTP_FROM (jobservice@localhost), SMTP_TIMEOUT_SECONDS (30).

Errors: invalid payloads and 5xx answers fail at once (PermanentError); 4xx answers, refused connections
and timeouts retry. Delivery is at-least-once like every job: a retry after a lost answer can send twice.
"""

from __future__ import annotations

import functools
import smtplib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any

from services.executor.context import JobContext
from services.executor.errors import PermanentError
from services.executor.registry import handler
from shared.settings import SettingsError, env_bool, env_float, env_int, env_str

__all__ = ["SmtpSettings", "build_message", "send_email", "smtp_settings"]

DEFAULT_SMTP_HOST = "localhost"
DEFAULT_SMTP_PORT = 25
DEFAULT_SMTP_FROM = "jobservice@localhost"
DEFAULT_SMTP_TIMEOUT_SECONDS = 30.0
MAX_RECIPIENTS = 100


@dataclass(frozen=True)
class SmtpSettings:
    host: str = DEFAULT_SMTP_HOST
    port: int = DEFAULT_SMTP_PORT
    starttls: bool = False
    ssl: bool = False
    username: str | None = None
    password: str | None = None
    sender: str = DEFAULT_SMTP_FROM
    timeout_seconds: float = DEFAULT_SMTP_TIMEOUT_SECONDS

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SmtpSettings:
        """SMTP_* variables; SettingsError names a bad one."""
        settings = cls(
            host=env_str("SMTP_HOST", DEFAULT_SMTP_HOST, env),
            port=env_int("SMTP_PORT", DEFAULT_SMTP_PORT, 1, 65535, env),
            starttls=env_bool("SMTP_STARTTLS", False, env),
            ssl=env_bool("SMTP_SSL", False, env),
            username=env_str("SMTP_USERNAME", "", env) or None,
            password=env_str("SMTP_PASSWORD", "", env) or None,
            sender=env_str("SMTP_FROM", DEFAULT_SMTP_FROM, env),
            timeout_seconds=env_float("SMTP_TIMEOUT_SECONDS", DEFAULT_SMTP_TIMEOUT_SECONDS, 0.1, 3600.0, env),
        )
        if settings.starttls and settings.ssl:
            raise SettingsError("SMTP_STARTTLS and SMTP_SSL are both true; choose one")
        if not _is_address(settings.sender):
            raise SettingsError(f"SMTP_FROM={settings.sender!r} is not an email address")
        if settings.password and not settings.username:
            raise SettingsError("SMTP_PASSWORD is set but SMTP_USERNAME is not")
        return settings


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
    except smtplib.SMTPRecipientsRefused as error:
        answers = {address: _answer(code, text) for address, (code, text) in error.recipients.items()}
        if all(code >= 500 for code, _ in error.recipients.values()):
            raise PermanentError(f"every recipient was refused: {answers}") from error
        raise RuntimeError(f"recipients refused for now: {answers}") from error
    except smtplib.SMTPResponseException as error:
        text = f"SMTP server answered {_answer(error.smtp_code, error.smtp_error)}"
        if error.smtp_code >= 500:
            raise PermanentError(text) from error
        raise RuntimeError(text) from error
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
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(to)
    if cc:
        message["Cc"] = ", ".join(cc)
    if reply_to:
        message["Reply-To"] = reply_to
    message["Subject"] = subject
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    message.set_content(body)
    if html:
        message.add_alternative(html, subtype="html")
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
    if header and ("\r" in value or "\n" in value):
        raise PermanentError(f"payload.{name} must be one line")
    return value


def _is_address(value: str) -> bool:
    value = value.strip()
    local, at, domain = value.rpartition("@")
    return bool(at and local and domain) and not any(c in value for c in "\r\n\t ,<>\x00")


def _answer(code: int, text: bytes | str) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"{code} {text}".strip()
