"""Delivering one notice: an e-mail over SMTP, or a signed JSON POST to a webhook.

Each function either returns (delivered) or raises ChannelError saying why; the sender
(broker.alerts.engine) keeps the notice in the outbox and tries again later. Nothing here
retries or sleeps.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import smtplib
import ssl
import urllib.error
import urllib.request
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from common.errors import HailongError

__all__ = ["ChannelError", "SIGNATURE_HEADER", "send_email", "send_webhook", "sign"]

SIGNATURE_HEADER = "X-Hailong-Signature"
DELIVERY_HEADER = "X-Hailong-Delivery"


class ChannelError(HailongError):
    """A notice could not be delivered this time."""


def sign(secret: str, body: bytes) -> str:
    """The signature header's value: "sha256=" and the hex HMAC-SHA256 of the exact body bytes."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def send_webhook(settings, body: dict, delivery: int) -> None:
    """POST the body; any 2xx is delivered. `delivery` (the outbox id) lets the receiver drop a resend."""
    data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    request = urllib.request.Request(settings.url, data=data, method="POST", headers={
        "Content-Type": "application/json; charset=utf-8", "User-Agent": "hailong-alerts",
        SIGNATURE_HEADER: sign(settings.secret or "", data), DELIVERY_HEADER: str(delivery)})
    try:
        with urllib.request.urlopen(request, timeout=settings.timeout_s) as answer:
            status = answer.status
    except urllib.error.HTTPError as e:
        raise ChannelError(f"webhook answered {e.code}") from None
    except (OSError, ValueError) as e:  # URLError, refused, timeout
        raise ChannelError(f"webhook unreachable: {getattr(e, 'reason', None) or e}") from None
    if not 200 <= status < 300:
        raise ChannelError(f"webhook answered {status}")


def _message(settings, body: dict) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = settings.sender
    msg["To"] = ", ".join(body["to"])
    msg["Subject"] = body["subject"]
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = make_msgid(domain="hailong")
    msg.set_content(body["text"], charset="utf-8")
    return msg


def _tls(settings) -> ssl.SSLContext:
    """Verifying the server (name and chain), against email.ca_file or the system's CAs."""
    return ssl.create_default_context(cafile=str(settings.ca_file) if settings.ca_file else None)


def send_email(settings, body: dict) -> None:
    """Send {"to": [...], "subject", "text"} through the configured SMTP server."""
    try:
        if settings.security == "tls":
            server = smtplib.SMTP_SSL(settings.host, settings.port, timeout=settings.timeout_s, context=_tls(settings))
        else:
            server = smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout_s)
        with server:
            if settings.security == "starttls":
                server.starttls(context=_tls(settings))
            if settings.username:
                server.login(settings.username, settings.password or "")
            server.send_message(_message(settings, body))
    except (OSError, smtplib.SMTPException) as e:
        raise ChannelError(f"SMTP {settings.host}:{settings.port}: {e}") from None
