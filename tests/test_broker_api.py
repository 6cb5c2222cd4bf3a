"""The HTTP API end to end: real uvicorn, real Mosquitto, real store file, real ingest, httpx as the client."""
from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import paho.mqtt.client as mqtt
import pytest

from broker.api import ApiServer, ApiServerError, add_principal_resolver, create_app
from broker.auth import ROLES, Auth, Principal
from broker.config import config_from_dict
from broker.ingest import Ingest, IngestSettings
from broker.store import Store
from broker.store.batch import Incoming
from protocol.codec import encode
from protocol.events import make_event
from tests.mosquitto import free_port
from tests.support import ROOT, Waiter

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
# The service's clock in these tests, and the time the counters stamp their events from: a fixed
# moment, so no test depends on the day it runs (or fails when midnight passes during the run).
NOW = datetime(2026, 11, 18, 10, 30, tzinfo=TZ)
TODAY = NOW.date()
WIDE = {"from": (TODAY - timedelta(days=1)).isoformat(), "to": (TODAY + timedelta(days=1)).isoformat()}


def now_ms() -> int:
    return int(NOW.timestamp() * 1000)


def eventually(probe, timeout: float = 15.0, what: str = "condition"):
    """Poll `probe` until it returns something truthy; the pause is an Event wait with a deadline."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        pause.wait(0.05)


@dataclass
class Service:
    store: Store
    ingest: Ingest
    auth: Auth
    server: ApiServer
    app: object
    tokens: dict[str, str]

    def client(self, role: str | None = "admin", token: str | None = None) -> httpx.Client:
        headers = {}
        if token or role:
            headers["Authorization"] = f"Bearer {token or self.tokens[role]}"
        return httpx.Client(base_url=self.server.url, headers=headers, timeout=10)


@pytest.fixture
def service(tmp_path, mosquitto):
    db = tmp_path / "service" / "hailong.db"
    cfg = config_from_dict({"mqtt": {"embedded": False, "host": mosquitto.host, "port": mosquitto.port},
                            "store": {"url": f"sqlite:///{db}"}, "http": {"port": free_port()}})
    store = Store.open(cfg.store.url)
    auth = Auth.from_config(cfg)
    ingest = Ingest(store, IngestSettings(host=mosquitto.host, port=mosquitto.port, batch_wait_ms=5)).start()
    assert ingest.connected.wait(10)
    app = create_app(store=store, ingest=ingest, auth=auth, cfg=cfg, clock=NOW.timestamp)
    server = ApiServer(app, cfg.http.host, 0).start()  # port 0: no race for a "free" port
    tokens = {role: auth.create_token(role, f"test-{role}") for role in ROLES}
    try:
        yield Service(store, ingest, auth, server, app, tokens)
    finally:
        server.stop()
        ingest.stop()
        auth.close()
        store.close()


class Counter:
    """A counter device as MQTT sees it: publishes events, collects acks, commands and assignments."""

    def __init__(self, broker, device: str, site: str = "s1", counter: str = "1", *, subscribe: bool = True,
                 t0: int | None = None):
        self.device, self.site, self.counter = device, site, counter
        self.seq = 0
        self.sent: dict[int, dict] = {}
        # Distinct, ordered times after t0 (ms; default a second before NOW): one ms per seq.
        self.t0 = now_ms() - 1000 if t0 is None else t0
        self.acks, self.cmds, self.assignments = Waiter(), Waiter(), Waiter()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=device, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        if subscribe:
            base = f"hailong/v1/{device}"
            self.client.subscribe([(f"{base}/ack", 1), (f"{base}/cmd", 1), (f"{base}/assignment", 1)])
            assert subscribed.wait(10)

    def _on_message(self, client, userdata, msg):
        kind = msg.topic.rsplit("/", 1)[1]
        waiter = {"ack": self.acks, "cmd": self.cmds, "assignment": self.assignments}[kind]
        waiter.append((bytes(msg.payload), bool(msg.retain)))

    def event(self, type_: str = "rating", *, ts: int | None = None, officer: str | None = None, **fields) -> dict:
        self.seq += 1
        return make_event(type_, device=self.device, site=self.site, counter=self.counter, ledger="0123456789abcdef",
                          seq=self.seq, ts=ts or self.t0 + self.seq, clock_ok=True, boot="boot-1", mono=float(self.seq),
                          officer=officer, ticket=None, **fields)

    def publish(self, payload: dict | bytes) -> None:
        if isinstance(payload, dict):
            self.sent[payload["seq"]] = payload
        data = payload if isinstance(payload, bytes) else encode(payload)
        self.client.publish(f"hailong/v1/{self.device}/event", data, qos=1).wait_for_publish(5)

    def send(self, *events: dict) -> None:
        """Publish events and wait until the service acks (commits) every one of them."""
        for ev in events:
            self.publish(ev)
        want = {ev["seq"] for ev in events}
        self.acks.wait_for(lambda items: want <= {s for p, _ in items for s in json.loads(p)["seqs"]},
                           what=f"acks of {sorted(want)}")

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def counters(mosquitto):
    made = []

    def make(device, **kw):
        made.append(Counter(mosquitto, device, **kw))
        return made[-1]

    yield make
    for c in made:
        c.close()


def register(store: Store, *bindings: tuple[str, str, str]) -> None:
    """Register (device, site, counter)s: only known devices' events count."""
    for device, site, counter in bindings:
        store.register_device(device, site, counter)


