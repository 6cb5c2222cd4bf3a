"""What only the PostgreSQL store has to show: several instances on one database (writes serialized,
caches that notice the others' commits), its own migrations and schema version, plain numbers,
a lost connection, and the translation of the store's SQLite statements. The store's behaviour
itself is tested on both databases by the store's own tests (conftest's store_url)."""
from __future__ import annotations

import threading
from decimal import Decimal

import pytest

from broker.store import MIGRATIONS, Incoming, Store, StoreError
from broker.store.pg_sql import translate
from tests.postgres import raw_connection
from tests.test_broker_store import LEDGER, T0, assert_rollups_match_events, event, msg, register

pytest.importorskip("psycopg")


def test_the_translation_leaves_string_literals_alone():
    sql = "SELECT 'a?b%', x FROM t WHERE y LIKE 'z%' AND k = ? AND o IS ? AND m = max(a, b) AND n IN ()"
    assert translate(sql) == ("SELECT 'a?b%%', x FROM t WHERE y LIKE 'z%%' AND k = %s AND o IS NOT DISTINCT FROM %s"
                              " AND m = greatest(a, b) AND n IN (SELECT NULL WHERE false)")
    assert translate("SELECT max(id) FROM (SELECT id FROM t) GROUP BY x") == \
        "SELECT max(id) FROM (SELECT id FROM t) AS _s1 GROUP BY x"
    assert translate("INSERT INTO t (a, n) VALUES (?, ?) ON CONFLICT (a) DO UPDATE SET n = n + excluded.n"
                     " RETURNING n") == ("INSERT INTO t (a, n) VALUES (%s, %s) ON CONFLICT (a) DO UPDATE"
                                         " SET n = t.n + excluded.n RETURNING n")


def test_each_sqlite_migration_has_its_postgresql_twin_at_the_same_step():
    import broker.store.schema as schema
    import broker.store.schema_pg as schema_pg
    from broker.auth_schema import MIGRATIONS as AUTH, PG_MIGRATIONS as AUTH_PG

    assert [m.__name__ for m in schema_pg.MIGRATIONS] == [m.__name__ for m in schema.MIGRATIONS]
    assert len(AUTH_PG) == len(AUTH)


def test_a_new_database_is_migrated_once_by_racing_instances(postgres_cluster):
    url = postgres_cluster.create_database(migrated=False)
    opened, errors = [], []
    barrier = threading.Barrier(3)

    def open_one():
        barrier.wait()
        try:
            opened.append(Store.open(url))
        except Exception as exc:  # noqa: BLE001  (the test reports it)
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert errors == [] and len(opened) == 3
        db = raw_connection(opened[0])
        assert db.execute("SELECT version FROM hailong_store").fetchone()[0] == len(MIGRATIONS)
        db.close()
    finally:
        for s in opened:
            s.close()


def test_a_database_from_a_newer_program_is_refused(pg_url):
    db = raw_connection(Store.open(pg_url))  # the store is left to the garbage collector: one connection
    db.execute("UPDATE hailong_store SET version = ?", (len(MIGRATIONS) + 1,))
    db.close()
    with pytest.raises(StoreError, match="newer than this program"):
        Store.open(pg_url)


def test_instances_ingesting_the_same_events_at_once_count_each_once(pg_url):
    """Two instances (a redelivery after a failover reaches both) store overlapping batches at once.

    Every write transaction takes the store's write lock first, so the second instance's duplicate
    check sees the first one's commit: no unique-key error, no event twice, rollups equal a recount.
    """
    a, b = Store.open(pg_url), Store.open(pg_url)
    try:
        register(a, ("hcm", "1"))
        events = [event(seq=n, score=1 + n % 4, officer=f"off-{n % 3}") for n in range(1, 201)]
        barrier = threading.Barrier(2)
        statuses: list[str] = []
        errors: list[Exception] = []

        def run(store, chunk_start):
            barrier.wait()
            try:
                for i in range(0, 200, 5):  # the same events, in batches that overlap the other's
                    batch = [events[(i + chunk_start + k) % 200] for k in range(5)]
                    statuses.extend(o.status for o in store.ingest([msg(e) for e in batch]))
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(s, start)) for s, start in ((a, 0), (b, 2))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert errors == []
        assert statuses.count("stored") == 200 and statuses.count("duplicate") == 200
        assert a.counts()["events"] == 200 and b.counts()["duplicates"] == 200
        assert sum(r["ratings"] for r in a.satisfaction("officer", "2024-11-27", "2024-11-27")["rows"]) == 200
        assert_rollups_match_events(a)
    finally:
        a.close()
        b.close()


