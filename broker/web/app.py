"""`mount_dashboard`: the dashboard's pages, /static and /live on the API's app.

Server-rendered (Jinja2), every asset under /static, charts as inline SVG made here, so
the pages work on a centre's LAN with no internet. Handlers that touch SQLite or argon2
are plain `def`s, which FastAPI runs on its thread pool; only /live is async.

The pages live in `broker.web.pages`, one router each; what they share is in
`broker.web.context` (the service's parts, clock, signer, templates) and `broker.web.page`
(the request's session, language and rendering, and the login and role checks).
"""
from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.staticfiles import StaticFiles

from broker.api.deps import add_principal_resolver
from broker.auth import Principal
from broker.web.context import HERE, Dashboard
from broker.web.page import install_page_errors
from broker.web.pages import (alerts, devices, hall, login, misuse, officers, overview, province, reports, users,
                              waiting)
from common.clock import Clock, now

__all__ = ["DASHBOARD_PATHS", "mount_dashboard"]

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
DASHBOARD_PATHS = ("/", "/officers", "/devices", "/misuse", "/reports", "/waiting", "/alerts", "/province")


def _session_resolver(dash: Dashboard):
    def resolve(request: Request) -> Principal | None:
        """The dashboard session as an API principal. A state-changing API call made with the
        cookie must also carry the page's CSRF token in X-CSRF-Token."""
        s = dash.session_of(request)
        if s is None:
            return None
        if request.method not in SAFE_METHODS and not dash.signer.csrf_ok(s.sid, request.headers.get("x-csrf-token")):
            return None
        return dash.principal_of(s)

    return resolve


def mount_dashboard(app: FastAPI, *, store, ingest, auth, cfg, clock: Clock | None = None) -> None:
    """Add the dashboard's pages, /static and /live to `app`, and let its session authorise /api/v1.

    `clock` defaults to the API's (`create_app(clock=...)`), so pages and API agree on the time.
    """
    if clock is None:
        clock = getattr(app.state, "clock", now)
    dash = Dashboard.from_config(store=store, ingest=ingest, auth=auth, cfg=cfg, clock=clock)
    app.state.dashboard = dash
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    add_principal_resolver(app, _session_resolver(dash))
    install_page_errors(app)
    for page in (login, overview, officers, devices, misuse, reports, hall, waiting, alerts, province, users):
        app.include_router(page.router)
