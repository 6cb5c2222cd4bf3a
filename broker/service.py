"""The central service's parts, assembled from its config: store, auth, ingest, API with dashboard.

`hailong broker run` and `hailong demo` both build the service here, so what the demo shows
is the service as it runs in production. Nothing is started: callers choose the order
(the CLI claims the HTTP port before connecting to MQTT).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


def ingest_settings(cfg):
    from broker.ingest import IngestSettings

    m = cfg.mqtt
    return IngestSettings(
        host=m.embedded_bind if m.embedded else m.brokers[0][0], port=m.port if m.embedded else m.brokers[0][1],
        hosts=() if m.embedded else m.brokers,
        username=m.username, password=m.password,
        protocol=m.protocol, client_id=m.client_id, prefix=m.prefix, tls=m.tls and not m.embedded,
        shared_group=m.shared_group,
        ca_file=str(m.ca_file) if m.ca_file else None,
        cert_file=str(m.cert_file) if m.cert_file else None,
        key_file=str(m.key_file) if m.key_file else None,
        session_expiry_s=m.session_expiry_s, keepalive_s=m.keepalive_s, batch_max=m.batch_max, batch_wait_ms=m.batch_wait_ms,
        ticket_fresh_s=cfg.service.ticket_fresh_s, timezone=cfg.service.timezone,
        queue_block_size=cfg.service.queue_block_size,
    )


@dataclass
class Service:
    store: Any
    auth: Any
    ingest: Any
    api: Any  # ApiServer, not bound yet
    alerts: Any = None  # AlertEngine, not started; None when alerts.enabled is false

    @classmethod
    def assemble(cls, cfg, *, clock=None) -> "Service":
        """Open the store and auth, build ingest and the API with the dashboard mounted.

        Raises RuntimeError (with everything opened closed again) when the dashboard cannot
        be mounted, e.g. its session secret cannot be written in service.data_dir.
        `clock` (seconds since the epoch, default common.clock.now) is the time every part reads.
        """
        from broker.alerts.engine import AlertEngine
        from broker.api import ApiServer, create_app
        from broker.auth import Auth
        from broker.ingest import Ingest
        from broker.store import Store
        from broker.web import mount_dashboard
        from common.clock import now

        clock = clock or now
        store = Store.open(cfg.store.url)
        try:
            auth = Auth.from_config(cfg)
        except BaseException:
            store.close()
            raise
        ingest = Ingest(store, ingest_settings(cfg), now_ms=lambda: int(clock() * 1000))
        app = create_app(store=store, ingest=ingest, auth=auth, cfg=cfg, clock=clock)
        try:
            mount_dashboard(app, store=store, ingest=ingest, auth=auth, cfg=cfg)
        except RuntimeError:
            auth.close()
            store.close()
            raise
        alerts = AlertEngine(store, cfg, clock=clock) if cfg.alerts.enabled else None
        return cls(store, auth, ingest, ApiServer(app, cfg.http.host, cfg.http.port), alerts)

    def close(self) -> None:
        """The API first, so no request sees a half-stopped ingest or a closed store."""
        self.api.stop()
        if self.alerts is not None:
            self.alerts.stop()
        self.ingest.stop()
        self.auth.close()
        self.store.close()
