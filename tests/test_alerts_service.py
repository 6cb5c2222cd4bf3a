"""Issue 14 end to end: the real service (store, ingest, API, alert engine), a real Mosquitto, a counter's
process, a real SMTP server and a webhook receiver.

The service's clock is the real one shifted to a chosen moment (a Wednesday morning, a lunch
break, a closed day), so the suite passes on any day and hour while time still moves.
"""
from __future__ import annotations

import time
from datetime import datetime
from zoneinfo import ZoneInfo

import httpx
import pytest

from broker.alerts.rules import evaluate
from broker.auth import ROLES
from broker.config import config_from_dict
from broker.service import Service
from tests.alert_peers import SmtpSink, WebhookSink
from tests.mosquitto import free_port
from tests.support import DeviceProcess, eventually, write_config
from tests.test_broker_api import Counter, rating

HCM = ZoneInfo("Asia/Ho_Chi_Minh")
# The SMTP server asks for a login over plain text on loopback, which aiosmtpd warns about.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
SITE, COUNTER = "kien-thuy", "3"  # where tests.support.write_config puts dev-1
WEDNESDAY_MORNING = datetime(2026, 11, 18, 10, 0, tzinfo=HCM)
LUNCH = datetime(2026, 11, 18, 12, 0, tzinfo=HCM)
OFFLINE_AFTER_S, CHECK_S = 1.0, 0.2
SECRET = "s3cret-webhook-key"


@pytest.fixture
def webhook():
    sink = WebhookSink(SECRET).start()
    yield sink
    sink.stop()


@pytest.fixture
def smtp():
    sink = SmtpSink("hailong", "mat-khau").start()
    yield sink
    sink.stop()


class Running:
    """One run of the service at a shifted clock, with tokens for its API."""

    def __init__(self, cfg, at: datetime):
        shift = at.timestamp() - time.time()
        self.clock = lambda: time.time() + shift
        self.svc = Service.assemble(cfg, clock=self.clock)
        self.store, self.engine = self.svc.store, self.svc.alerts
        self.svc.api.bind()
        self.svc.ingest.start()
        assert self.svc.ingest.connected.wait(10)
        self.engine.start()
        self.svc.api.start()
        self.tokens = {role: self.svc.auth.create_token(role, f"t-{role}-{time.monotonic_ns()}") for role in ROLES}

    def client(self, role: str = "admin") -> httpx.Client:
        return httpx.Client(base_url=self.svc.api.url, headers={"Authorization": f"Bearer {self.tokens[role]}"},
                            timeout=10)

    def settle(self, rounds: int = 5) -> None:
        """Let the engine check and send a few more times (what has not happened by then is not coming)."""
        checks, end = self.engine.checks + rounds, self.clock() + OFFLINE_AFTER_S + rounds * CHECK_S
        eventually(lambda: self.engine.checks >= checks and self.clock() >= end, what="more checks")
        eventually(lambda: self.store.outbox_pending() == 0 or self.engine.failures, what="the outbox to empty")

    def close(self) -> None:
        self.svc.close()


@pytest.fixture
def start_service(tmp_path, mosquitto, webhook, smtp):
    (tmp_path / "smtp-password").write_text("mat-khau\n")
    cfg = config_from_dict({
        "service": {"data_dir": str(tmp_path / "state")},
        "mqtt": {"embedded": False, "host": mosquitto.host, "port": mosquitto.port},
        "store": {"url": f"sqlite:///{tmp_path / 'hailong.db'}"}, "http": {"port": free_port()},
        "alerts": {"check_interval_s": CHECK_S, "offline_after_s": OFFLINE_AFTER_S, "low_streak": 3,
                   "retry_min_s": 0.2, "retry_max_s": 1.0},
        "email": {"host": "127.0.0.1", "port": smtp.port, "security": "none", "username": "hailong",
                  "password_file": str(tmp_path / "smtp-password"), "to": ["quanly@kienthuy.example.vn"]},
        "webhook": {"url": webhook.url, "secret": SECRET}})
    runs = []

    def start(at: datetime = WEDNESDAY_MORNING) -> Running:
        runs.append(Running(cfg, at))
        run = runs[-1]
        run.store.upsert_site(SITE, "Trung tâm Kiến Thụy", "Asia/Ho_Chi_Minh")
        run.store.register_device("dev-1", SITE, COUNTER)
        return run

    yield start
    for run in runs:
        run.close()