def rating(counter: Counter, score: int, officer: str, **kw) -> dict:
    return counter.event("rating", officer=officer, score=score, scale=4, **kw)


def seed(service, counters) -> tuple[Counter, Counter]:
    """Officer o1 at s1/1: counted 4, 4, 3, 1 and a flagged 2; officer o2 at s1/2: 2, 1; one NEXT call."""
    register(service.store, ("dev-1", "s1", "1"), ("dev-2", "s1", "2"))
    c1, c2 = counters("dev-1"), counters("dev-2", counter="2")
    c1.send(*(rating(c1, s, "o1") for s in (4, 4, 3, 1)), rating(c1, 2, "o1", flags=["repeat"]))
    c2.send(rating(c2, 2, "o2"), rating(c2, 1, "o2"), c2.event("call", officer="o2", action="next"))
    return c1, c2


# ----- auth ------------------------------------------------------------------------------------


def test_every_api_route_needs_a_valid_token_and_enough_role(service):
    anon = service.client(role=None)
    for path in ("/api/v1/devices", "/api/v1/sites", "/metrics",
                 "/api/v1/satisfaction?group=site&from=2024-01-01&to=2024-01-02"):
        r = anon.get(path)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", path
        assert r.json() == {"detail": "missing bearer token"}
    wrong = service.client(token="hl_" + "A" * 43).get("/api/v1/devices")
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
    assert wrong.json() == {"detail": "invalid or revoked token"}
    basic = anon.get("/api/v1/devices", headers={"Authorization": "Basic YWRtaW46YWRtaW4="})
    assert basic.status_code == 401 and "Bearer" in basic.json()["detail"]

    viewer, manager = service.client("viewer"), service.client("manager")
    assert viewer.get("/api/v1/devices").status_code == 200
    r = viewer.post("/api/v1/sites", json={"id": "s9"})
    assert r.status_code == 403
    assert r.json() == {"detail": "this needs the admin role or higher; 'test-viewer' is viewer"}
    assert manager.post("/api/v1/sites", json={"id": "s9"}).status_code == 403
    assert viewer.get("/api/v1/dead-letters").status_code == 403
    assert manager.get("/api/v1/dead-letters").status_code == 200
    assert viewer.post("/api/v1/devices/dev-1/identify", json={"seconds": 5}).status_code == 403

    # Revoked while the service runs: refused at once.
    service.auth.revoke_token("test-viewer")
    assert viewer.get("/api/v1/devices").status_code == 401


def test_a_session_resolver_can_authenticate_requests_without_a_token(service):
    # The seam the dashboard will use: a cookie resolves to a principal, with the same role checks.
    add_principal_resolver(service.app, lambda req: Principal("lan", "viewer", "session")
                           if req.cookies.get("hl_session") == "ok" else None)
    cookie = service.client(role=None)
    cookie.cookies.set("hl_session", "ok")
    assert cookie.get("/api/v1/devices").status_code == 200
    assert cookie.post("/api/v1/sites", json={"id": "s9"}).status_code == 403
    assert service.client(role=None).get("/api/v1/devices").status_code == 401


def test_openapi_and_docs_are_served(service):
    anon = service.client(role=None)
    spec = anon.get("/api/v1/openapi.json").json()
    assert {"/api/v1/satisfaction", "/api/v1/events", "/api/v1/assignments", "/healthz", "/metrics"} \
        <= set(spec["paths"])
    assert "HTTPBearer" in spec["components"]["securitySchemes"]
    assert anon.get("/api/v1/docs").status_code == 200


# ----- figures ---------------------------------------------------------------------------------


