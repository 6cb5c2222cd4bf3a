"""The managers' dashboard: server-rendered pages on the service's HTTP port (see docs/dashboard.md).

FastAPI and Jinja are imported only when the dashboard is actually mounted, so importing the
package costs nothing to the CLI's other commands.
"""
from __future__ import annotations

__all__ = ["mount_dashboard"]


def mount_dashboard(app, *, store, ingest, auth, cfg, clock=None) -> None:
    from broker.web.app import mount_dashboard as mount

    mount(app, store=store, ingest=ingest, auth=auth, cfg=cfg, clock=clock)
