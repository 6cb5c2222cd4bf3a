"""The whole HTTP API against its own OpenAPI document, with Schemathesis (property-based).

A real service: real store file, real ingest on a real Mosquitto, uvicorn on a loopback port,
seeded with what the document's examples name, and an admin token so every route is reachable.
The document is the one `create_app` builds (Schemathesis needs it when tests are collected,
before any service runs); a test checks that the service serves exactly it. Every generated
request, valid or not, must be answered without a 5xx, with a status the document declares for
that operation and a body that matches the declared schema; a request the document calls
invalid must be refused, one it calls valid must not be (a 4xx other than 404/409).
"""
from __future__ import annotations

import re

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from broker.api import ApiServer, create_app
from broker.api.alerts import RANGE_PATTERN
from broker.auth import Auth
from broker.config import config_from_dict
from broker.ingest import Ingest, IngestSettings
from broker.store import Store
from tests.mosquitto import Mosquitto, free_port
from tests.test_broker_api import NOW, Counter, rating

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance, negative_data_rejection, positive_data_acceptance, ignored_auth]


def seed(store, broker) -> None:
    """What the document's examples name (site hcm-q1, counter 03, device hcm-q1-c03, officer off-0042),
    with ratings, a NEXT call, a low-rating reason, a held event and a dead letter, sent over MQTT,
    so the examples reach the answers that carry data, and commands reach a real device."""
    store.upsert_site("hcm-q1", "UBND Quận 1", tz="Asia/Ho_Chi_Minh")
    store.upsert_counter("hcm-q1", "03", "Quầy 3", device="hcm-q1-c03")
    store.upsert_officer("off-0042", "Nguyễn Thị Lan", "NTL", "Tư pháp", "04A1B2C3")
    device, stranger = Counter(broker, "hcm-q1-c03", "hcm-q1", "03"), Counter(broker, "hcm-q1-c09", "hcm-q1", "09")
    try:
        device.publish(b"{not json")
        device.send(rating(device, 4, "off-0042"), rating(device, 1, "off-0042", reason="Chờ lâu"),
                    device.event("call", officer="off-0042", action="next"))
        stranger.send(rating(stranger, 3, "off-0042"))
    finally:
        device.close()
        stranger.close()


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    root = tmp_path_factory.mktemp("contract")
    broker = Mosquitto(root / "mosquitto").start()
    cfg = config(root / "hailong.db", broker.port, free_port())
    store = Store.open(cfg.store.url)
    auth = Auth.from_config(cfg)
    ingest = Ingest(store, IngestSettings(host=broker.host, port=broker.port, batch_wait_ms=5)).start()
    server = None
    try:
        assert ingest.connected.wait(10)
        seed(store, broker)
        app = create_app(store=store, ingest=ingest, auth=auth, cfg=cfg, clock=NOW.timestamp)
        server = ApiServer(app, cfg.http.host, 0).start()  # port 0: no race for a "free" port
        yield server.url, auth.create_token("admin", "contract-admin")
    finally:
        if server is not None:
            server.stop()
        ingest.stop()
        auth.close()
        store.close()
        broker.stop()


def config(db, mqtt_port: int = 1883, http_port: int = 8080):
    return config_from_dict({"mqtt": {"embedded": False, "host": "127.0.0.1", "port": mqtt_port},
                             "store": {"url": f"sqlite:///{db}"}, "http": {"port": http_port}})


def document() -> dict:
    """The OpenAPI document as create_app builds it; it depends on the code, not on the service's state."""
    return create_app(store=None, ingest=None, auth=None, cfg=config("unused.db")).openapi()


schema = schemathesis.openapi.from_dict(document())
# The token is sent by the test (an admin's, so every route is reachable): left to Schemathesis,
# the Authorization header would be generated, and removed in negative cases that the test's own
# header then repairs, so a request it calls invalid would arrive valid.
schema.config.generation.update(with_security_parameters=False)
DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


@schema.hook
def map_query(context, query):
    """Keep `from` on or before `to`, as the document's description asks (JSON Schema cannot say it).

    A reversed period stays a 422 on purpose (tested in test_broker_api); only valid days are
    put in order, so invalid values still reach the service as generated.
    """
    if query and DAY.fullmatch(str(query.get("from"))) and DAY.fullmatch(str(query.get("to"))):
        if query["from"] > query["to"]:
            query["from"], query["to"] = query["to"], query["from"]
    return query


@schema.hook
def map_body(context, body):
    """Opening hours: keep each valid range ending after it starts and a day's ranges apart, as the
    document's description asks (JSON Schema cannot say it); invalid values still reach the service."""
    weekly = body.get("weekly") if isinstance(body, dict) else None
    if isinstance(weekly, dict):
        for day, ranges in weekly.items():
            if isinstance(ranges, list) and all(isinstance(r, str) and re.fullmatch(RANGE_PATTERN, r) for r in ranges):
                weekly[day] = _apart(ranges)
    return body


def _apart(ranges: list[str]) -> list[str]:
    spans = sorted(tuple(sorted(r.split("-"))) for r in ranges)
    kept: list[tuple[str, str]] = []
    for start, end in spans:
        if start < end and (not kept or start >= kept[-1][1]):
            kept.append((start, end))
    return [f"{a}-{b}" for a, b in kept]


@schema.parametrize()
# derandomize: the same examples on every run, so it passes (or fails) on any day; no database
# of past failures in the work tree. too_slow is suppressed because each example is a real HTTP
# round trip to a real service writing a real SQLite file: slow by design, not by a bad strategy.
@settings(max_examples=100, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
def test_the_api_keeps_its_own_contract(case, live):
    """No 5xx, only declared statuses, answers as declared, invalid requests refused, valid ones accepted."""
    url, token = live
    case.call_and_validate(base_url=url, headers={"Authorization": f"Bearer {token}"}, checks=CHECKS)


def test_the_service_serves_the_document_under_test(live):
    url, _ = live
    assert httpx.get(f"{url}/api/v1/openapi.json").json() == document()


def operations(doc: dict):
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            yield f"{method.upper()} {path}", op


def test_every_error_is_declared_with_the_body_it_has():
    doc = document()
    assert "HTTPValidationError" not in doc["components"]["schemas"]  # FastAPI's list-shaped 422, never sent
    bodies = {"#/components/schemas/ApiError", "#/components/schemas/NotSent", "#/components/schemas/Health"}
    for name, op in operations(doc):
        declared = op["responses"]
        for status, answer in declared.items():
            if int(status) >= 400:
                assert answer["content"]["application/json"]["schema"]["$ref"] in bodies, (name, status)
        assert ("401" in declared) == ("security" in op), name
        if op.get("parameters") or "requestBody" in op:
            assert "422" in declared, name
        assert ("400" in declared) == ("requestBody" in op), name


def test_the_role_a_route_needs_decides_whether_it_declares_403():
    doc = dict(operations(document()))
    for name in ("GET /api/v1/sites", "GET /api/v1/events", "GET /api/v1/devices"):
        assert "401" in doc[name]["responses"] and "403" not in doc[name]["responses"], name  # any role will do
    # ... unless it covers every site: then a caller limited to some sites is refused too
    for name in ("POST /api/v1/sites", "GET /api/v1/dead-letters", "POST /api/v1/assignments",
                 "PUT /api/v1/devices/{device_id}", "GET /metrics"):
        assert {"401", "403"} <= set(doc[name]["responses"]), name
    assert not {"401", "403", "422"} & set(doc["GET /healthz"]["responses"])