def test_satisfaction_from_real_events(service, counters):
    seed(service, counters)
    api = service.client("viewer")
    r = api.get("/api/v1/satisfaction", params={"group": "officer", **WIDE})
    assert r.status_code == 200
    body = r.json()
    assert body == service.store.satisfaction("officer", WIDE["from"], WIDE["to"])
    assert (body["scale"], body["group"], body["from"], body["to"]) == (4, "officer", WIDE["from"], WIDE["to"])
    o1, o2 = body["rows"]  # ranked best first
    # o1: 4, 4, 3, 1 counted (2 flagged aside). Satisfied = top two levels = 3 of 4.
    # mean 12/4 = 3.0; index = mean of (s-1)/3 = (1 + 1 + 2/3 + 0)/4 = 66.7 %;
    # Wilson lower bound of 3/4 at z = 1.96: (0.75 + z²/8 - z·sqrt(0.75·0.25/4 + z²/64)) / (1 + z²/4) = 0.3006.
    assert o1 == {**o1, "key": "o1", "ratings": 4, "counts": {"1": 1, "2": 0, "3": 1, "4": 2}, "satisfied": 3,
                  "rate": 0.75, "mean": 3.0, "index": 66.7, "wilson_lower": 0.3006, "flagged": 1}
    # o2: 2, 1: nobody satisfied; mean 1.5; index (1/3 + 0)/2 = 16.7 %; one NEXT served.
    assert o2 == {**o2, "key": "o2", "ratings": 2, "counts": {"1": 1, "2": 1, "3": 0, "4": 0}, "satisfied": 0,
                  "rate": 0.0, "mean": 1.5, "index": 16.7, "wilson_lower": 0.0, "flagged": 0, "served": 1}

    site = api.get("/api/v1/satisfaction", params={"group": "site", "site": "s1", **WIDE}).json()["rows"]
    assert [(r["key"], r["ratings"], r["satisfied"], r["rate"]) for r in site] == [("s1", 6, 3, 0.5)]
    counter = api.get("/api/v1/satisfaction", params={"group": "counter", **WIDE}).json()["rows"]
    assert [r["key"] for r in counter] == ["s1/1", "s1/2"]
    # `to` is inclusive: a period of just today has them all, yesterday has none.
    today = api.get("/api/v1/satisfaction", params={"group": "site", "from": TODAY.isoformat(),
                                                   "to": TODAY.isoformat()}).json()
    assert today["rows"][0]["ratings"] == 6
    yesterday = (TODAY - timedelta(days=1)).isoformat()
    r = api.get("/api/v1/satisfaction", params={"group": "site", "from": yesterday, "to": yesterday})
    assert r.json()["rows"] == []


def test_satisfaction_rejects_bad_periods_and_groups_clearly(service):
    api = service.client("viewer")
    cases = [
        ({"group": "officer", "from": "2024-02-01", "to": "2024-01-01"}, "from (2024-02-01) is after to (2024-01-01)"),
        ({"group": "officer", "from": "2024-02-30", "to": "2024-03-01"},
         "from: expected a date YYYY-MM-DD, got '2024-02-30'"),
        ({"group": "officer", "from": "1700000000", "to": "2024-03-01"}, "from: expected a date YYYY-MM-DD"),
        ({"group": "team", "from": "2024-01-01", "to": "2024-01-02"},
         "group: Input should be 'officer', 'counter' or 'site'"),
        ({"group": "site", "to": "2024-01-02"}, "from: Field required"),
    ]
    for params, message in cases:
        r = api.get("/api/v1/satisfaction", params=params)
        assert r.status_code == 422 and isinstance(r.json()["detail"], str), r.text
        assert r.json()["detail"].startswith(message), r.json()


def test_periods_at_the_calendars_ends_are_answered(service):
    # Found by the contract test: a period next to year 1 or 9999 was a 500 (the month beyond overflowed).
    api = service.client("viewer")
    for first, last in (("0001-01-01", "0001-01-02"), ("9999-12-02", "9999-12-31"), ("0001-01-01", "9999-12-31")):
        r = api.get("/api/v1/satisfaction", params={"group": "site", "from": first, "to": last})
        assert r.status_code == 200 and r.json()["rows"] == [], r.text
    for params in ({"until": "9999-12-31"}, {"since": "0001-01-01"}, {"since": "0001-01-01T00:00:00+14:00"},
                   {"until": "9999-12-31T23:59:59.999999-14:00"}, {"since": "2024-01-01t00:00:00z"}):
        r = api.get("/api/v1/events", params=params)
        assert r.status_code == 200, (params, r.text)
    assert api.get("/api/v1/reports/satisfaction.csv", params={"group": "officer", "month": "9999-12"}) \
        .status_code == 200