def test_an_instance_notices_another_instances_commits(pg_url):
    """The ingest caches each site's time zone; another instance changing it must be seen at once."""
    late = T0 + 11 * 3600_000 + 30 * 60_000  # 15:30 UTC: the 27th in Hồ Chí Minh City, the 28th in Tokyo
    a, b = Store.open(pg_url), Store.open(pg_url)
    try:
        register(a, ("hcm", "1"))
        a.ingest([msg(event(seq=1, ts=late))])  # caches hcm's zone: the default, Asia/Ho_Chi_Minh
        b.upsert_site("hcm", "moved", "Asia/Tokyo")
        a.ingest([msg(event(seq=2, ts=late))])
        assert [e["day"] for e in a.events()] == ["2024-11-27", "2024-11-28"]
    finally:
        a.close()
        b.close()


def test_figures_are_plain_numbers_never_decimal(pg_url):
    with Store.open(pg_url) as s:
        register(s, ("hcm", "1"))
        s.ingest([msg(event(seq=n)) for n in range(1, 4)])
        rows = s.officer_days("off-1", "2024-11-27", "2024-11-27")
        values = [v for row in rows for v in row] + list(s.counts().values())
        assert rows and not any(isinstance(v, Decimal) for v in values)
        assert all(type(v) is int for row in rows for v in row[1:])


def test_a_lost_connection_is_one_store_error_then_the_next_call_reconnects(pg_url, postgres_cluster):
    with Store.open(pg_url) as s:
        register(s, ("hcm", "1"))
        with postgres_cluster.admin() as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s"
                          " AND application_name = 'hailong'", (pg_url.rsplit("/", 1)[1],))
        with pytest.raises(StoreError):
            s.ingest([msg(event(seq=1))])
        assert [o.status for o in s.ingest([msg(event(seq=1))])] == ["stored"]
        with pytest.raises(StoreError):
            s.sites()
        assert s.counts()["events"] == 1


def test_auth_on_postgresql_survives_a_lost_connection(pg_url, postgres_cluster):
    from broker.auth import Auth

    with Auth(pg_url) as auth:
        token = auth.create_token("viewer", "t")
        with postgres_cluster.admin() as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s"
                          " AND application_name = 'hailong'", (pg_url.rsplit("/", 1)[1],))
        with pytest.raises(Exception):  # noqa: B017  (the driver's error: the request that met it fails)
            auth.verify_token(token)
        assert auth.verify_token(token).name == "t"  # and the next one is answered


def test_an_unreachable_server_is_a_store_error_without_the_password(postgres_cluster):
    url = postgres_cluster.url("nosuchdb")
    with pytest.raises(StoreError) as caught:
        Store.open(url)
    assert postgres_cluster.password not in str(caught.value) and "nosuchdb" in str(caught.value)
    closed = f"postgresql://u:secret@127.0.0.1:{_closed_port()}/db"
    with pytest.raises(StoreError) as caught:
        Store.open(closed)
    assert "secret" not in str(caught.value)


def _closed_port() -> int:
    from tests.mosquitto import free_port

    return free_port()


def test_the_backends_benchmark_runs_small(postgres_cluster):
    import subprocess
    import sys

    from tests.support import ROOT

    r = subprocess.run([sys.executable, "benchmarks/store_backends.py", "--events", "2000", "--repeats", "2"],
                       capture_output=True, text=True, cwd=ROOT, timeout=180)
    assert r.returncode == 0, r.stderr
    assert "SQLite" in r.stdout and "PostgreSQL" in r.stdout and "bytes/rating" in r.stdout