@pytest.fixture
def start_counter(tmp_path, mosquitto):
    procs = []

    def start() -> DeviceProcess:
        procs.append(DeviceProcess(write_config(tmp_path, mosquitto)))
        procs[-1].wait_ready()
        procs[-1].wait("online", lambda v: v[-1] is True)
        return procs[-1]

    yield start
    for p in procs:
        p.close()


def online_is(run: Running, value: bool) -> None:
    eventually(lambda: (run.store.device("dev-1") or {}).get("online") is value, what=f"dev-1 online={value}")


def test_a_counter_killed_during_opening_hours_alerts_once_and_its_return_resolves(start_service, start_counter,
                                                                                   webhook, smtp):
    run = start_service()
    counter = start_counter()
    online_is(run, True)
    killed = time.monotonic()
    counter.kill()
    (post,) = webhook.posts.wait_for(lambda p: webhook.of("alert.opened"), what="the webhook POST")
    # Measured, not asserted: the budget is offline_after_s plus one check interval (and a send poll).
    print(f"\nkill -> webhook POST: {post['at'] - killed:.2f} s (offline_after_s {OFFLINE_AFTER_S}, "
          f"check every {CHECK_S} s)")
    assert post["signed"] and post["body"]["alert"]["rule"] == "offline"
    assert post["body"]["alert"]["subject"] == "dev-1" and post["body"]["alert"]["details"]["counter"] == COUNTER
    assert "Thiết bị mất kết nối trong giờ làm việc" in post["body"]["text"]
    (to, mail), = smtp.mails.wait_for(lambda m: m, what="the e-mail")
    assert to == ["quanly@kienthuy.example.vn"] and "Thiết bị mất kết nối" in mail["Subject"]
    assert "Trung tâm Kiến Thụy" in mail.get_content() and "dev-1" in mail.get_content()
    run.settle()
    assert len(webhook.posts.items) == 1 and len(smtp.mails.items) == 1  # no repeats while it lasts
    (alert,) = run.client("viewer").get("/api/v1/alerts").json()["items"]
    assert (alert["rule"], alert["state"]) == ("offline", "open")

    start_counter()
    webhook.posts.wait_for(lambda p: webhook.of("alert.resolved"), what="the resolve notice")
    smtp.mails.wait_for(lambda m: len(m) == 2, what="the resolve e-mail")
    run.settle()
    assert [p["body"]["event"] for p in webhook.posts.items] == ["alert.opened", "alert.resolved"]
    assert all(p["signed"] for p in webhook.posts.items) and "ĐÃ HẾT" in smtp.subjects()[1]
    assert len({p["delivery"] for p in webhook.posts.items}) == 2
    api = run.client("viewer")
    assert api.get("/api/v1/alerts").json() == {"items": [], "open": 0}
    (done,) = api.get("/api/v1/alerts", params={"state": "all"}).json()["items"]
    assert done["state"] == "resolved" and done["resolved_ms"] >= done["opened_ms"]


def quiet_after_kill(run: Running, start_counter, webhook, smtp, opens: datetime) -> None:
    counter = start_counter()
    online_is(run, True)
    counter.kill()
    online_is(run, False)
    run.settle(rounds=10)
    assert webhook.posts.items == [] and smtp.mails.items == []
    assert run.store.alerts("all") == []
    # The same facts do alert once the site opens: the hours, not a deaf engine, kept it quiet.
    table = run.engine.hours_of_sites()
    facts = run.store.alert_facts(("", "", ""), 0)
    later = opens.timestamp() + OFFLINE_AFTER_S
    assert [c.key for c in evaluate(facts, later, table.get, run.engine.thresholds)] == [("offline", "dev-1")]


def test_a_counter_killed_at_lunch_raises_nothing(start_service, start_counter, webhook, smtp):
    quiet_after_kill(start_service(LUNCH), start_counter, webhook, smtp,
                     opens=datetime(2026, 11, 18, 13, 30, tzinfo=HCM))