def test_a_body_that_is_not_utf8_is_a_declared_400(service):
    r = service.client("admin").post("/api/v1/sites", content=b'{"id": "\xff"}',
                                     headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json() == {"detail": "There was an error parsing the body"}


def test_events_are_paged_and_filtered(service, counters):
    seed(service, counters)
    api = service.client("viewer")
    seen, after, pages = [], None, 0
    while True:
        r = api.get("/api/v1/events", params={"limit": 3, **({"after": after} if after is not None else {})})
        assert r.status_code == 200
        page = r.json()
        seen += page["items"]
        pages += 1
        after = page["next"]
        if after is None:
            break
        assert after == page["items"][-1]["id"]
    assert pages == 3 and len(seen) == 8
    assert [(e["device"], e["seq"]) for e in seen] == \
        [("dev-1", s) for s in range(1, 6)] + [("dev-2", s) for s in range(1, 4)]
    assert seen[0]["event"]["score"] == 4 and seen[0]["officer"] == "o1"

    def ids(**params):
        return [(e["device"], e["seq"]) for e in api.get("/api/v1/events", params=params).json()["items"]]

    assert ids(device="dev-2") == [("dev-2", 1), ("dev-2", 2), ("dev-2", 3)]
    assert ids(type="call") == [("dev-2", 3)]
    assert ids(officer="o1", counter="1", site="s1") == [("dev-1", s) for s in range(1, 6)]
    assert ids(since=TODAY.isoformat(), until=TODAY.isoformat()) == ids()  # a day as `until` includes it
    assert ids(until=TODAY.isoformat(), since=(TODAY - timedelta(days=3)).isoformat()) == ids()
    assert ids(until=(TODAY - timedelta(days=1)).isoformat()) == []
    third = seen[2]["ts"]
    assert ids(device="dev-1", since=str(third), until=str(third + 1)) == [("dev-1", 3)]  # ms: until exclusive
    for params, message in (({"limit": 1001}, "limit: Input should be less than or equal to 1000"),
                            ({"since": "yesterday"}, "since: expected ms since epoch"),
                            ({"type": "press"}, "type: Input should be")):
        r = api.get("/api/v1/events", params=params)
        assert r.status_code == 422 and r.json()["detail"].startswith(message), r.text


@pytest.mark.parametrize("huge", [2**53, 2**63, 10**30])
def test_integers_beyond_the_stores_range_are_a_422_not_a_500(service, huge):
    # SQLite holds ±2^63-1; the API takes at most 2^53-1 (every JSON reader's exact range).
    admin = service.client("admin")
    cases = [("GET", "/api/v1/dead-letters", {"params": {"offset": huge}}, "offset: "),
             ("GET", "/api/v1/events", {"params": {"after": huge}}, "after: "),
             ("GET", "/api/v1/events", {"params": {"since": huge}}, "since: expected ms since epoch"),
             ("GET", "/api/v1/events", {"params": {"until": huge}}, "until: expected ms since epoch"),
             ("POST", "/api/v1/assignments", {"json": {"site": "s1", "counter": "1", "officer": None, "at": huge}},
              "at: ")]
    for method, path, kw, message in cases:
        r = admin.request(method, path, **kw)
        assert r.status_code == 422 and r.json()["detail"].startswith(message), (path, kw, r.text)
    assert admin.get("/api/v1/dead-letters", params={"offset": 2**53 - 1}).json()["items"] == []
    assert admin.get("/api/v1/events", params={"after": 2**53 - 1, "since": 10**15 - 1}).json()["items"] == []


def test_metrics_count_what_was_ingested(service, counters):
    c1, _ = seed(service, counters)
    c1.send(c1.sent[1])  # a resend of seq 1, as after a lost ack: a duplicate, acked again
    c1.client.publish("hailong/v1/dev-1/status", encode({"online": True, "fw": "1.0", "ledger": "0123456789abcdef",
                                                         "ts": now_ms()}), qos=1, retain=True).wait_for_publish(5)
    eventually(lambda: service.ingest.metrics.online.get("dev-1"), what="dev-1 online")
    r = service.client("viewer").get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = {line.split()[0]: float(line.split()[1]) for line in r.text.splitlines() if not line.startswith("#")}
    assert samples == {
        "hailong_events_ingested_total": 8, "hailong_events_duplicated_total": 1,
        "hailong_events_rejected_total": 0, "hailong_ingest_batches_total": service.ingest.metrics.batches,
        "hailong_ingest_lag_seconds": service.ingest.metrics.last_lag_ms / 1000, "hailong_tickets_issued_total": 0,
        "hailong_devices_online": 1, "hailong_dead_letters": 0, "hailong_dead_letters_dropped_total": 0,
        "hailong_events_conflicts_total": 0, "hailong_events_held": 0,
        "hailong_mqtt_brokers": 1, "hailong_mqtt_brokers_connected": 1,
        "hailong_alerts_open": 0, "hailong_alert_notices_pending": 0,
    }
    assert samples["hailong_ingest_batches_total"] >= 2
    for name, kind in (("hailong_events_ingested_total", "counter"), ("hailong_ingest_lag_seconds", "gauge"),
                       ("hailong_devices_online", "gauge"), ("hailong_dead_letters", "gauge"),
                       ("hailong_events_held", "gauge"), ("hailong_dead_letters_dropped_total", "counter")):
        assert f"# TYPE {name} {kind}" in r.text and f"# HELP {name} " in r.text
    devices = {d["device"]: d for d in service.client("viewer").get("/api/v1/devices").json()["items"]}
    assert devices["dev-1"]["online"] is True and devices["dev-2"]["site"] == "s1"


def test_metrics_show_the_stores_held_conflicting_and_dropped_totals(service, counters, monkeypatch):
    import broker.store.deadletters as deadletters

    monkeypatch.setattr(deadletters, "MAX_ROWS", 1)  # the table keeps one: a second dead letter drops the first
    register(service.store, ("dev-1", "s1", "1"))
    c1, stranger = counters("dev-1"), counters("dev-9", counter="9")
    c1.send(rating(c1, 4, "o1"))
    c1.send(c1.sent[1] | {"score": 1})  # the same event, another body: a conflict, dead-lettered
    stranger.send(rating(stranger, 4, "o9"), rating(stranger, 3, "o9"))  # unregistered: held, not counted
    c1.publish(b"{not json")
    c1.send(rating(c1, 3, "o1"))  # acked after the garbage before it was handled
    text = service.client("viewer").get("/metrics").text
    assert "hailong_events_conflicts_total 1\n" in text and "hailong_events_held 2\n" in text
    assert "hailong_dead_letters 1\n" in text and "hailong_dead_letters_dropped_total 1\n" in text


@pytest.mark.skipif(shutil.which("promtool") is None,
                    reason="promtool not installed (Debian package `prometheus`; `make system-deps` installs it)")
def test_metrics_pass_promtool(service, counters):
    seed(service, counters)  # non-zero values, as a scrape would see them
    text = service.client("viewer").get("/metrics").text
    check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    # promtool names each finding (e.g. an abbreviated unit) and exits non-zero when there is one.
    assert check.returncode == 0, check.stdout + check.stderr


def test_garbage_is_dead_lettered_and_shown_to_managers(service, counters):
    c1 = counters("dev-1")
    c1.publish(b"{not json")
    bad = rating(c1, 3, "o1") | {"score": 9}
    c1.publish(json.dumps(bad).encode())
    # Messages are handled in order, so once this later one is acked both before it are committed.
    c1.send(rating(c1, 3, "o1"))
    letters = service.client("manager").get("/api/v1/dead-letters").json()["items"]
    assert [(d["device"], d["seq"]) for d in letters] == [("dev-1", 1), ("dev-1", None)]  # newest first
    assert "score" in letters[0]["reason"] and letters[1]["payload"] == "{not json"
    page = service.client("manager").get("/api/v1/dead-letters", params={"limit": 1, "offset": 1}).json()
    assert [d["payload"] for d in page["items"]] == ["{not json"]
    text = service.client("viewer").get("/metrics").text
    assert "hailong_dead_letters 2\n" in text and "hailong_events_rejected_total 2\n" in text


# ----- registry ---------------------------------------------------------------------------------


def test_sites_counters_officers_round_trip(service):
    admin, viewer = service.client("admin"), service.client("viewer")
    r = admin.post("/api/v1/sites", json={"id": "kien-thuy", "name": "UBND huyện Kiến Thụy"})
    assert r.status_code == 201 and r.json() == {"id": "kien-thuy", "name": "UBND huyện Kiến Thụy",
                                                "tz": "Asia/Ho_Chi_Minh"}
    assert admin.post("/api/v1/sites", json={"id": "kien-thuy"}).status_code == 409
    assert admin.put("/api/v1/sites/kien-thuy", json={"name": "Kiến Thụy", "tz": "Asia/Bangkok"}).json()["tz"] == \
        "Asia/Bangkok"
    r = admin.put("/api/v1/sites/kien-thuy", json={"tz": "Mars/Olympus"})
    assert r.status_code == 422 and "Mars/Olympus" in r.json()["detail"]
    assert viewer.get("/api/v1/sites").json()["items"] == [
        {"id": "kien-thuy", "name": "Kiến Thụy", "tz": "Asia/Bangkok"}]

    assert admin.post("/api/v1/counters", json={"site": "nowhere", "counter": "1"}).status_code == 404
    r = admin.post("/api/v1/counters", json={"site": "kien-thuy", "counter": "3", "name": "Quầy 3"})
    assert r.status_code == 201
    assert r.json() == {"site": "kien-thuy", "counter": "3", "name": "Quầy 3", "device": None, "queues": []}
    r = admin.put("/api/v1/counters/kien-thuy/3", json={"name": "Quầy 3", "device": "dev-3"})
    assert r.json()["device"] == "dev-3"
    assert viewer.get("/api/v1/counters", params={"site": "kien-thuy"}).json()["items"] == [
        {"site": "kien-thuy", "counter": "3", "name": "Quầy 3", "device": "dev-3", "queues": []}]
    assert viewer.get("/api/v1/counters/kien-thuy/3").json()["device"] == "dev-3"
    r = admin.delete("/api/v1/sites/kien-thuy")
    assert r.status_code == 409 and "counter" in r.json()["detail"]

    officer = {"id": "off-0042", "name": "Nguyễn Thị Lan", "code": "NTL", "unit": "Tư pháp", "badge": "04a1b2c3"}
    for field, value in (("id", ""), ("code", "TOOLONGXX"), ("code", ""), ("name", "x" * 101), ("badge", "xyz")):
        r = admin.post("/api/v1/officers", json=officer | {field: value})
        assert r.status_code == 422 and r.json()["detail"].startswith(f"{field}: "), r.text
    r = admin.post("/api/v1/officers", json=officer)
    assert r.status_code == 201 and r.json() == officer | {"badge": "04A1B2C3"}
    r = admin.put("/api/v1/officers/off-0042", json={"name": "Nguyễn Thị Lan", "code": "LAN"})
    assert r.json()["code"] == "LAN" and r.json()["badge"] == "04A1B2C3"
    assert [o["id"] for o in viewer.get("/api/v1/officers").json()["items"]] == ["off-0042"]
    assert viewer.get("/api/v1/officers/off-0042").json()["unit"] == ""

    assert admin.delete("/api/v1/officers/off-0042").status_code == 204
    assert viewer.get("/api/v1/officers/off-0042").status_code == 404
    assert admin.delete("/api/v1/counters/kien-thuy/3").status_code == 204
    assert viewer.get("/api/v1/counters/kien-thuy/3").json() == {"detail": "no such counter kien-thuy/3"}
    assert admin.delete("/api/v1/sites/kien-thuy").status_code == 204
    assert admin.delete("/api/v1/sites/kien-thuy").status_code == 404
    assert viewer.get("/api/v1/sites").json()["items"] == []


@pytest.mark.parametrize("bad, shown", [("\x01", "U+0001"), ("\n", "U+000A"), ("\x85", "U+0085"),
                                        ("\u2028", "U+2028"), ("\x7f", "U+007F")])
def test_names_with_control_characters_are_refused_clearly(service, bad, shown):
    admin = service.client("admin")
    admin.post("/api/v1/sites", json={"id": "s1", "name": "Kiến Thụy"})
    officer = {"id": "off-1", "name": "Nguyễn Thị Lan", "code": "NTL", "unit": "Tư pháp"}
    cases = [("POST", "/api/v1/sites", {"id": "s2", "name": f"UBND{bad}"}, "name"),
             ("PUT", "/api/v1/sites/s1", {"name": f"{bad}UBND"}, "name"),
             ("POST", "/api/v1/counters", {"site": "s1", "counter": "1", "name": f"Quầy{bad}1"}, "name"),
             ("PUT", "/api/v1/counters/s1/1", {"name": f"Quầy 1{bad}"}, "name"),
             ("POST", "/api/v1/officers", officer | {"id": f"off{bad}1"}, "id"),
             ("POST", "/api/v1/officers", officer | {"name": f"Lan{bad}"}, "name"),
             ("POST", "/api/v1/officers", officer | {"code": f"N{bad}"}, "code"),
             ("POST", "/api/v1/officers", officer | {"unit": f"Tư{bad}pháp"}, "unit"),
             ("PUT", "/api/v1/officers/off-1", officer | {"name": f"Lan{bad}"}, "name"),
             ("POST", "/api/v1/assignments", {"site": "s1", "counter": "1", "officer": f"o{bad}"}, "officer"),
             ("POST", "/api/v1/assignments", {"site": f"s{bad}", "counter": "1", "officer": None}, "site"),
             ("PUT", "/api/v1/devices/dev-1", {"site": "s1", "counter": f"1{bad}"}, "counter"),
             ("POST", "/api/v1/devices/dev-1/display", {"ticket": f"A{bad}12"}, "ticket")]
    for method, path, body, field in cases:
        r = admin.request(method, path, json=body)
        assert r.status_code == 422, (path, body, r.text)
        assert r.json()["detail"].startswith(f"{field}: must not contain a control character (found {shown} at "), \
            r.text
    assert service.store.officers() == [] and service.store.counters() == []
    assert [s["name"] for s in service.store.sites()] == ["Kiến Thụy"]


def test_names_are_bounded_and_a_lone_surrogate_is_refused(service):
    admin = service.client("admin")
    r = admin.post("/api/v1/sites", content=b'{"id": "s1", "name": "a\\ud800b"}',
                   headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and r.json()["detail"].startswith("name: "), r.text  # pydantic's own check
    for body, message in (({"id": "s1", "name": "x" * 101}, "name: String should have at most 100 characters"),
                          ({"id": "s1", "tz": "Mars/Olympus"}, "tz: unknown time zone 'Mars/Olympus'")):
        r = admin.post("/api/v1/sites", json=body)
        assert r.status_code == 422 and r.json()["detail"].startswith(message), r.text
    officer = {"name": "Lan", "code": "L"}
    for officer_id in ("a/b", ".", ".."):  # no URL could name it afterwards
        r = admin.post("/api/v1/officers", json=officer | {"id": officer_id})
        assert r.status_code == 422 and "must not contain '/' nor be '.' or '..'" in r.json()["detail"], r.text
    assert admin.post("/api/v1/officers", json=officer | {"id": "...a"}).status_code == 201


def test_an_event_stored_before_the_text_rule_still_lists_and_exports(service, monkeypatch):
    import protocol.codec

    register(service.store, ("dev-1", "s1", "1"))
    officer = "off\x01\u2028\x1b[31m"
    with monkeypatch.context() as old_rules:  # as the wire accepted it before control characters were refused
        old_rules.setattr(protocol.codec, "forbidden_char", lambda text: None)
        ev = make_event("rating", device="dev-1", site="s1", counter="1", ledger="0123456789abcdef", seq=1,
                        ts=now_ms(), clock_ok=True, boot="b", mono=1.0, officer=officer, score=4, scale=4)
        [stored] = service.store.ingest([Incoming("dev-1", encode(ev), now_ms())])
    assert stored.status == "stored"
    api = service.client("viewer")
    assert [e["officer"] for e in api.get("/api/v1/events").json()["items"]] == [officer]
    rows = api.get("/api/v1/satisfaction", params={"group": "officer", **WIDE}).json()["rows"]
    assert [r["key"] for r in rows] == [officer]
    month = TODAY.strftime("%Y-%m")
    for ext in ("xlsx", "csv"):
        r = api.get(f"/api/v1/reports/satisfaction.{ext}", params={"group": "officer", "month": month})
        assert r.status_code == 200 and len(r.content) > 100, r.text


# ----- talking to counters --------------------------------------------------------------------------


def test_assignment_is_recorded_and_published_retained(service, counters, mosquitto):
    admin, manager = service.client("admin"), service.client("manager")
    admin.post("/api/v1/sites", json={"id": "s1"})
    admin.post("/api/v1/officers", json={"id": "off-0042", "name": "Nguyễn Thị Lan", "code": "NTL"})

    # No device at the counter yet: recorded, not sent, and the answer says so.
    at = now_ms() - 60_000
    r = manager.post("/api/v1/assignments", json={"site": "s1", "counter": "1", "officer": "off-0042", "at": at})
    assert r.status_code == 409 and r.json()["recorded"] is True and r.json()["published"] is False
    assert "no device" in r.json()["detail"]
    assert service.store.assignment_at("s1", "1", at) == "off-0042"

    admin.put("/api/v1/counters/s1/1", json={"device": "dev-1"})
    dev = counters("dev-1")
    r = manager.post("/api/v1/assignments", json={"site": "s1", "counter": "1", "officer": "off-0042"})
    assert r.status_code == 200 and r.json()["device"] == "dev-1" and r.json()["published"] is True
    expected = encode({"officer": {"id": "off-0042", "name": "Nguyễn Thị Lan", "code": "NTL"}})
    payload, _ = dev.assignments.wait_for(lambda items: items and items[-1], what="assignment")
    assert payload == expected
    # Retained: a device connecting later gets it at once.
    late = counters("dev-1-late", subscribe=False)
    late.client.subscribe("hailong/v1/dev-1/assignment", qos=1)
    late.client.on_message = lambda c, u, m: late.assignments.append((bytes(m.payload), bool(m.retain)))
    assert late.assignments.wait_for(lambda items: items and items[-1]) == (expected, True)

    r = manager.post("/api/v1/assignments", json={"site": "s1", "counter": "1", "officer": None})
    assert r.status_code == 200
    assert dev.assignments.wait_for(lambda items: len(items) == 2 and items[-1])[0] == b'{"officer":null}'

    r = manager.post("/api/v1/assignments", json={"site": "s1", "counter": "1", "officer": "nobody"})
    assert r.status_code == 404 and "nobody" in r.json()["detail"]
    assert service.client("viewer").post("/api/v1/assignments", json={"site": "s1", "counter": "1",
                                                                      "officer": None}).status_code == 403


def test_display_and_identify_publish_the_exact_command(service, counters):
    service.client("admin").put("/api/v1/devices/dev-1", json={"site": "s1", "counter": "1"})
    dev = counters("dev-1")
    manager = service.client("manager")
    r = manager.post("/api/v1/devices/dev-1/display", json={"ticket": "1042"})
    assert r.status_code == 202 and r.json()["command"] == {"cmd": "display", "ticket": "1042"}
    assert dev.cmds.wait_for(lambda items: items)[0] == (b'{"cmd":"display","ticket":"1042"}', False)
    r = manager.post("/api/v1/devices/dev-1/identify", json={"seconds": 10})
    assert r.status_code == 202
    assert dev.cmds.wait_for(lambda items: len(items) == 2 and items)[1][0] == b'{"cmd":"identify","seconds":10}'

    assert manager.post("/api/v1/devices/dev-9/display", json={"ticket": "1"}).status_code == 404
    for body in ({"ticket": ""}, {"ticket": "x" * 17}, {}):
        r = manager.post("/api/v1/devices/dev-1/display", json=body)
        assert r.status_code == 422 and r.json()["detail"].startswith("ticket: ")
    r = manager.post("/api/v1/devices/dev-1/identify", json={"seconds": 601})
    assert r.status_code == 422 and r.json()["detail"].startswith("seconds: ")


# ----- operations ----------------------------------------------------------------------------------------


def test_healthz_follows_the_ingest_connection(service, mosquitto):
    anon = service.client(role=None)
    r = anon.get("/healthz")
    assert r.status_code == 200 and r.json() == {"ok": True, "ingest": "connected", "store": "ok"}
    mosquitto.stop()
    r = eventually(lambda: (r := anon.get("/healthz")).status_code == 503 and r, what="503 from /healthz")
    assert r.json() == {"ok": False, "ingest": "disconnected", "store": "ok",
                        "detail": "MQTT ingest is disconnected"}
    mosquitto.start()
    assert service.ingest.connected.wait(15)
    assert anon.get("/healthz").status_code == 200


def test_internal_errors_are_json_without_a_traceback(service, monkeypatch):
    def broken():
        raise RuntimeError("secret detail at /var/lib/hailong")

    monkeypatch.setattr(service.store, "devices", broken)
    r = service.client("viewer").get("/api/v1/devices")
    assert r.status_code == 500
    assert r.json() == {"detail": "internal error; the service log has the details"}
    assert service.client("viewer").get("/api/v1/nothing").json() == {"detail": "Not Found"}


def test_a_taken_port_is_a_clear_error(service):
    with pytest.raises(ApiServerError, match="already in use"):
        ApiServer(service.app, "127.0.0.1", service.server.port).start()


def test_broker_run_serves_the_api_and_stops_cleanly(tmp_path, mosquitto):
    port = free_port()
    cfg = tmp_path / "broker.toml"
    cfg.write_text(f'[mqtt]\nembedded = false\nhost = "127.0.0.1"\nport = {mosquitto.port}\n'
                   f'[store]\nurl = "sqlite:///{tmp_path / "hailong.db"}"\n[http]\nport = {port}\n')
    cli = [sys.executable, "-m", "hailong.cli", "broker"]
    token = subprocess.run([*cli, "token", "create", "--role", "viewer", "--config", str(cfg)], cwd=ROOT,
                           capture_output=True, text=True, timeout=60, check=True).stdout.strip()
    proc = subprocess.Popen([*cli, "run", "--config", str(cfg)], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        def healthy():
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
            except httpx.TransportError:
                assert proc.poll() is None, proc.stderr.read()
                return False

        eventually(healthy, timeout=30, what="the service's /healthz")
        r = httpx.get(f"http://127.0.0.1:{port}/api/v1/devices", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200 and r.json() == {"items": []}

        # A second service on the same port fails with a clear message, not a traceback.
        second = subprocess.run([*cli, "run", "--config", str(cfg)], cwd=ROOT, capture_output=True, text=True,
                                timeout=60)
        assert second.returncode == 1 and f"cannot listen on 127.0.0.1:{port}" in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0, proc.stderr.read()


def test_low_rating_reasons_per_officer(service, counters):
    register(service.store, ("dev-1", "s1", "1"))
    c = counters("dev-1")
    c.send(rating(c, 1, "o1", reason="Chờ lâu"), rating(c, 1, "o1", reason="Chờ lâu"),
           rating(c, 2, "o1", reason="Thái độ"), rating(c, 4, "o1"), rating(c, 1, "o2", reason="Khác"))
    api = service.client("viewer")
    r = api.get("/api/v1/reasons", params={"officer": "o1", **WIDE})
    assert r.status_code == 200
    assert r.json() == {"officer": "o1", "items": [{"reason": "Chờ lâu", "count": 2}, {"reason": "Thái độ", "count": 1}]}
    assert service.client(None).get("/api/v1/reasons", params={"officer": "o1", **WIDE}).status_code == 401
