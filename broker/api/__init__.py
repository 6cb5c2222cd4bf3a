"""The service's HTTP API (FastAPI), and `ApiServer`, which runs it with uvicorn on a thread.

Every /api/v1 route and /metrics needs a principal (see `deps.principal`); /healthz does not,
so a load balancer or systemd watchdog can probe it. Errors are always JSON
`{"detail": "..."}` (see `errors`).

One router per concern: `ops` (healthz, metrics), `figures` (satisfaction, report files,
reasons, events, dead letters), `registry` (sites, counters, officers), `devices`
(devices, assignments, display, identify), `held` (held events: list, approve, discard) and
`alerts` (alerts, acknowledging them, opening hours per site);
what a manager or an admin does to counters lives in
`broker.actions`, shared with the dashboard. `deps` holds what routes depend on: the
caller, the role checks, and the service's parts on `app.state`.

Handlers are plain `def`s: FastAPI runs them on its thread pool, which suits the blocking
SQLite store and paho's thread-safe publish.
"""
from __future__ import annotations

from broker.api.app import create_app
from broker.api.deps import API, PrincipalResolver, add_principal_resolver
from broker.api.server import ApiServer, ApiServerError

__all__ = ["API", "ApiServer", "ApiServerError", "PrincipalResolver", "add_principal_resolver", "create_app"]
