"""Operations: /healthz for probes (no auth) and /metrics for Prometheus."""
from __future__ import annotations

import logging
from typing import Any, Literal

from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, Field

from broker.api.deps import IngestDep, StoreDep, Viewer
from broker.api.errors import api_router

__all__ = ["router"]

log = logging.getLogger("hailong.api")

router = api_router("ops", prefix="")


def _health(store, ingest) -> dict[str, Any]:
    body: dict[str, Any] = {"ok": True, "ingest": "connected", "store": "ok"}
    if ingest.failed.is_set():
        body["ingest"] = "failed"
    elif not ingest.connected.is_set():
        body["ingest"] = "disconnected"
    try:
        store.counts()  # one tiny table: cheap enough for a probe every few seconds
    except Exception as e:  # noqa: BLE001 - any store failure means "not ready"
        log.warning("health check: store does not answer: %s", e)
        body["store"] = "error"
    return body


class Health(BaseModel):
    ok: bool
    ingest: Literal["connected", "disconnected", "failed"]
    store: Literal["ok", "error"]
    detail: str | None = Field(None, description="why it is not ready; only when `ok` is false")


@router.get("/healthz", summary="liveness and readiness; no auth", response_model=None,
            responses={200: {"model": Health}, 503: {"model": Health, "description": "not ready"}})
def healthz(store: StoreDep, ingest: IngestDep):
    body = _health(store, ingest)
    if body["ingest"] != "connected" or body["store"] != "ok":
        body["ok"] = False
        reasons = []
        if body["ingest"] != "connected":
            reasons.append(f"MQTT ingest is {body['ingest']}")
        if body["store"] != "ok":
            reasons.append("the store does not answer")
        body["detail"] = "; ".join(reasons)
        return JSONResponse(body, status_code=503)
    return body


def _series(m, totals: dict) -> list[tuple[str, str, str, float]]:
    """(name, type, help, value) of every metric: the ingest's counters since start, then the store's."""
    return [
        ("hailong_events_ingested_total", "counter", "Events stored for the first time.", m.ingested),
        ("hailong_events_duplicated_total", "counter", "Events received again and recognised as stored.",
         m.duplicates),
        ("hailong_events_rejected_total", "counter", "Events refused and dead-lettered.", m.rejected),
        ("hailong_ingest_batches_total", "counter", "Groups of messages committed in one transaction.", m.batches),
        ("hailong_ingest_lag_seconds", "gauge", "Receive-to-commit time of the latest event.",
         m.last_lag_ms / 1000),
        ("hailong_tickets_issued_total", "counter", "Queue ticket numbers sent to counters.", m.tickets),
        ("hailong_devices_online", "gauge", "Devices whose retained status says online.",
         sum(1 for v in dict(m.online).values() if v)),
        ("hailong_dead_letters", "gauge", "Messages kept in the dead-letter table.", totals.get("dead_letters", 0)),
        ("hailong_dead_letters_dropped_total", "counter",
         "Oldest dead letters dropped to keep the table bounded.", totals.get("dead_letters_dropped", 0)),
        ("hailong_events_conflicts_total", "counter",
         "Resends whose body differs from the stored event (dead-lettered).", totals.get("conflicts", 0)),
        ("hailong_events_held", "gauge", "Events stored but not counted, waiting for an admin.",
         totals.get("held", 0)),
        ("hailong_mqtt_brokers", "gauge", "MQTT brokers the service consumes from (docs/brokers.md).", m.brokers),
        ("hailong_mqtt_brokers_connected", "gauge", "Of those, the ones it is connected to now.",
         m.brokers_connected),
    ]


def _alert_series(store) -> list[tuple[str, str, str, float]]:
    """The alerts' figures (docs/alerts.md): what is open, and notices that could not be delivered yet."""
    return [
        ("hailong_alerts_open", "gauge", "Alerts open now (any rule, any subject).", store.open_alert_count()),
        ("hailong_alert_notices_pending", "gauge",
         "Alert notices (e-mail, webhook) in the outbox, not delivered yet.", store.outbox_pending()),
    ]


@router.get("/metrics", summary="Prometheus text format 0.0.4 (any role)", response_class=Response,
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                             "description": "the metrics; errors are JSON, as everywhere"}})
def metrics(_: Viewer, store: StoreDep, ingest: IngestDep):
    lines = []
    for name, kind, help_, value in _series(ingest.metrics, store.counts()) + _alert_series(store):
        lines += [f"# HELP {name} {help_}", f"# TYPE {name} {kind}", f"{name} {value}"]
    return PlainTextResponse("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4; charset=utf-8")
