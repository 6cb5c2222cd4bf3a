"""Signed login sessions and CSRF tokens for the dashboard.

A session is a cookie holding {user, role, expiry, sid}, signed with HMAC-SHA256 under
the service's session secret (http.session_secret_file, or generated into
service.data_dir at first start). Nothing is kept server-side, so a restart keeps
everyone logged in; a session simply stops being accepted after 12 hours.

CSRF: every form carries a hidden token derived from the secret and something the
browser holds in a cookie: before login the random pre-session cookie, after login the
session's sid. An attacker's page can neither read those cookies nor compute the token.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from common.clock import Clock, now

SESSION_COOKIE = "hl_session"
PRE_COOKIE = "hl_pre"
LANG_COOKIE = "lang"
SESSION_TTL_S = 12 * 3600
SECRET_BYTES = 32


def load_or_create_secret(path: Path) -> bytes:
    """The secret in `path`; at first start, 32 random bytes written there with mode 0600."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = secrets.token_bytes(SECRET_BYTES)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process won the race: use theirs
            return load_or_create_secret(path)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    if len(data.strip()) < 16:
        raise ValueError(f"session secret {path} is too short: at least 16 bytes, preferably 32 random ones")
    return data


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Session:
    user: str
    role: str
    expires: int  # seconds since epoch
    sid: str


class Signer:
    def __init__(self, secret: bytes, *, clock: Clock = now, ttl_s: int = SESSION_TTL_S):
        self._key = hashlib.sha256(b"hailong-dashboard\0" + secret).digest()
        self._clock = clock
        self.ttl_s = ttl_s

    def _mac(self, purpose: str, data: str) -> str:
        return _b64(hmac.new(self._key, f"{purpose}\0{data}".encode(), hashlib.sha256).digest())

    # sessions

    def issue(self, user: str, role: str) -> tuple[str, Session]:
        session = Session(user, role, int(self._clock()) + self.ttl_s, secrets.token_urlsafe(16))
        body = _b64(json.dumps({"u": session.user, "r": session.role, "e": session.expires, "s": session.sid},
                               separators=(",", ":")).encode())
        return f"{body}.{self._mac('session', body)}", session

    def read(self, cookie: str | None) -> Session | None:
        if not cookie or len(cookie) > 1024 or cookie.count(".") != 1:
            return None
        body, mac = cookie.split(".")
        if not hmac.compare_digest(mac, self._mac("session", body)):
            return None
        try:
            data = json.loads(_unb64(body))
            session = Session(str(data["u"]), str(data["r"]), int(data["e"]), str(data["s"]))
        except (ValueError, KeyError, TypeError):
            return None
        if session.expires <= self._clock():
            return None
        return session

    # CSRF

    def csrf_for(self, binding: str) -> str:
        return self._mac("csrf", binding)

    def csrf_ok(self, binding: str | None, token: str | None) -> bool:
        if not binding or not token:
            return False
        return hmac.compare_digest(token, self.csrf_for(binding))


def new_pre_session() -> str:
    return secrets.token_urlsafe(24)


def safe_next(target: str | None) -> str:
    """`target` if it is a path on this site, else "/": no open redirects via ?next=."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    if any(ord(c) < 0x20 or c == "\x7f" for c in target):
        return "/"
    if target.startswith(("/login", "/logout")):
        return "/"
    return target
