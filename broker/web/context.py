"""What every dashboard page shares: the service's parts, the clock, the session signer and the templates.

`mount_dashboard` builds one `Dashboard` and keeps it on `app.state.dashboard`; pages get it
(and the request's session) through the dependencies in `broker.web.page`.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from fastapi import Request

from broker.auth import Principal
from broker.web.session import SESSION_COOKIE, Session, Signer, load_or_create_secret
from common.clock import Clock
from common.periods import DEFAULT_TZ, today, zone

__all__ = ["HERE", "Dashboard"]

HERE = Path(__file__).resolve().parent


@dataclass
class Dashboard:
    store: Any
    ingest: Any
    auth: Any
    clock: Clock  # seconds since the epoch: "today", the times shown, session expiry, an assignment's moment
    signer: Signer
    env: jinja2.Environment
    tz_name: str
    satisfied_from: int | None
    secure: bool  # cookies only over HTTPS
    service_name: str
    voice_dir: Path | None = None  # the centre's recorded clips, if any (the hall display)

    @classmethod
    def from_config(cls, *, store, ingest, auth, cfg, clock: Clock) -> "Dashboard":
        """RuntimeError when the session secret can neither be read nor created."""
        try:
            secret = load_or_create_secret(cfg.session_secret_path)
        except OSError as e:
            raise RuntimeError(f"dashboard: cannot read or create the session secret {cfg.session_secret_path}: "
                               f"{e.strerror or e} (set service.data_dir or http.session_secret_file)") from None
        env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(HERE / "templates")),
                                 autoescape=jinja2.select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)
        return cls(store=store, ingest=ingest, auth=auth, clock=clock, signer=Signer(secret, clock=clock), env=env,
                   tz_name=getattr(cfg.service, "timezone", DEFAULT_TZ),
                   satisfied_from=getattr(cfg.service, "satisfied_from", 0) or None,
                   secure=bool(getattr(cfg.http, "cookie_secure", False)),
                   service_name=getattr(cfg.service, "name", ""),
                   voice_dir=getattr(getattr(cfg, "hall", None), "voice_dir", None))

    @property
    def tz(self) -> ZoneInfo:
        return zone(self.tz_name)

    def today(self) -> date:
        return today(self.tz, self.clock)

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def local_time(self, ms: int | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
        if ms is None:
            return "—"
        return datetime.fromtimestamp(ms / 1000, self.tz).strftime(fmt)

    def session_of(self, request: Request) -> Session | None:
        return self.signer.read(request.cookies.get(SESSION_COOKIE))

    def principal_of(self, session: Session) -> Principal:
        """The session's user as a principal: its sites read now, so a change of scope applies at once.

        A user who is no longer in the auth tables sees no site at all.
        """
        current = self.auth.user(session.user)
        sites = frozenset() if current is None else current.sites
        return Principal(session.user, session.role, "session", sites=sites)

    def site_names(self) -> dict[str, str]:
        return {s["id"]: s["name"] or s["id"] for s in self.store.sites()}
