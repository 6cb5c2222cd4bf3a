"""Operations: /healthz for probes (no auth) and /metrics for Prometheus."""
from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse

from broker.api.deps import IngestDep, StoreDep, Viewer

__all__ = ["router"]

log = logging.getLogger("hailong.api")

router = APIRouter(tags=["ops"])


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


@router.get("/healthz", summary="liveness and readiness; no auth")
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


@router.get("/metrics", response_class=PlainTextResponse, summary="Prometheus text format 0.0.4 (any role)")
def metrics(_: Viewer, store: StoreDep, ingest: IngestDep):
    m = ingest.metrics
    dead = store.counts().get("dead_letters", 0)
    series = [
        ("hailong_events_ingested_total", "counter", "Events stored for the first time.", m.ingested),
        ("hailong_events_duplicated_total", "counter", "Events received again and recognised as stored.",
         m.duplicates),
        ("hailong_events_rejected_total", "counter", "Events refused and dead-lettered.", m.rejected),
        ("hailong_ingest_batches_total", "counter", "Groups of messages committed in one transaction.", m.batches),
        ("hailong_ingest_lag_ms", "gauge", "Receive-to-commit time of the latest event, in ms.", m.last_lag_ms),
        ("hailong_tickets_issued_total", "counter", "Queue ticket numbers sent to counters.", m.tickets),
        ("hailong_devices_online", "gauge", "Devices whose retained status says online.",
         sum(1 for v in dict(m.online).values() if v)),
        ("hailong_dead_letters", "gauge", "Messages kept in the dead-letter table.", dead),
    ]
    lines = []
    for name, kind, help_, value in series:
        lines += [f"# HELP {name} {help_}", f"# TYPE {name} {kind}", f"{name} {value}"]
    return PlainTextResponse("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4; charset=utf-8")