def _workload(s: Store) -> None:
    """A bit of everything the store keeps: registry, ratings (flagged, with reasons, unattributed), calls,
    a late clock, a held device approved and another discarded, the queue, alerts, opening hours."""
    s.upsert_site("hcm", "Trung tâm", "Asia/Ho_Chi_Minh")
    s.upsert_site("tokyo", "Tokyo", "Asia/Tokyo")
    s.upsert_officer("off-1", "Nguyễn Thị Lan", badge="ab12")
    s.upsert_officer("off-2", "Trần Minh")
    register(s, ("hcm", "1"), ("hcm", "2"), ("tokyo", "1"))
    s.upsert_counter("hcm", "1", "Quầy 1")
    s.assign("hcm", "2", "off-2", T0 - 3_600_000)
    s.upsert_queue("hcm", "A", "Đất đai", "A")
    s.set_counter_queues("hcm", "1", ["A"])
    s.register_device("kiosk-1", "hcm", "kiosk")
    s.allocate_number("kiosk-1", "r1", "hcm", "2024-11-27", "A", False, T0)
    s.reserve_block("kiosk-1", "r2", "hcm", "2024-11-27", "A", 5, T0)
    s.ingest([msg(e) for e in [
        event(seq=1, score=4), event(seq=2, score=1, reason="Chờ quá lâu"),
        event(seq=3, score=2, flags=["repeat"]), event(seq=4, score=3, officer=None, counter="2"),
        event(seq=5, score=4, site="tokyo", ts=T0 + 20 * 3_600_000, officer="off-2"),
        event("call", seq=6, action="next"), event("call", seq=7, action="noshow", counter="2"),
        event(seq=8, clock_ok=False, boot="late", mono=5.0, ts=0),
        event(seq=9, boot="late", mono=65.0, ts=T0 + 60_000), event(seq=11, score=1, officer=None, reason="Khác"),
        event("take", seq=1, device="kiosk-1", counter="kiosk", ticket="A002", queue="A", priority=False,
              source="block", date="2024-11-27"),
        event(seq=1, device="stranger", counter="9", score=4), event(seq=1, device="other", counter="8", score=1),
        event(seq=1, device="waiting", counter="7", score=2),
    ]])
    s.ingest([msg(event("call", seq=10, action="next")), Incoming("dev-a", b'{"ledger":"0123456789abcdef",', T0),
              msg(event(seq=1, score=2))])  # a call, garbage, a conflicting duplicate
    s.queue_call("dev-a", LEDGER, 10, live=True)
    s.approve_device("stranger")
    s.discard_held("other", T0 + 1)
    s.next_ticket("hcm", "2024-11-27")
    s.device_status("dev-a", {"online": True, "fw": "0.1.0", "ledger": LEDGER}, T0)
    s.device_telemetry("dev-a", {"backlog": 0, "clock_ok": True, "fw": "0.1.0"}, T0 + 5)
    s.apply_alerts([("offline", "dev-b", "hcm", {"since": 1})], [], lambda alert, kind: [("email", "hcm", {})], T0)
    s.set_site_hours("hcm", {"weekly": {}, "closed": []}, ["a@b.vn"], T0, "lan")


ANSWERS = [  # (method, args, kwargs): every read the service makes, with arguments that find something
    *[("satisfaction", (g, "2024-11-01", "2024-11-30"), {}) for g in ("officer", "counter", "site")],
    ("satisfaction", ("officer", "2024-11-20", "2024-12-03"), {"sites": {"hcm"}}),
    ("low_reasons", ("off-1", "2024-11-01", "2024-11-30"), {}), ("low_reasons", (None, "2024-11-01", "2024-11-30"), {}),
    ("events", (), {"limit": 50}), ("events", (), {"held": True}), ("dead_letters", (), {}), ("counts", (), {}),
    ("rating_totals", ("2024-11-01", "2024-11-30"), {}), ("latest_ratings", (), {}),
    ("latest_ratings", (), {"sites": {"hcm"}}), ("latest_ratings", (), {"after_id": 1}), ("last_event_id", (), {}),
    ("officer_days", ("off-1", "2024-11-01", "2024-11-30"), {}), ("officer_calls", ("off-1", "2024-11-01", "2024-11-30"), {}),
    ("officer_counters", ("off-2", "2024-11-01", "2024-11-30"), {}),
    ("flagged_by_counter", ("2024-11-01", "2024-11-30"), {}), ("flagged_by_hour", ("2024-11-01", "2024-11-30"), {}),
    ("current_assignments", (), {}), ("sites", (), {}), ("counters", (), {}), ("officers", (), {}),
    ("officer_by_badge", ("AB12",), {}), ("devices", (), {}), ("held_devices", (), {}),
    ("officer_sites", ("off-2",), {}), ("officers_seen", ({"tokyo"},), {}),
    ("site_days", ("2024-11-01", "2024-11-30"), {}), ("site_totals", ("2024-11-01", "2024-11-30"), {"sites": {"hcm"}}),
    ("queues", (), {}), ("all_counter_queues", (), {}), ("blocks", ("hcm", "2024-11-27"), {}),
    ("tickets", ("hcm", "2024-11-27"), {}), ("calls_after", ("hcm",), {}), ("recent_calls", ("hcm",), {}),
    ("waiting_counts", ("hcm", "2024-11-27"), {}), ("ticket_times", ("2024-11-01", "2024-11-30"), {}),
    *[("waiting_stats", (g, "2024-11-01", "2024-11-30"), {}) for g in ("queue", "officer", "counter", "site")],
    ("open_alerts", (), {}), ("alerts", ("all",), {}), ("outbox_due", (T0 + 1,), {}), ("all_site_hours", (), {}),
    ("alert_facts", (("2024-11-26", "2024-11-27", "2024-11-28"), T0 - 3_600_000), {}),
]


def test_both_databases_give_the_same_answers(tmp_path, pg_store_url):
    """The same workload on SQLite and on PostgreSQL; then every read the service makes, compared."""
    with Store.open(tmp_path / "s.db") as lite, Store.open(pg_store_url) as pg:
        _workload(lite)
        _workload(pg)
        for method, args, kwargs in ANSWERS:
            expected = getattr(lite, method)(*args, **kwargs)
            assert expected, f"{method}: the workload should give it something to answer"
            assert getattr(pg, method)(*args, **kwargs) == expected, method
