"""The alerts' store: the migration onto an existing store, one open alert per (rule, subject), the outbox,
acknowledgements and daily summaries; and the engine's rounds with an injected clock (no threads)."""
from __future__ import annotations

import sqlite3
import threading
import time
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from broker.alerts.engine import AlertEngine
from broker.config import config_from_dict
from broker.store import MIGRATIONS, Store
from tests.alert_peers import SmtpSink, WebhookSink

HCM = ZoneInfo("Asia/Ho_Chi_Minh")
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")


def webhook_notice(alert: dict, kind: str):
    return [("webhook", alert["site"], {"event": kind, "id": alert["id"]})]


def test_the_alerts_migration_applies_to_a_store_made_before_it(tmp_path):
    path = tmp_path / "old.db"
    before = [m.__name__ for m in MIGRATIONS].index("_v6_alerts")  # its position, not a schema number
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("BEGIN")
    for migration in MIGRATIONS[:before]:
        migration(raw)
    raw.execute("INSERT INTO sites VALUES ('s1', 'Trung tâm 1', 'Asia/Ho_Chi_Minh')")
    raw.execute(f"PRAGMA user_version = {before}")
    raw.execute("COMMIT")
    raw.close()
    with Store.open(path) as s:
        assert s.sites() == [{"id": "s1", "name": "Trung tâm 1", "tz": "Asia/Ho_Chi_Minh"}]
        assert s.open_alerts() == [] and s.site_hours("s1") is None and s.outbox_pending() == 0


def test_one_open_alert_per_rule_and_subject_even_from_racing_writers(store_url):
    stores = [Store.open(store_url) for _ in range(4)]
    try:
        barrier = threading.Barrier(len(stores))

        def race(s):
            barrier.wait()
            s.apply_alerts([("offline", "dev-1", "s1", {})], [], webhook_notice, 1000)

        threads = [threading.Thread(target=race, args=(s,)) for s in stores]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        s = stores[0]
        assert len(s.alerts("all")) == 1 and s.outbox_pending() == 1
        # Resolved, the same condition may open a new alert later: that is history, not a repeat.
        assert len(s.apply_alerts([], [("offline", "dev-1")], webhook_notice, 2000)[1]) == 1
        assert s.apply_alerts([], [("offline", "dev-1")], webhook_notice, 2500) == ([], [])
        assert len(s.apply_alerts([("offline", "dev-1", "s1", {})], [], webhook_notice, 3000)[0]) == 1
        assert [a["state"] for a in s.alerts("all")] == ["open", "resolved"]
        assert [a["opened_ms"] for a in s.alerts("all", from_ms=1000, to_ms=3000)] == [1000]
        with pytest.raises(ValueError):
            s.alerts("closed")
    finally:
        for s in stores:
            s.close()


def test_the_outbox_waits_after_a_failure_and_the_first_acknowledgement_stands(store_url):
    with Store.open(store_url) as s:
        (alert,), _ = s.apply_alerts([("clock", "dev-1", "s1", {})], [], webhook_notice, 1000)
        (notice,) = s.outbox_due(1000)
        s.outbox_failed(notice["id"], "refused", 5000)
        assert s.outbox_due(4999) == []
        (again,) = s.outbox_due(5000)
        assert again["attempts"] == 1
        s.outbox_sent(notice["id"], 5001)
        assert s.outbox_due(10**12) == [] and s.outbox_pending() == 0
        assert s.ack_alert(alert["id"], "lan", 2000)["acked_by"] == "lan"
        assert (s.ack_alert(alert["id"], "binh", 3000)["acked_by"], s.alert(alert["id"])["acked_ms"]) == ("lan", 2000)
        assert s.ack_alert(999, "lan", 2000) is None
        assert s.queue_summary("s1", "2026-11-18", [("email", "s1", {"to": ["a@b.vn"]})], 1)
        assert not s.queue_summary("s1", "2026-11-18", [("email", "s1", {"to": ["a@b.vn"]})], 2)


class Clock:
    def __init__(self, at: datetime):
        self.t = at.timestamp()

    def __call__(self) -> float:
        return self.t


def engine_config(tmp_path, smtp, hook):
    return config_from_dict({
        "mqtt": {"embedded": False}, "store": {"url": f"sqlite:///{tmp_path / 'e.db'}"},
        "alerts": {"daily_summary": True, "retry_min_s": 10, "retry_max_s": 40, "offline_after_s": 60},
        "email": {"host": "127.0.0.1", "port": smtp.port, "security": "none", "username": "u", "password": "p",
                  "to": ["tt@example.vn"]},
        "webhook": {"url": hook.url, "secret": "k"}})


@pytest.fixture
def engine_parts(tmp_path):
    smtp = SmtpSink("u", "p").start()
    hook = WebhookSink("k").start()
    cfg = engine_config(tmp_path, smtp, hook)
    store = Store.open(cfg.store.url)
    store.upsert_site("s1", "Trung tâm 1", "Asia/Ho_Chi_Minh")
    store.register_device("dev-1", "s1", "1")
    clock = Clock(datetime(2026, 11, 18, 9, 0, tzinfo=HCM))  # a Wednesday, open
    try:
        yield AlertEngine(store, cfg, clock=clock), store, clock, smtp, hook
    finally:
        store.close()
        smtp.stop()
        hook.stop()


