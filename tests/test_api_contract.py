"""The whole HTTP API against its own OpenAPI document, with Schemathesis (property-based).

A real service: real store file, real ingest on a real Mosquitto, uvicorn on a loopback port,
the document fetched from the service itself, and an admin token so every route is reachable.
Every generated request must be answered without a 5xx, with a status the document declares
for that operation, and with a body that matches the declared schema.
"""
from __future__ import annotations

import re

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
import pytest

from broker.api import ApiServer, create_app
from broker.auth import Auth
from broker.config import config_from_dict
from broker.ingest import Ingest, IngestSettings
from broker.store import Store
from tests.mosquitto import Mosquitto, free_port

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance, negative_data_rejection, positive_data_acceptance, ignored_auth]


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    root = tmp_path_factory.mktemp("contract")
    broker = Mosquitto(root / "mosquitto").start()
    cfg = config(root / "hailong.db", broker.port, free_port())
    store = Store.open(cfg.store.url)
    auth = Auth.from_config(cfg)
    ingest = Ingest(store, IngestSettings(host=broker.host, port=broker.port, batch_wait_ms=5)).start()
    assert ingest.connected.wait(10)
    app = create_app(store=store, ingest=ingest, auth=auth, cfg=cfg)
    server = ApiServer(app, cfg.http.host, cfg.http.port).start()
    token = auth.create_token("admin", "contract-admin")
    try:
        yield server.url, token
    finally:
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


@schema.parametrize()
@settings(max_examples=100, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
def test_the_api_keeps_its_own_contract(case, live):
    url, token = live
    case.call_and_validate(base_url=url, headers={"Authorization": f"Bearer {token}"}, checks=CHECKS)
