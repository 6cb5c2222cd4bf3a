"""`create_app`: the API's FastAPI app, assembled from one router per concern."""
from __future__ import annotations

from fastapi import FastAPI

from broker.api import alerts, devices, figures, held, ops, principals, queues, registry, releases
from broker.api.deps import API, ApiSettings
from broker.api.errors import install_error_handlers
from common.clock import Clock, now

__all__ = ["create_app"]


def create_app(*, store, ingest, auth, cfg, clock: Clock = now) -> FastAPI:
    """The API over `store` (reads, registry), `ingest` (health, metrics, publishing) and `auth`.

    `clock` (seconds since the epoch) is the time the API reads: an assignment's default
    moment and a report's "generated at".
    """
    app = FastAPI(title="hailong", version="1",
                  description="Citizen satisfaction at one-stop administrative centres. "
                              "See docs/api.md for roles and tokens.",
                  openapi_url=f"{API}/openapi.json", docs_url=f"{API}/docs", redoc_url=None)
    app.state.store, app.state.ingest, app.state.auth, app.state.cfg = store, ingest, auth, cfg
    app.state.clock = clock
    app.state.settings = ApiSettings.of(cfg)
    app.state.principal_resolvers = []
    install_error_handlers(app)
    for router in (ops.router, figures.router, registry.router, devices.router, held.router, principals.router,
                   queues.router, alerts.router, releases.router):
        app.include_router(router)
    return app