def test_the_engine_backs_off_a_down_channel_and_sends_the_daily_summary_at_closing_time(engine_parts):
    engine, store, clock, smtp, hook = engine_parts
    store.device_status("dev-1", {"online": True}, int(clock() * 1000))
    store.device_status("dev-1", {"online": False}, int(clock() * 1000))
    clock.t += 59
    assert engine.check_once() == ([], [])
    clock.t += 1
    (opened,), _ = engine.check_once()
    assert engine.check_once() == ([], [])  # no repeat
    hook.stop()
    assert engine.deliver_once() == 1  # the e-mail; the webhook failed
    assert engine.failures == 1 and store.outbox_pending() == 1
    hook.start()
    clock.t += 9.9
    assert engine.deliver_once() == 0  # resting for retry_min_s
    clock.t += 0.1
    assert engine.deliver_once() == 1 and len(hook.posts.items) == 1
    # 17:00 is closing time on a Wednesday: one summary per site and day, whatever the number of rounds.
    clock.t = datetime(2026, 11, 18, 17, 0, tzinfo=HCM).timestamp()
    engine.check_once()
    engine.check_once()
    assert engine.deliver_once() == 1
    subjects = [m["Subject"] for _, m in smtp.mails.items]
    assert len(subjects) == 2 and "Tổng hợp cảnh báo 2026-11-18" in subjects[1]
    assert "Thiết bị mất kết nối" in smtp.mails.items[1][1].get_content()
    assert opened["rule"] == "offline"


def test_the_engine_stops_promptly(engine_parts):
    engine = engine_parts[0]
    engine.start()
    started = time.monotonic()
    engine.stop()
    assert all(not t.is_alive() for t in engine._threads)
    print(f"engine stopped in {time.monotonic() - started:.3f} s")


def test_the_facts_hold_counted_ratings_newest_first_and_the_last_hours_flagged_presses(tmp_path):
    from broker.store import Incoming
    from protocol.codec import encode
    from protocol.events import make_event

    at = datetime(2026, 11, 18, 23, 30, tzinfo=HCM)  # late evening: Tokyo's day is already tomorrow
    t = int(at.timestamp() * 1000)

    def rating(seq: int, score: int, flags=(), device="dev-1", site="s1"):
        ev = make_event("rating", device=device, site=site, counter="1", ledger="0123456789abcdef", seq=seq,
                        ts=t - 60_000 + seq, clock_ok=True, boot="b", mono=float(seq), officer="o1", ticket=None,
                        score=score, scale=4, flags=list(flags))
        return Incoming(device, encode(ev), t)

    with Store.open(tmp_path / "f.db") as s:
        s.upsert_site("tokyo", "Tokyo", "Asia/Tokyo")
        s.register_device("dev-1", "s1", "1")
        s.register_device("dev-2", "tokyo", "1")
        s.ingest([rating(1, 1), rating(2, 4), rating(3, 2, ["repeat"]), rating(4, 2, ["chord"])])
        s.ingest([rating(i, 3, ["repeat"], device="dev-2", site="tokyo") for i in (1, 2)])
        s.ingest([rating(9, 1, device="stranger")])  # held: never a fact
        days = ("2026-11-17", "2026-11-18", "2026-11-19")
        facts = s.alert_facts(days, t - 3_600_000)
        assert [(r["score"], r["ts"]) for r in facts["ratings"]] == [(4, t - 60_000 + 2), (1, t - 60_000 + 1)]
        assert facts["flagged"] == {("s1", "1"): 2, ("tokyo", "1"): 2}
        assert s.alert_facts(days, t)["flagged"] == {}  # nothing in the hour after
        assert [d["device"] for d in facts["devices"]] == ["dev-1", "dev-2"]


def test_two_instances_send_each_notice_once(engine_parts, tmp_path):
    """Several service instances run an engine each on one store: each alert is opened and sent once."""
    engine, store, clock, smtp, hook = engine_parts
    other_store = Store.open(store.path)
    try:
        other = AlertEngine(other_store, engine_config(tmp_path, smtp, hook), clock=clock)
        store.device_status("dev-1", {"online": True}, int(clock() * 1000))
        store.device_status("dev-1", {"online": False}, int(clock() * 1000))
        clock.t += 60
        (opened,), _ = engine.check_once()
        assert other.check_once() == ([], [])  # already open: the unique index, whoever checks
        stale = other_store.outbox_due(int(clock() * 1000))
        assert len(stale) == 2  # e-mail and webhook, as the other sender saw them just before the first sent them
        assert engine.deliver_once() == 2
        other_store.outbox_due = lambda *args, **kwargs: stale
        assert other.deliver_once() == 0
        assert len(hook.posts.items) == 1 and store.outbox_pending() == 0
    finally:
        other_store.close()


def test_a_notice_claimed_by_an_instance_that_died_is_sent_by_another_later(engine_parts):
    engine, store, clock, smtp, hook = engine_parts
    store.device_status("dev-1", {"online": True}, int(clock() * 1000))
    store.device_status("dev-1", {"online": False}, int(clock() * 1000))
    clock.t += 60
    engine.check_once()
    now = int(clock() * 1000)
    for notice in store.outbox_due(now):  # a sender takes them, and its instance is killed before sending
        assert store.outbox_claim(notice["id"], now, now + 300_000)
    assert engine.deliver_once() == 0
    clock.t += 300
    assert engine.deliver_once() == 2 and len(hook.posts.items) == 1
