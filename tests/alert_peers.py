"""The alerts' real peers in tests: a webhook receiver that checks signatures, and an SMTP server (aiosmtpd).

Both can be stopped and started again on the same port mid-test, to play a channel that is down.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.mosquitto import free_port
from tests.support import Waiter


class WebhookSink:
    """Receives POSTs; `posts` holds {"delivery", "signed", "body"} for each, `signed` verified with `secret`."""

    def __init__(self, secret: str):
        self.secret, self.port = secret, free_port()
        self.posts = Waiter()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> "WebhookSink":
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                data = self.rfile.read(int(self.headers["Content-Length"]))
                want = "sha256=" + hmac.new(sink.secret.encode(), data, hashlib.sha256).hexdigest()
                sink.posts.append({"delivery": self.headers["X-Hailong-Delivery"], "body": json.loads(data),
                                   "at": time.monotonic(),
                                   "signed": hmac.compare_digest(want, self.headers["X-Hailong-Signature"] or "")})
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def of(self, event: str, rule: str | None = None) -> list[dict]:
        return [p for p in self.posts.items if p["body"]["event"] == event
                and (rule is None or p["body"]["alert"]["rule"] == rule)]


class SmtpSink:
    """A real SMTP server on loopback requiring a login; `mails` holds (recipients, parsed message)."""

    def __init__(self, user: str, password: str, *, starttls=None, tls=None):
        """`starttls` or `tls`: an ssl.SSLContext for STARTTLS (then required) or for TLS from the first byte."""
        self.user, self.password, self.port = user, password, free_port()
        self.starttls, self.tls = starttls, tls
        self.mails = Waiter()
        self._controller = None

    def start(self) -> "SmtpSink":
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult

        sink = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                sink.mails.append((list(envelope.rcpt_tos), message_from_bytes(envelope.content, policy=policy.default)))
                return "250 OK"

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = auth_data.login == sink.user.encode() and auth_data.password == sink.password.encode()
            return AuthResult(success=ok)

        self._controller = Controller(Handler(), hostname="127.0.0.1", port=self.port, authenticator=authenticator,
                                      auth_required=True, auth_require_tls=self.starttls is not None,
                                      tls_context=self.starttls, require_starttls=self.starttls is not None,
                                      ssl_context=self.tls)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def subjects(self) -> list[str]:
        return [m["Subject"] for _, m in self.mails.items]
