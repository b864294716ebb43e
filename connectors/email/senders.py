"""Where e-mails go: an SMTP server, or (embedded default) ``DATA_DIR/outbox/<id>.eml``.

``send`` raises :class:`MailRetriable` for transient failures (connection refused, 4xx) and
:class:`MailRejected` for permanent ones (5xx, recipient refused); the caller retries the
first under its retry policy (:mod:`trailpay.retry`) and dead-letters the second.
"""

from __future__ import annotations

import asyncio
import os
import smtplib
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol

from trailpay.domain.errors import PermanentError, RetriableError
from trailpay.settings import Settings


class MailRetriable(RetriableError):
    """The mail server is unreachable or said "try later"."""


class MailRejected(PermanentError):
    """The mail server refused the message for good."""


class Sender(Protocol):
    async def send(self, event_id: str, message: EmailMessage) -> None: ...


def _safe_name(event_id: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.:" else "_" for c in event_id)[:200]


class OutboxSender:
    """Writes each message once to ``<dir>/<event_id>.eml`` (atomic rename; existing = sent)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def send(self, event_id: str, message: EmailMessage) -> None:
        await asyncio.to_thread(self._write, event_id, message)

    def _write(self, event_id: str, message: EmailMessage) -> None:
        path = self.directory / f"{_safe_name(event_id)}.eml"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            if path.exists():
                return
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(message.as_bytes())
            os.replace(tmp, path)
        except OSError as exc:  # disk full, directory not writable: may clear up
            raise MailRetriable(f"outbox {self.directory} not writable: {exc}") from exc


class SmtpSender:
    def __init__(self, settings: Settings, timeout_s: float = 15.0) -> None:
        assert settings.smtp_host
        self.host = settings.smtp_host
        self.port = settings.smtp_port
        self.user = settings.smtp_user
        self.password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
        self.starttls = settings.smtp_starttls
        self.timeout_s = timeout_s

    async def send(self, event_id: str, message: EmailMessage) -> None:
        await asyncio.to_thread(self._send, message)

    def _send(self, message: EmailMessage) -> None:
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout_s) as smtp:
                if self.starttls:
                    smtp.starttls()
                if self.user and self.password:
                    smtp.login(self.user, self.password)
                smtp.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            raise MailRejected(f"recipient refused: {list(exc.recipients.values())[:1]}") from exc
        except smtplib.SMTPResponseException as exc:
            if 400 <= exc.smtp_code < 500:
                raise MailRetriable(f"SMTP {exc.smtp_code}: {exc.smtp_error!r}") from exc
            raise MailRejected(f"SMTP {exc.smtp_code}: {exc.smtp_error!r}") from exc
        except (TimeoutError, smtplib.SMTPException, OSError) as exc:
            raise MailRetriable(f"SMTP server {self.host}:{self.port} unreachable: {exc}") from exc


def sender_for(settings: Settings) -> Sender:
    if settings.smtp_host:
        return SmtpSender(settings)
    return OutboxSender(settings.data_path / "outbox")