def test_a_counter_killed_on_a_closed_day_raises_nothing(start_service, start_counter, webhook, smtp):
    run = start_service()
    r = run.client("manager").put(f"/api/v1/sites/{SITE}/hours", json={
        "weekly": {"mon": ["07:30-11:30", "13:30-17:00"], "wed": ["07:30-11:30", "13:30-17:00"]},
        "closed": [WEDNESDAY_MORNING.date().isoformat()]})
    assert r.status_code == 200 and r.json()["updated_by"].startswith("t-manager")
    quiet_after_kill(run, start_counter, webhook, smtp, opens=datetime(2026, 11, 23, 7, 30, tzinfo=HCM))  # Monday


def low_ratings(counter: Counter, n: int, officer: str = "o7") -> None:
    counter.send(*(rating(counter, 1, officer) for _ in range(n)))


def test_k_lowest_ratings_in_a_row_alert_once_naming_officer_and_counter(start_service, mosquitto, webhook, smtp):
    run = start_service()
    run.store.upsert_officer("o7", "Trần Thị Bình")
    run.store.upsert_counter(SITE, "5", "Quầy Tư pháp")
    run.store.register_device("dev-9", SITE, "5")
    counter = Counter(mosquitto, "dev-9", SITE, "5")
    try:
        low_ratings(counter, 2)
        run.settle()
        assert webhook.posts.items == []  # two is not yet three
        low_ratings(counter, 1)
        (post,) = webhook.posts.wait_for(lambda p: webhook.of("alert.opened", "low_streak"), what="the alert")
        assert post["signed"] and "Trần Thị Bình (o7)" in post["body"]["text"] and "Quầy Tư pháp" in post["body"]["text"]
        low_ratings(counter, 2)  # the streak goes on: still the same alert
        run.settle()
        assert len(webhook.of("alert.opened")) == 1 and len(smtp.mails.items) == 1
        assert "Trần Thị Bình" in smtp.mails.items[0][1].get_content()
        # A manager acknowledges it; who and when are kept.
        (alert,) = run.client().get("/api/v1/alerts").json()["items"]
        assert run.client("viewer").post(f"/api/v1/alerts/{alert['id']}/ack").status_code == 403
        acked = run.client("manager").post(f"/api/v1/alerts/{alert['id']}/ack").json()
        assert acked["acked_by"].startswith("t-manager") and acked["acked_ms"] >= alert["opened_ms"]
        counter.send(rating(counter, 4, "o7"))
        webhook.posts.wait_for(lambda p: webhook.of("alert.resolved", "low_streak"), what="the resolve notice")
    finally:
        counter.close()


def test_channels_down_lose_nothing_and_never_slow_ingest(start_service, start_counter, mosquitto, webhook, smtp):
    webhook.stop()
    smtp.stop()
    run = start_service()
    run.store.register_device("dev-9", SITE, "5")
    counter = start_counter()
    online_is(run, True)
    counter.kill()
    fake = Counter(mosquitto, "dev-9", SITE, "5")
    try:
        low_ratings(fake, 3)  # acked by ingest while both channels are down: it waits for the acks
        eventually(lambda: len(run.store.open_alerts()) == 2, what="two alerts")
        eventually(lambda: run.engine.failures >= 2, what="failed deliveries")
        assert run.store.outbox_pending() == 4  # two alerts, two channels
        metrics = run.client("viewer").get("/metrics").text  # what the operators' Prometheus rule watches
        assert "hailong_alert_notices_pending 4\n" in metrics and "hailong_alerts_open 2\n" in metrics
        # The service restarts with the notices still undelivered: the outbox is in the store.
        run.close()
        run = start_service(datetime.fromtimestamp(run.clock(), HCM))  # time goes on from where it was
        low_ratings(fake, 1)
        assert run.svc.ingest.metrics.ingested == 1
        webhook.start()
        smtp.start()
        eventually(lambda: run.store.outbox_pending() == 0, what="every notice delivered")
        run.settle()
    finally:
        fake.close()
    assert sorted(p["body"]["alert"]["rule"] for p in webhook.posts.items) == ["low_streak", "offline"]
    assert all(p["signed"] for p in webhook.posts.items)
    assert len(smtp.mails.items) == 2 and len({m["Message-ID"] for _, m in smtp.mails.items}) == 2
