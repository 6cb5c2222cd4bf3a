"""broker.store: exactly-once ingest, dead letters, rollups, clock correction, attribution.

Every test uses a real SQLite file in tmp_path.
"""
from __future__ import annotations

import base64
import bisect
import hashlib
import json
import random
import sqlite3
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

try:
    import psycopg
except ImportError:  # the PostgreSQL half of these tests is skipped then
    psycopg = None

import broker.store.rollups as rollups_module
import broker.store.schema as schema_module
from broker.store import MIGRATIONS, Incoming, InUse, Outcome, Store, StoreError
from protocol.codec import encode
from tests.postgres import raw_connection
from protocol.events import make_event

LEDGER = "0123456789abcdef"
T0 = 1_732_680_000_000  # 2024-11-27 04:00:00 UTC = 11:00 in Hồ Chí Minh City
DAY_MS = 86_400_000


def device_of(site: str, counter: str) -> str:
    """The test device serving a counter: "dev-a" at hcm/1, one of its own at every other counter."""
    return "dev-a" if (site, counter) == ("hcm", "1") else f"dev-a-{site}-{counter}"


def event(type="rating", *, seq, device=None, site="hcm", counter="1", ledger=LEDGER, ts=T0,
          clock_ok=True, boot="boot-1", mono=None, officer="off-1", ticket=None, **fields):
    device = device or device_of(site, counter)
    if type == "rating":
        fields.setdefault("score", 4)
        fields.setdefault("scale", 4)
    elif type == "call":
        fields.setdefault("action", "next")
    elif type in ("signin", "signout"):
        fields.setdefault("method", "central")
    return make_event(type, device=device, site=site, counter=counter, ledger=ledger, seq=seq, ts=ts,
                      clock_ok=clock_ok, boot=boot, mono=float(seq) if mono is None else mono,
                      officer=officer, ticket=ticket, **fields)


def msg(ev_or_payload, device=None, received_ms=T0 + 500) -> Incoming:
    if isinstance(ev_or_payload, dict):
        return Incoming(device or ev_or_payload["device"], encode(ev_or_payload), received_ms)
    return Incoming(device or "dev-a", ev_or_payload, received_ms)


def sha256(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def local_day(ms: int, tz: str) -> str:
    return datetime.fromtimestamp(ms / 1000, ZoneInfo(tz)).date().isoformat()


def register(store: Store, *counters: tuple[str, str]) -> None:
    """Register the test devices of these (site, counter)s: only known devices count."""
    for site, counter in counters:
        store.register_device(device_of(site, counter), site, counter)


DRIVER_ERRORS = (sqlite3.Error, psycopg.Error) if psycopg else (sqlite3.Error,)


@pytest.fixture
def bare(store_url):
    """A store whose registry is empty: every device is unknown to it (on SQLite, then on PostgreSQL)."""
    s = Store.open(store_url)
    yield s
    s.close()


@pytest.fixture
def store(bare):
    """A store that knows dev-a, the device of counter hcm/1 (the default of `event`)."""
    register(bare, ("hcm", "1"))
    return bare


NO_TOTALS = {"events": 0, "duplicates": 0, "conflicts": 0, "rejected": 0, "held": 0, "dead_letters": 0,
             "dead_letters_dropped": 0}


def totals(**changed) -> dict:
    """What `Store.counts()` says: every total, these as given, the others zero."""
    return {**NO_TOTALS, **changed}


def statuses(outcomes):
    return [o.status for o in outcomes]


# ------------------------------------------------------------------- opening


def test_open_accepts_urls_and_paths_and_sets_up_wal(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for spec, expected in [
        ("sqlite:///rel/one.db", tmp_path / "rel" / "one.db"),  # relative to the working directory
        (f"sqlite:///{tmp_path}/abs/two.db", tmp_path / "abs" / "two.db"),  # sqlite:////abs/... (4 slashes)
        (str(tmp_path / "plain" / "three.db"), tmp_path / "plain" / "three.db"),
        (tmp_path / "path" / "four.db", tmp_path / "path" / "four.db"),
    ]:
        s = Store.open(spec)
        try:
            assert expected.exists()
            db = s._db
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
            assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        finally:
            s.close()
    with pytest.raises(ValueError):
        Store.open("mysql://db/hailong")  # postgresql:// is the other store (tests/test_store_postgres.py)
    with pytest.raises(ValueError):
        Store.open("sqlite:///")


def test_a_file_that_is_not_a_database_is_a_store_error(tmp_path):
    bad = tmp_path / "junk.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError):
        Store.open(bad)


def test_closed_store_raises_store_error(tmp_path):
    s = Store.open(tmp_path / "s.db")
    s.close()
    s.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        s.ingest([msg(event(seq=1))])
    with pytest.raises(StoreError):
        s.counts()



# One read of each kind: registry, device health, statistics, the dashboard's pages.
READS = {
    "sites": lambda s: s.sites(),
    "officer": lambda s: s.officer("off-1"),
    "device_at": lambda s: s.device_at("hcm", "1"),
    "devices": lambda s: s.devices(),
    "satisfaction": lambda s: s.satisfaction("officer", "2024-11-01", "2024-11-30"),
    "rating_totals": lambda s: s.rating_totals("2024-11-01", "2024-11-30"),
    "officer_counters": lambda s: s.officer_counters("off-1", "2024-11-01", "2024-11-30"),
    "latest_ratings": lambda s: s.latest_ratings(),
    "current_assignments": lambda s: s.current_assignments(),
}


@pytest.mark.parametrize("read", READS)
def test_a_lost_connection_is_a_store_error_on_every_read(store, read):
    store.ingest([msg(event(seq=1))])
    store._reader.close()  # what a dead connection looks like to the driver
    with pytest.raises(StoreError) as caught:
        READS[read](store)
    assert isinstance(caught.value.__cause__, DRIVER_ERRORS)


@pytest.mark.parametrize("read", READS)
def test_a_damaged_database_is_a_store_error_on_every_read(store, read):
    if store.path is None:
        pytest.skip("SQLite's own wording; on PostgreSQL a dropped table is the lost connection's case")
    store.ingest([msg(event(seq=1))])
    other = sqlite3.connect(store.path)
    for table in ("sites", "counters", "officers", "devices", "assignments", "events", "rating_days",
                  "rating_months", "call_days", "call_months"):
        other.execute(f"DROP TABLE {table}")
    other.commit()
    other.close()
    with pytest.raises(StoreError, match="no such table"):
        READS[read](store)
    with pytest.raises(StoreError, match="no such table"):
        store.upsert_officer("off-1", "Nguyễn Thị Lan")


def test_refused_deletes_and_bad_arguments_keep_their_own_types(store):
    store.upsert_site("hcm", "Trung tâm")
    store.upsert_counter("hcm", "1")
    with pytest.raises(InUse, match="still has 1 counter"):
        store.delete_site("hcm")
    assert issubclass(InUse, StoreError) and issubclass(InUse, LookupError)
    assert store.site("hcm") is not None
    for bad in (lambda: store.events(limit=-1), lambda: store.dead_letters(offset=True),
                lambda: store.low_reasons("off-1", "2024-11", "2024-11-30")):
        with pytest.raises(ValueError):
            bad()

# ----------------------------------------------------------------- migrations


def test_reopening_a_current_database_runs_no_migration(tmp_path, monkeypatch):
    path = tmp_path / "s.db"
    Store.open(path).close()

    def must_not_run(db):
        raise AssertionError("a migration ran again on an up-to-date database")

    monkeypatch.setattr(schema_module, "MIGRATIONS", [must_not_run] * len(MIGRATIONS))
    s = Store.open(path)
    try:
        assert s._db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    finally:
        s.close()


def test_a_database_made_by_migration_1_opens_and_works(tmp_path):
    # Exactly what release 1 created: migration 1 alone, user_version 1.
    path = tmp_path / "v1.db"
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("BEGIN")
    MIGRATIONS[0](raw)
    raw.execute("PRAGMA user_version = 1")
    raw.execute("COMMIT")
    raw.close()
    with Store.open(path) as s:
        assert statuses(s.ingest([msg(event(seq=1))])) == ["stored"]
        assert s.counts()["events"] == 1
    with Store.open(path) as s:
        assert s.counts()["events"] == 1


def test_a_new_migration_is_applied_once_on_top_of_v1(tmp_path, monkeypatch):
    path = tmp_path / "s.db"
    with Store.open(path) as s:
        s.ingest([msg(event(seq=1))])
    calls = []

    def v2(db):
        calls.append(1)
        db.execute("ALTER TABLE sites ADD COLUMN address TEXT")

    monkeypatch.setattr(schema_module, "MIGRATIONS", [*MIGRATIONS, v2])
    with Store.open(path) as s:
        assert s._db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS) + 1
        assert s.counts()["events"] == 1
    with Store.open(path):
        pass
    assert calls == [1]


def test_a_database_from_a_newer_program_is_refused(tmp_path):
    path = tmp_path / "s.db"
    Store.open(path).close()
    raw = sqlite3.connect(path)
    raw.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    raw.commit()
    raw.close()
    with pytest.raises(StoreError, match="newer"):
        Store.open(path)



OLD_STORE = Path(__file__).parent / "data" / "store-deec5bb.sql"


def schema_of(path: Path) -> list[tuple]:
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY name").fetchall()
    finally:
        db.close()


@pytest.mark.parametrize("version", [1, 2])
def test_a_store_written_by_the_previous_code_opens_migrates_and_reads_the_same(tmp_path, version):
    path = tmp_path / "old.db"
    raw = sqlite3.connect(path)
    raw.executescript(OLD_STORE.read_text(encoding="utf-8"))
    if version == 1:  # as release 1 left it: no index for the misuse page yet
        raw.execute("DROP INDEX events_flagged_hours")
    raw.execute(f"PRAGMA user_version = {version}")
    raw.commit()
    raw.close()
    Store.open(tmp_path / "fresh.db").close()
    with Store.open(path) as s:
        assert schema_of(path) == schema_of(tmp_path / "fresh.db")
        assert s.counts() == totals(events=11, duplicates=1, rejected=1, dead_letters=1)
        # History does not change: every stored event stays counted, pi-1's rating at hcm/2 included.
        assert [e["held"] for e in s.events()] == [None] * 11 and s.held_devices() == []
        rows = s.satisfaction("officer", "2024-10-01", "2024-11-30")["rows"]
        assert [(r["key"], r["ratings"], r["flagged"], r["satisfied"], r["served"]) for r in rows] == [
            ("off-1", 6, 1, 5, 1), ("off-2", 1, 0, 1, 0)]
        assert s.officer_by_badge("04a1b2c3")["name"] == "Nguyễn Thị Lan"
        assert s.device_at("hcm", "1") == "pi-1" and s.assignment_at("hcm", "2", T0) == "off-2"
        assert s.low_reasons("off-1", "2024-11-01", "2024-11-30") == [{"reason": "Chờ quá lâu", "count": 1}]
        assert s.rating_totals("2024-10-01", "2024-11-30")["ratings"] == 7
        assert s.next_ticket("hcm", "2024-11-27") == 3
        # Resends are still recognised; the boot that never synchronised is re-timed when it does.
        assert statuses(s.ingest([msg(event(seq=1, device="pi-1", boot="b1"))])) == ["duplicate"]
        sync = event(seq=12, device="pi-1", boot="lost", mono=3603.0, ts=T0 + 7_200_000)
        assert statuses(s.ingest([msg(sync)])) == ["stored"]
        eleventh = s.events(after_id=10, limit=1)[0]
        assert (eleventh["seq"], eleventh["ts"], eleventh["ts_source"]) == (11, T0 + 3_600_000, "corrected")
        assert s.counts() == totals(events=12, duplicates=2, rejected=1, dead_letters=1)
        (letter,) = s.dead_letters()
        assert (letter["payload"], letter["size"], letter["truncated"]) == ("{broken", 7, False)
        assert letter["sha256"] == hashlib.sha256(b"{broken").hexdigest()
    assert_rollups_match_events(s)

# ------------------------------------------------------------------ outcomes


def test_stored_then_duplicate(store):
    ev = event(seq=1)
    (first,) = store.ingest([msg(ev)])
    assert first == Outcome("stored", "dev-a", LEDGER, 1, None, ev)
    (again,) = store.ingest([msg(ev, received_ms=T0 + 9000)])
    assert again == Outcome("duplicate", "dev-a", LEDGER, 1, None, ev)
    assert store.counts() == totals(events=1, duplicates=1)
    assert len(store.events()) == 1
    assert store.dead_letters() == []


def test_commit_happens_before_ingest_returns(store):
    store.ingest([msg(event(seq=1)), msg(event(seq=2))])
    # A separate connection sees the rows at once: the transaction is committed.
    other = raw_connection(store)
    try:
        assert other.execute("SELECT count(*) FROM events").fetchone()[0] == 2
    finally:
        other.close()


def test_malformed_json_is_dead_lettered_exactly(store):
    payload = b'{"ledger":"0123456789abcdef","seq":7,'
    (out,) = store.ingest([Incoming("dev-a", payload, T0 + 1)])
    reason = "invalid JSON: Expecting property name enclosed in double quotes at line 1 column 38"
    # Broken JSON: nothing can be read from it, so there is nothing to tell the device.
    assert out == Outcome("rejected", "dev-a", None, None, reason, None)
    assert store.dead_letters() == [{
        "id": 1, "received_ms": T0 + 1, "device": "dev-a", "ledger": None, "seq": None, "reason": reason,
        "payload": payload.decode(), "encoding": "utf-8", "size": len(payload), "sha256": sha256(payload),
        "truncated": False,
    }]


def test_binary_payload_is_kept_losslessly(store):
    payload = b"\xff\xfe\x00{junk"
    (out,) = store.ingest([Incoming("dev-a", payload, T0)])
    assert out.reason == "payload is not valid UTF-8: bad byte at offset 0"
    (letter,) = store.dead_letters()
    assert letter["encoding"] == "base64" and base64.b64decode(letter["payload"]) == payload


def test_wrong_type_is_dead_lettered_with_its_ledger_and_seq(store):
    payload = json.dumps(dict(event(seq=3), score="4")).encode()
    (out,) = store.ingest([Incoming("dev-a", payload, T0 + 2)])
    # Valid JSON with a readable ledger and seq: the device can be told to drop it.
    assert out == Outcome("rejected", "dev-a", LEDGER, 3, "score: expected integer, got string", None)
    assert store.dead_letters() == [{
        "id": 1, "received_ms": T0 + 2, "device": "dev-a", "ledger": LEDGER, "seq": 3,
        "reason": "score: expected integer, got string", "payload": payload.decode(), "encoding": "utf-8",
        "size": len(payload), "sha256": sha256(payload), "truncated": False,
    }]


def test_out_of_range_score_names_the_field(store):
    payload = json.dumps(dict(event(seq=4), score=6)).encode()
    (out,) = store.ingest([Incoming("dev-a", payload, T0)])
    assert (out.status, out.seq, out.reason) == ("rejected", 4, "score: score 6 is outside 1..4")


def test_unreadable_ledger_and_seq_are_none(store):
    payload = json.dumps(dict(event(seq=4), ledger="NOT-HEX", seq=True)).encode()
    (out,) = store.ingest([Incoming("dev-a", payload, T0)])
    assert (out.status, out.ledger, out.seq) == ("rejected", None, None)


def test_oversized_payload_is_dead_lettered_as_a_bounded_prefix(store):
    # Issue 10: dead letters used to keep the whole payload; now a 4 KiB prefix, the size and the hash.
    payload = b'{"ledger":"0123456789abcdef","seq":5,"pad":"' + b"x" * 70_000 + b'"}'
    (out,) = store.ingest([Incoming("dev-a", payload, T0 + 3)])
    reason = f"payload is {len(payload)} bytes, over the 65536-byte limit"
    # Too big to parse safely: ledger and seq are not read even though they are there.
    assert out == Outcome("rejected", "dev-a", None, None, reason, None)
    assert store.dead_letters() == [{
        "id": 1, "received_ms": T0 + 3, "device": "dev-a", "ledger": None, "seq": None, "reason": reason,
        "payload": payload[:4096].decode(), "encoding": "utf-8", "size": 70_046, "sha256": sha256(payload),
        "truncated": True,
    }]


def test_spoofed_device_is_rejected(bare):
    store = bare
    ev = event(seq=9, device="dev-b")
    (out,) = store.ingest([msg(ev, device="dev-a", received_ms=T0 + 4)])
    reason = "device 'dev-b' in payload does not match topic device 'dev-a' (spoofing)"
    assert out == Outcome("rejected", "dev-a", LEDGER, 9, reason, None)
    assert store.dead_letters() == [{
        "id": 1, "received_ms": T0 + 4, "device": "dev-a", "ledger": LEDGER, "seq": 9, "reason": reason,
        "payload": encode(ev).decode(), "encoding": "utf-8", "size": len(encode(ev)), "sha256": sha256(encode(ev)),
        "truncated": False,
    }]
    assert store.events() == []
    # Issue 10: an id whose every message was rejected is not listed as a device (it used to be, as
    # "seen"); the sender is in the dead letters. The impersonated device was not seen either.
    assert store.devices() == []


def test_a_batch_mixing_everything(store):
    first = event(seq=1, score=4)
    second = event(seq=2, score=3)
    conflicting = dict(second, score=1)
    batch = [
        msg(first),                                           # stored
        msg(b"{nope"),                                        # malformed
        msg(first),                                           # duplicate inside the batch
        msg(event(seq=3, device="dev-x"), device="dev-a"),    # spoofed
        msg(json.dumps(dict(event(seq=4), scale=9)).encode()),  # wrong value
        msg(second),                                          # stored
        msg(conflicting),                                     # same key, other body
        msg(b'{"seq":5,"pad":"' + b"x" * 66_000 + b'"}'),     # oversized
    ]
    out = store.ingest(batch)
    # Issue 10: the conflicting copy is a "conflict" (it used to be reported as a plain "duplicate").
    assert statuses(out) == ["stored", "rejected", "duplicate", "rejected", "rejected", "stored", "conflict",
                             "rejected"]
    assert [(o.ledger, o.seq) for o in out] == [(LEDGER, 1), (None, None), (LEDGER, 1), (LEDGER, 3),
                                                (LEDGER, 4), (LEDGER, 2), (LEDGER, 2), (None, None)]
    assert out[4].reason == "scale: scale 9 is outside 3..5"
    assert out[6].event == second  # the first copy wins
    assert store.counts() == totals(events=2, duplicates=1, conflicts=1, rejected=4, dead_letters=5)
    letters = store.dead_letters()  # newest first, in batch order within a batch
    assert [letter["size"] for letter in letters][0] == 66_018
    assert letters[1]["reason"].startswith("conflicting duplicate")
    assert (letters[1]["seq"], json.loads(letters[1]["payload"])["score"]) == (2, 1)
    assert [e["seq"] for e in store.events()] == [1, 2]
    # A conflicting resend in a later batch is caught the same way.
    (later,) = store.ingest([msg(dict(first, score=2))])
    assert later.status == "conflict" and later.event == first
    assert store.counts()["dead_letters"] == 6 and store.counts()["conflicts"] == 2


def test_empty_batch(store):
    assert store.ingest([]) == []


def test_everything_survives_reopening(tmp_path):
    path = tmp_path / "s.db"
    with Store.open(path) as s:
        register(s, ("hcm", "1"))
        s.ingest([msg(event(seq=1)), msg(event(seq=1)), msg(b"[]"), msg(event(seq=2, score=1))])
        before = (s.counts(), s.events(), s.dead_letters(), s.satisfaction("officer", "2024-11-01", "2024-11-30"),
                  s.devices())
    with Store.open(path) as s:
        after = (s.counts(), s.events(), s.dead_letters(), s.satisfaction("officer", "2024-11-01", "2024-11-30"),
                 s.devices())
        assert after == before
        assert after[0] == totals(events=2, duplicates=1, rejected=1, dead_letters=1)
        # Resends after the restart are still recognised.
        assert statuses(s.ingest([msg(event(seq=2, score=1))])) == ["duplicate"]


def test_a_failed_batch_stores_nothing_and_the_next_one_works(store, monkeypatch):
    store.ingest([msg(event(seq=1, clock_ok=False, ts=5, boot="b", mono=10.0))])

    def broken(*args):
        raise store._dialect.Error("disk I/O error")  # the driver's own error, SQLite's or PostgreSQL's

    with monkeypatch.context() as m:
        m.setattr(rollups_module, "apply", broken)
        with pytest.raises(StoreError, match="disk I/O error"):
            store.ingest([msg(event(seq=2, boot="b", mono=20.0, ts=T0))])
    assert store.counts()["events"] == 1
    # The boot offset learned by the failed batch must not linger in a cache either.
    out = store.ingest([msg(event(seq=2, boot="b", mono=20.0, ts=T0))])
    assert statuses(out) == ["stored"]
    first = store.events()[0]
    assert (first["ts"], first["ts_source"]) == (T0 - 10_000, "corrected")


# -------------------------------------------------------------- time and days


def test_doc_example_unsynced_event_is_corrected_by_a_later_synced_one(store):
    # docs/protocol.md "Clocks": a sign-in at mono 12.5 with a year-2000 ts, then a
    # rating of the same boot at mono 8123.456 with a synchronised ts.
    boot = "6f1c2a7e-3d1b-4c5e-9a0b-1c2d3e4f5a6b"
    signin = event("signin", seq=1, ts=946684812000, clock_ok=False, boot=boot, mono=12.5, officer=None)
    rating = event(seq=2, ts=1732680000123, clock_ok=True, boot=boot, mono=8123.456)
    store.ingest([msg(signin, received_ms=1732680100000)])
    (stored,) = store.events()
    assert (stored["ts"], stored["ts_source"]) == (1732680100000, "received")
    store.ingest([msg(rating)])
    first, second = store.events()
    assert (first["ts"], first["ts_source"]) == (1732671889167, "corrected")
    assert (second["ts"], second["ts_source"]) == (1732680000123, "device")
    assert first["event"]["ts"] == 946684812000  # the device's own fields are never rewritten
    # Events of that boot arriving after the offset is known are corrected at once.
    store.ingest([msg(event(seq=3, ts=946684900000, clock_ok=False, boot=boot, mono=9000.0))])
    third = store.events()[-1]
    assert (third["ts"], third["ts_source"]) == (1732671876667 + 9_000_000, "corrected")


def test_sync_in_the_same_batch_corrects_the_earlier_events(store):
    bad = event(seq=1, ts=1000, clock_ok=False, boot="b", mono=100.0)
    good = event(seq=2, ts=T0, clock_ok=True, boot="b", mono=200.0)
    store.ingest([msg(bad), msg(good)])
    assert [(e["ts"], e["ts_source"]) for e in store.events()] == [(T0 - 100_000, "corrected"), (T0, "device")]


def test_correction_moves_the_rollup_across_local_midnight(store):
    # True time of the vote: 23:59:30 on 26 Nov in Hồ Chí Minh City (UTC+7) = 16:59:30 UTC.
    vote_ts = 1732640370000
    assert local_day(vote_ts, "Asia/Ho_Chi_Minh") == "2024-11-26"
    offset = vote_ts - 50_000  # the boot started 50 s before the vote
    vote = event(seq=1, ts=1000, clock_ok=False, boot="b", mono=50.0, score=1)
    store.ingest([msg(vote, received_ms=vote_ts + 3_600_000)])  # arrives an hour later, on the 27th
    day26 = store.satisfaction("counter", "2024-11-26", "2024-11-26")
    day27 = store.satisfaction("counter", "2024-11-27", "2024-11-27")
    assert day26["rows"] == [] and day27["rows"][0]["ratings"] == 1
    # NTP syncs; the next event of the boot carries a good clock.
    store.ingest([msg(event(seq=2, ts=offset + 400_000, clock_ok=True, boot="b", mono=400.0))])
    assert store.events()[0]["ts"] == vote_ts and store.events()[0]["day"] == "2024-11-26"
    day26 = store.satisfaction("counter", "2024-11-26", "2024-11-26")
    day27 = store.satisfaction("counter", "2024-11-27", "2024-11-27")
    assert day26["rows"][0]["counts"] == {"1": 1, "2": 0, "3": 0, "4": 0}
    assert day27["rows"][0]["counts"] == {"1": 0, "2": 0, "3": 0, "4": 1}  # only the syncing event
    assert_rollups_match_events(store)


def test_unsynced_events_of_a_boot_that_never_syncs_keep_their_arrival_time(store):
    store.ingest([msg(event(seq=1, ts=1000, clock_ok=False, boot="lost", mono=5.0), received_ms=T0 + 77)])
    # A synchronised event of another boot says nothing about this one.
    store.ingest([msg(event(seq=2, ts=T0 + 10_000, clock_ok=True, boot="next", mono=5.0))])
    first = store.events()[0]
    assert (first["ts"], first["ts_source"], first["day"]) == (T0 + 77, "received", "2024-11-27")


def test_days_follow_the_sites_time_zone(store):
    store.upsert_site("tokyo", "Tokyo office", tz="Asia/Tokyo")
    ts = 1732633200000  # 2024-11-26 15:00 UTC: 00:00 on the 27th in Tokyo, 22:00 on the 26th in HCMC
    store.ingest([
        msg(event(seq=1, ts=ts, site="tokyo")),
        msg(event(seq=2, ts=ts, site="hcm")),  # not registered: the default zone, Asia/Ho_Chi_Minh
        msg(event(seq=3, ts=ts - 1, site="tokyo")),  # one millisecond before Tokyo's midnight
    ])
    assert [e["day"] for e in store.events()] == ["2024-11-27", "2024-11-26", "2024-11-26"]
    with pytest.raises(ValueError):
        store.upsert_site("mars", tz="Mars/Olympus_Mons")


def test_changes_made_through_another_connection_reach_the_ingest_caches(tmp_path):
    path = tmp_path / "s.db"
    with Store.open(path) as a, Store.open(path) as b:
        ts = 1732633200000  # 00:00 on the 27th in Tokyo, 22:00 on the 26th in HCMC
        a.ingest([msg(event(seq=1, site="tokyo", ts=ts))])  # unknown site: the default zone
        b.upsert_site("tokyo", tz="Asia/Tokyo")
        a.ingest([msg(event(seq=2, site="tokyo", ts=ts))])
        assert [e["day"] for e in a.events()] == ["2024-11-26", "2024-11-27"]
        # A boot offset learned through b is used by a.
        a.ingest([msg(event(seq=3, boot="x", clock_ok=False, ts=1, mono=1.0))])  # a: offset unknown
        b.ingest([msg(event(seq=4, boot="x", clock_ok=True, ts=T0, mono=2.0))])
        a.ingest([msg(event(seq=5, boot="x", clock_ok=False, ts=1, mono=3.0))])
        assert [(e["ts"], e["ts_source"]) for e in a.events()[2:]] == [
            (T0 - 1000, "corrected"), (T0, "device"), (T0 + 1000, "corrected")]


# ---------------------------------------------------------------- attribution


def test_attribution_by_assignment_history(store):
    store.assign("hcm", "1", "off-1", T0)
    store.assign("hcm", "1", "off-2", T0 + 3_600_000)
    store.assign("hcm", "1", None, T0 + 7_200_000)
    assert store.assignment_at("hcm", "1", T0 - 1) is None
    assert store.assignment_at("hcm", "1", T0) == "off-1"
    assert store.assignment_at("hcm", "1", T0 + 3_600_000) == "off-2"
    assert store.assignment_at("hcm", "1", T0 + 9_000_000) is None
    assert store.assignment_at("hcm", "2", T0) is None
    store.ingest([
        msg(event(seq=1, ts=T0 - 1, officer=None)),
        msg(event(seq=2, ts=T0 + 60_000, officer=None)),
        msg(event(seq=3, ts=T0 + 3_700_000, officer=None)),
        msg(event(seq=4, ts=T0 + 8_000_000, officer=None)),
        msg(event(seq=5, ts=T0 + 60_000, officer="off-9")),  # the device knew better
    ])
    got = [(e["officer"], e["officer_source"]) for e in store.events()]
    assert got == [(None, None), ("off-1", "assignment"), ("off-2", "assignment"), (None, None),
                   ("off-9", "event")]
    # A change recorded late does not re-attribute what is already stored (documented).
    store.assign("hcm", "1", "off-3", T0 - 60_000)
    assert store.events()[0]["officer"] is None
    rows = {r["key"]: r["ratings"] for r in store.satisfaction("officer", "2024-11-27", "2024-11-27")["rows"]}
    assert rows == {"off-1": 1, "off-2": 1, "off-9": 1, None: 2}


def test_assign_returns_the_interval(store):
    store.assign("hcm", "1", "off-1", 100)
    store.assign("hcm", "1", "off-3", 300)
    assert store.assign("hcm", "1", "off-2", 200) == {
        "site": "hcm", "counter": "1", "officer": "off-2", "start_ms": 200, "end_ms": 300}
    with pytest.raises(ValueError):
        store.assign("hcm", "1", "off-2", -5)


def test_correction_re_attributes_by_the_corrected_time(store):
    store.assign("hcm", "1", "morning", T0 - 7_200_000)
    store.assign("hcm", "1", "afternoon", T0)
    # Recorded in the morning by a Pi with a bad clock, received in the afternoon.
    store.ingest([msg(event(seq=1, ts=5, clock_ok=False, boot="b", mono=10.0, officer=None),
                      received_ms=T0 + 60_000)])
    assert store.events()[0]["officer"] == "afternoon"
    store.ingest([msg(event(seq=2, ts=T0 - 3_600_000 + 1_000_000, clock_ok=True, boot="b", mono=1000.0))])
    first = store.events()[0]
    assert (first["ts"], first["officer"], first["officer_source"]) == (T0 - 3_600_000 + 10_000, "morning",
                                                                        "assignment")
    assert_rollups_match_events(store)


# ------------------------------------------------------------ registry, devices


def test_unregistered_devices_are_stored_and_listed(bare):
    store = bare
    store.ingest([msg(event(seq=1, device="new-pi", site="hcm", counter="7"), received_ms=T0 + 1)])
    store.ingest([msg(event(seq=2, device="new-pi", site="hcm", counter="8"), received_ms=T0 + 2)])
    (dev,) = store.devices()
    assert dev == {"device": "new-pi", "registered": False, "site": "hcm", "counter": "8",
                   "first_seen_ms": T0 + 1, "last_seen_ms": T0 + 2, "online": None, "fw": None, "ledger": None,
                   "backlog": None, "clock_ok": None, "last_telemetry": None, "salvage": None}
    reg = store.register_device("new-pi", "hcm", "7")
    assert (reg["registered"], reg["site"], reg["counter"]) == (True, "hcm", "7")
    # Once registered, the registry says where it is, whatever its events claim.
    store.ingest([msg(event(seq=3, device="new-pi", site="hcm", counter="9"), received_ms=T0 + 3)])
    (dev,) = store.devices()
    assert (dev["site"], dev["counter"], dev["last_seen_ms"]) == ("hcm", "7", T0 + 3)
    assert store.upsert_counter("hcm", "7", "Quầy 7")["device"] == "new-pi"
    # Stored, but not counted: unknown when they came, then claiming a counter it is not registered at.
    assert [e["held"] for e in store.events()] == ["unregistered", "unregistered", "misbound: registered at hcm/7"]


def test_status_and_telemetry(bare):
    store = bare
    store.register_device("pi-1", "hcm", "1")
    store.device_status("pi-1", {"online": True, "fw": "1.2.0", "ledger": LEDGER, "ts": T0}, T0)
    telemetry = {"uptime_s": 12.5, "backlog": 3, "clock_ok": False, "fw": "1.2.0", "disk_free_mb": 900,
                 "cpu_temp_c": None, "ts": T0, "ledger": LEDGER}
    store.device_telemetry("pi-1", telemetry, T0 + 1000)
    store.device_status("pi-1", {"online": False}, T0 + 5000)
    store.device_status("ghost", {"online": True, "fw": "0.9", "ledger": LEDGER, "ts": T0}, T0)
    ghost, pi = store.devices()
    assert pi == {"device": "pi-1", "registered": True, "site": "hcm", "counter": "1", "first_seen_ms": T0,
                  "last_seen_ms": T0 + 1000, "online": False, "fw": "1.2.0", "ledger": LEDGER, "backlog": 3,
                  "clock_ok": False, "last_telemetry": telemetry, "salvage": None}
    assert (ghost["device"], ghost["registered"], ghost["online"]) == ("ghost", False, True)
    # A device that rescued votes from a quarantined ledger says so in its health.
    store.device_telemetry("pi-1", dict(telemetry, salvaged=41, salvage_pending=3, salvage_unreadable=2), T0 + 6000)
    assert store.device("pi-1")["salvage"] == {"salvaged": 41, "pending": 3, "unreadable": 2}


def test_a_groups_statuses_and_telemetry_go_in_together_in_order(bare):
    store = bare
    store.register_device("pi-1", "hcm", "1")
    telemetry = {"uptime_s": 1.0, "backlog": 2, "clock_ok": True, "fw": "1.3.0", "ts": T0, "ledger": LEDGER}
    store.device_health([("pi-1", "status", {"online": True, "fw": "1.2.0", "ledger": LEDGER}, T0),
                         ("pi-1", "telemetry", telemetry, T0 + 10),
                         ("pi-1", "status", {"online": False}, T0 + 20)])
    pi = store.device("pi-1")
    assert (pi["online"], pi["fw"], pi["backlog"], pi["last_seen_ms"]) == (False, "1.3.0", 2, T0 + 10)
    with pytest.raises(ValueError):  # the whole group or nothing
        store.device_health([("pi-1", "status", {"online": True}, T0 + 30), ("pi-1", "weather", {}, T0 + 30)])
    assert store.device("pi-1")["online"] is False
    store.device_health([])


def test_officers_and_badges(store):
    assert store.upsert_officer("off-1", "Nguyễn Thị Lan", "NTL", "Tư pháp", badge="04a1b2c3") == {
        "id": "off-1", "name": "Nguyễn Thị Lan", "code": "NTL", "unit": "Tư pháp", "badge": "04A1B2C3"}
    assert store.officer_by_badge("04A1B2C3")["id"] == "off-1"
    assert store.officer_by_badge("04a1b2c3")["id"] == "off-1"
    assert store.officer_by_badge("FFFF") is None
    # badge None keeps the card; a reissued card moves to its new holder.
    assert store.upsert_officer("off-1", "Nguyễn Thị Lan")["badge"] == "04A1B2C3"
    store.upsert_officer("off-2", "Trần Văn Minh", badge="04A1B2C3")
    assert store.officer_by_badge("04A1B2C3")["id"] == "off-2"


def test_next_tickets_draws_a_groups_numbers_in_order_from_the_same_sequence(tmp_path):
    with Store.open(tmp_path / "s.db") as s:
        assert s.next_ticket("hcm", "2024-11-27") == 1
        assert s.next_tickets([("hcm", "2024-11-27"), ("hanoi", "2024-11-27"), ("hcm", "2024-11-27")]) == [2, 1, 3]
        assert s.next_tickets([]) == []
        with pytest.raises(ValueError):
            s.next_tickets([("hcm", "2024-11-27"), ("hcm", "27/11/2024")])
        assert s.next_ticket("hcm", "2024-11-27") == 4  # the refused group drew nothing


def test_next_ticket_counts_per_site_per_day_durably(tmp_path):
    path = tmp_path / "s.db"
    with Store.open(path) as s:
        assert [s.next_ticket("hcm", "2024-11-27") for _ in range(3)] == [1, 2, 3]
        assert s.next_ticket("hanoi", "2024-11-27") == 1
        assert s.next_ticket("hcm", "2024-11-28") == 1
        with pytest.raises(ValueError):
            s.next_ticket("hcm", "27/11/2024")
    with Store.open(path) as s:
        assert s.next_ticket("hcm", "2024-11-27") == 4


def test_events_filters_and_keyset_pages(store):
    store.ingest([msg(event(seq=i, device=f"dev-{i % 2}", type="rating" if i % 3 else "call", ts=T0 + i * 1000))
                  for i in range(1, 13)])
    page1 = store.events(limit=5)
    page2 = store.events(limit=5, after_id=page1[-1]["id"])
    page3 = store.events(limit=5, after_id=page2[-1]["id"])
    assert [len(p) for p in (page1, page2, page3)] == [5, 5, 2]
    assert [e["seq"] for e in page1 + page2 + page3] == list(range(1, 13))
    assert {e["device"] for e in store.events(device="dev-0")} == {"dev-0"}
    assert [e["seq"] for e in store.events(type="call")] == [3, 6, 9, 12]
    assert [e["seq"] for e in store.events(since_ms=T0 + 4000, until_ms=T0 + 6000)] == [4, 5]
    assert store.events(officer="nobody") == [] and len(store.events(site="hcm", counter="1", limit=1000)) == 12


def test_low_reasons(store):
    store.ingest([
        msg(event(seq=1, score=1, reason="Chờ quá lâu")),
        msg(event(seq=2, score=2, reason="Chờ quá lâu")),
        msg(event(seq=3, score=1, reason="Thái độ")),
        msg(event(seq=4, score=1, reason="Thái độ", flags=["repeat"])),  # flagged: not counted
        msg(event(seq=5, score=1, reason="Khác", officer="off-2")),
        msg(event(seq=6, score=1, reason="Khác", ts=T0 + 40 * DAY_MS)),
    ])
    assert store.low_reasons("off-1", "2024-11-01", "2024-11-30") == [
        {"reason": "Chờ quá lâu", "count": 2}, {"reason": "Thái độ", "count": 1}]
    assert store.low_reasons("off-3", "2024-11-01", "2024-11-30") == []



def test_officer_counters_count_counted_ratings_with_flagged_presses_apart(store):
    # The officer page's per-counter table must add up to its header figures.
    register(store, ("hcm", "2"), ("hcm", "3"))
    store.upsert_counter("hcm", "1", "Quầy 1")
    store.ingest([
        msg(event(seq=1, score=4)), msg(event(seq=2, score=1)), msg(event(seq=3, score=2, flags=["repeat"])),
        msg(event(seq=4, score=4, counter="2")), msg(event("call", seq=5, counter="2")),
        msg(event(seq=6, score=3, counter="3", flags=["chord"])),  # only a flagged press here
        msg(event(seq=7, score=4, officer="off-2")),
    ])
    counters = store.officer_counters("off-1", "2024-11-27", "2024-11-27")
    assert counters == [
        {"site": "hcm", "counter": "1", "name": "Quầy 1", "ratings": 2, "flagged": 1, "calls": 0},
        {"site": "hcm", "counter": "2", "name": "", "ratings": 1, "flagged": 0, "calls": 1},
        {"site": "hcm", "counter": "3", "name": "", "ratings": 0, "flagged": 1, "calls": 0},
    ]
    row = next(r for r in store.satisfaction("officer", "2024-11-27", "2024-11-27")["rows"] if r["key"] == "off-1")
    assert (row["ratings"], row["flagged"]) == (3, 2)
    assert sum(c["ratings"] for c in counters) == row["ratings"]
    assert sum(c["flagged"] for c in counters) == row["flagged"]

# -------------------------------------------------------------- satisfaction


def test_satisfaction_by_officer_counter_and_site(store):
    store.upsert_site("hcm", "Trung tâm HCC Quận 1")
    store.upsert_counter("hcm", "1", "Quầy 1 - Hộ tịch")
    store.upsert_officer("off-1", "Nguyễn Thị Lan")
    register(store, ("hcm", "2"))
    scores = [4, 4, 3, 1, 2]
    batch = [msg(event(seq=i + 1, score=s)) for i, s in enumerate(scores)]
    batch.append(msg(event(seq=10, score=4, flags=["chord"])))
    batch.append(msg(event(seq=11, score=1, counter="2", officer=None)))
    batch += [msg(event("call", seq=20 + i, action=a)) for i, a in enumerate(["next", "next", "recall", "close"])]
    store.ingest(batch)
    by_officer = store.satisfaction("officer", "2024-11-27", "2024-11-27")
    assert (by_officer["scale"], by_officer["group"], by_officer["from"], by_officer["to"]) == (
        4, "officer", "2024-11-27", "2024-11-27")
    lan, nobody = by_officer["rows"]
    # 5 ratings, 3 satisfied (4, 4, 3); the chord is flagged and not counted.
    assert lan == {"key": "off-1", "name": "Nguyễn Thị Lan", "ratings": 5,
                   "counts": {"1": 1, "2": 1, "3": 1, "4": 2}, "satisfied": 3, "rate": 0.6, "mean": 2.8,
                   "index": 60.0, "wilson_lower": 0.2307, "flagged": 1, "served": 2}
    assert (nobody["key"], nobody["name"], nobody["ratings"]) == (None, "(không rõ)", 1)
    by_counter = store.satisfaction("counter", "2024-11-27", "2024-11-27")
    assert [(r["key"], r["name"]) for r in by_counter["rows"]] == [("hcm/1", "Quầy 1 - Hộ tịch"), ("hcm/2", "2")]
    (site,) = store.satisfaction("site", "2024-11-27", "2024-11-27")["rows"]
    assert (site["key"], site["name"], site["ratings"], site["flagged"]) == ("hcm", "Trung tâm HCC Quận 1", 6, 1)
    assert store.satisfaction("site", "2024-11-27", "2024-11-27", site="elsewhere")["rows"] == []


def test_satisfaction_with_satisfied_from(store):
    store.ingest([msg(event(seq=i + 1, score=s)) for i, s in enumerate([4, 4, 3, 1, 2])])
    (row,) = store.satisfaction("officer", "2024-11-27", "2024-11-27", satisfied_from=4)["rows"]
    assert (row["satisfied"], row["rate"]) == (2, 0.4)
    (row,) = store.satisfaction("officer", "2024-11-27", "2024-11-27", satisfied_from=2)["rows"]
    assert (row["satisfied"], row["rate"]) == (4, 0.8)
    with pytest.raises(ValueError):
        store.satisfaction("officer", "2024-11-27", "2024-11-27", satisfied_from=5)


def test_satisfaction_empty_period_and_bad_arguments(store):
    store.ingest([msg(event(seq=1))])
    assert store.satisfaction("officer", "2024-12-01", "2024-12-31") == {
        "scale": None, "group": "officer", "from": "2024-12-01", "to": "2024-12-31", "rows": []}
    with pytest.raises(ValueError):
        store.satisfaction("desk", "2024-11-01", "2024-11-30")
    with pytest.raises(ValueError):
        store.satisfaction("officer", "2024-11-30", "2024-11-01")
    with pytest.raises(ValueError):
        store.satisfaction("officer", "2024-11", "2024-11-30")


def test_satisfaction_ranks_evidence_over_a_lucky_streak(store):
    # The example: 2 votes at 100 % must not outrank 500 at 97 %.
    register(store, ("hcm", "2"), ("hcm", "3"))
    batch = [msg(event(seq=i + 1, officer="lucky", counter="2", score=4)) for i in range(2)]
    batch += [msg(event(seq=i + 1, officer="steady", counter="3", score=4 if i < 485 else 1))
              for i in range(500)]
    store.ingest(batch)
    rows = store.satisfaction("officer", "2024-11-27", "2024-11-27")["rows"]
    assert [(r["key"], r["rate"]) for r in rows] == [("steady", 0.97), ("lucky", 1.0)]


def test_satisfaction_with_mixed_scales(store):
    register(store, ("hcm", "2"))
    store.ingest([
        msg(event(seq=1, score=4, scale=4)), msg(event(seq=2, score=4, scale=4)), msg(event(seq=3, score=1, scale=4)),
        msg(event(seq=4, score=5, scale=5, counter="2")), msg(event(seq=5, score=3, scale=5, counter="2")),
    ])
    report = store.satisfaction("officer", "2024-11-27", "2024-11-27")
    assert report["scale"] == 4  # three ratings on 4 buttons, two on 5
    (row,) = report["rows"]
    # Satisfied = top two levels of each scale: 4, 4 (of 4) and 5 (of 5).
    # Index: (1 + 1 + 0 + 1 + 0.5) / 5 * 100 = 70.0. Mean on the 4-scale: 5 of 5 -> 4, 3 of 5 -> 2.5,
    # so (4 + 4 + 1 + 4 + 2.5) / 5 = 3.1.
    assert row["counts"] == {"1": 1, "2": 0, "3": 1, "4": 2, "5": 1}
    assert (row["ratings"], row["satisfied"], row["rate"], row["index"], row["mean"]) == (5, 3, 0.6, 70.0, 3.1)


def test_satisfaction_over_whole_and_partial_months(store):
    days = ["2024-10-31", "2024-11-01", "2024-11-15", "2024-11-30", "2024-12-01", "2025-01-15"]
    batch = []
    for i, day in enumerate(days):
        ts = int(datetime.fromisoformat(day + "T12:00:00+07:00").timestamp() * 1000)
        batch.append(msg(event(seq=i + 1, ts=ts, score=1 + i % 4)))
    store.ingest(batch)
    for first, last in [("2024-10-31", "2025-01-15"), ("2024-11-01", "2024-11-30"), ("2024-11-02", "2024-12-01"),
                        ("2024-10-01", "2024-12-31"), ("2024-11-15", "2024-11-15"), ("2024-11-01", "2025-01-31")]:
        expected = sum(first <= d <= last for d in days)
        rows = store.satisfaction("site", first, last)["rows"]
        assert sum(r["ratings"] for r in rows) == expected, (first, last)


# ------------------------------------------------ rollups against a recount


def recount(db: sqlite3.Connection) -> dict[str, list[tuple]]:
    """Every rollup recomputed from the counted events (not held) alone."""
    queries = {
        "rating_days": "SELECT day, site, counter, coalesce(officer, ''), scale, score, flagged, count(*)"
                       " FROM events WHERE type = 'rating' AND held IS NULL GROUP BY 1, 2, 3, 4, 5, 6, 7",
        "rating_months": "SELECT substr(day, 1, 7), site, counter, coalesce(officer, ''), scale, score, flagged,"
                         " count(*) FROM events WHERE type = 'rating' AND held IS NULL GROUP BY 1, 2, 3, 4, 5, 6, 7",
        "call_days": "SELECT day, site, counter, coalesce(officer, ''), action, count(*)"
                     " FROM events WHERE type = 'call' AND held IS NULL GROUP BY 1, 2, 3, 4, 5",
        "call_months": "SELECT substr(day, 1, 7), site, counter, coalesce(officer, ''), action, count(*)"
                       " FROM events WHERE type = 'call' AND held IS NULL GROUP BY 1, 2, 3, 4, 5",
    }
    return {table: sorted(db.execute(sql).fetchall()) for table, sql in queries.items()}


def rollups(db: sqlite3.Connection) -> dict[str, list[tuple]]:
    return {table: sorted(db.execute(f"SELECT * FROM {table}").fetchall())
            for table in ("rating_days", "rating_months", "call_days", "call_months")}


def assert_rollups_match_events(store: Store) -> None:
    db = raw_connection(store)
    try:
        assert rollups(db) == recount(db)
    finally:
        db.close()


SITES = {"hcm": "Asia/Ho_Chi_Minh", "tokyo": "Asia/Tokyo", "london": "Europe/London", "ghost": None}
FAKE_CLOCK = 946_684_800_000  # what a Pi without NTP believes: 2000-01-01


# Seeds whose workload hits every case checked at the end (a correction moving an event to another day).
@pytest.mark.parametrize("seed", [1, 3, 4])
def test_rollups_equal_a_recount_after_a_random_workload(store_url, seed):
    rng = random.Random(seed)
    s = Store.open(store_url)
    try:
        _random_workload(s, rng)
    finally:
        s.close()


def _random_workload(s: Store, rng: random.Random) -> None:
    for site, tz in SITES.items():
        if tz is not None:  # "ghost" is unregistered: the default zone applies
            s.upsert_site(site, site.title(), tz)
    tz_of = {site: tz or "Asia/Ho_Chi_Minh" for site, tz in SITES.items()}
    # One device per counter: registering a second one at a counter unbinds the first.
    devices = {f"pi-{i}": (site, str(1 + i)) for i, site in enumerate([*SITES, "hcm", "tokyo"])}
    scale_of = {d: (3, 4, 5)[i % 3] for i, d in enumerate(devices)}
    unknown = "pi-5"  # never registered: its events are held until it is approved at the end
    for device, (site, counter) in devices.items():
        if device != unknown:
            s.register_device(device, site, counter)

    # Local midnight of 27 Nov at each site.
    midnight = {site: int(datetime.fromisoformat("2024-11-27T00:00:00").replace(tzinfo=ZoneInfo(tz))
                          .timestamp() * 1000) for site, tz in tz_of.items()}

    # Assignment history the test knows independently: change points per counter.
    history: dict[tuple[str, str], list[tuple[int, str | None]]] = {}
    for site, counter in set(devices.values()):
        t = midnight[site] - 2 * 3_600_000
        for _ in range(rng.randint(0, 8)):
            officer = rng.choice(["off-1", "off-2", "off-3", None])
            s.assign(site, counter, officer, t)
            history.setdefault((site, counter), []).append((t, officer))
            t += rng.randint(10, 900) * 60_000

    def assigned(site, counter, ts):
        points = history.get((site, counter), [])
        i = bisect.bisect_right([p[0] for p in points], ts)
        return points[i - 1][1] if i else None

    truth = {}  # event key -> (true ts, event)
    deliveries = []  # (delivery time, Incoming)
    for device, (site, counter) in devices.items():
        seq = 0
        ledger = f"{rng.getrandbits(64):016x}"
        for b in range(3):
            boot = f"{device}-boot-{b}"
            kind = rng.choice(["synced", "late", "never"])
            # One boot a day, shortly before local midnight.
            start = midnight[site] + (b - 1) * DAY_MS - rng.randint(10, 90) * 60_000
            synced_from = {"synced": 0, "late": rng.randint(2, 8), "never": 10 ** 6}[kind]
            monos, mono_ms = [], rng.randint(5_000, 60_000)
            for k in range(rng.randint(5, 25)):
                mono_ms += rng.randint(1, 300) * 1000 + rng.randint(0, 999)
                if k == synced_from:
                    mono_ms += rng.randint(0, 3600) * 1000  # offline (and unsynchronised) for a while
                monos.append(mono_ms)
            # A Pi without a clock is usually offline too: its backlog goes out when it
            # comes back, just before its first synchronised event (or later, if never).
            sync_at = start + monos[synced_from] if synced_from < len(monos) else None
            for k, mono_ms in enumerate(monos):
                seq += 1
                true_ts = start + mono_ms
                clock_ok = k >= synced_from
                ts = true_ts if clock_ok else FAKE_CLOCK + mono_ms
                kind_of_event = rng.choices(["rating", "call", "signin"], [7, 2, 1])[0]
                fields = {}
                if kind_of_event == "rating":
                    scale = scale_of[device]
                    score = rng.randint(1, scale)
                    fields = {"scale": scale, "score": score, "flags": rng.choice([[], [], [], ["repeat"], ["chord"]]),
                              "reason": rng.choice([None, "Chờ quá lâu"]) if score <= 2 else None}
                elif kind_of_event == "call":
                    fields = {"action": rng.choice(["next", "next", "recall", "close"])}
                else:
                    fields = {"method": "central"}
                ev = make_event(kind_of_event, device=device, site=site, counter=counter, ledger=ledger, seq=seq,
                                ts=ts, clock_ok=clock_ok, boot=boot, mono=mono_ms / 1000,
                                officer=rng.choice([None, None, "off-1", "off-4"]), ticket=None, **fields)
                truth[(device, ledger, seq)] = (true_ts, ev, kind)
                if clock_ok:
                    sent = true_ts + rng.randint(1, 120) * 1000
                elif sync_at is not None:
                    sent = max(true_ts + 1000, sync_at - rng.randint(60, 900) * 1000)
                else:
                    sent = true_ts + rng.randint(1, 120) * 60_000
                deliveries.append((sent, Incoming(device, encode(ev), sent)))
                if rng.random() < 0.15:  # ack lost: sent again later
                    later = sent + rng.randint(1, 3600) * 1000
                    deliveries.append((later, Incoming(device, encode(ev), later)))
                if rng.random() < 0.03 and kind_of_event == "rating":  # a conflicting copy
                    later = sent + rng.randint(1, 600) * 1000
                    other = dict(ev, score=1 + ev["score"] % ev["scale"])
                    deliveries.append((later, Incoming(device, encode(other), later)))
    garbage = [Incoming("pi-0", b"{garbage", midnight["hcm"]) for _ in range(rng.randint(1, 3))]
    deliveries += [(g.received_ms, g) for g in garbage]
    deliveries.sort(key=lambda d: d[0])

    # Deliver in batches of random sizes, as the ingest loop groups them.
    first_seen, batch_of = {}, {}
    outcomes = []
    i = 0
    while i < len(deliveries):
        n = rng.randint(1, 40)
        batch = [inc for _, inc in deliveries[i:i + n]]
        for inc, out in zip(batch, s.ingest(batch)):
            outcomes.append(out)
            if out.status == "stored":
                first_seen[(out.device, out.ledger, out.seq)] = inc.received_ms
                batch_of[(out.device, out.ledger, out.seq)] = i
        i += n

    # Exactly once.
    assert set(first_seen) == set(truth)
    counts = s.counts()
    assert counts["events"] == len(truth)
    assert counts["rejected"] == len(garbage)
    assert counts["duplicates"] == sum(o.status == "duplicate" for o in outcomes)
    assert counts["conflicts"] == sum(o.status == "conflict" for o in outcomes)
    assert counts["dead_letters"] == len(garbage) + counts["conflicts"]
    for (_, inc), o in zip(deliveries, outcomes):
        if o.status in ("duplicate", "conflict"):
            assert (json.loads(inc.payload) != o.event) == (o.status == "conflict")

    # The unknown device's events are held, all of them and only them, and out of the figures.
    held = [key for key in truth if key[0] == unknown]
    assert held and counts["held"] == len(held)
    assert {o.held for o in outcomes if o.status == "stored"} == {None, "unregistered"}
    assert all((o.held is not None) == (o.device == unknown) for o in outcomes if o.status == "stored")
    assert_rollups_match_events(s)
    rows = s.satisfaction("counter", "2024-11-01", "2024-12-31")["rows"]
    assert sum(r["ratings"] + r["flagged"] for r in rows) == sum(
        1 for key, (_, ev, _) in truth.items() if ev["type"] == "rating" and key[0] != unknown)

    # Approved, they count as if they had arrived registered (the checks below hold for them too).
    assert s.approve_device(unknown)["counted"] == len(held)
    assert s.counts()["held"] == 0 and s.held_devices() == []

    # Rollups are exactly what a recount of the events gives.
    assert_rollups_match_events(s)

    # And every event has the time, day and officer the rules give, computed here independently.
    synced_boots = {ev["boot"] for _, ev, _ in truth.values() if ev["clock_ok"]}
    stored = {(e["device"], e["ledger"], e["seq"]): e for e in s.events(limit=100_000)}
    for key, (true_ts, ev, _) in truth.items():
        row = stored[key]
        if ev["clock_ok"]:
            expected = (true_ts, "device")
        elif ev["boot"] in synced_boots:
            expected = (true_ts, "corrected")
        else:
            expected = (first_seen[key], "received")
        assert (row["ts"], row["ts_source"]) == expected, key
        assert row["day"] == local_day(row["ts"], tz_of[ev["site"]]), key
        officer = ev["officer"] or assigned(ev["site"], ev["counter"], row["ts"])
        assert row["officer"] == officer, key
        assert row["officer_source"] == ("event" if ev["officer"] else "assignment" if officer else None)

    # The workload did exercise the hard case: events stored with their arrival time,
    # corrected by a later batch onto another local day.
    sync_batch = {}
    for key, (_, ev, _) in truth.items():
        if ev["clock_ok"]:
            sync_batch[ev["boot"]] = min(sync_batch.get(ev["boot"], batch_of[key]), batch_of[key])
    moved = [key for key, (_, ev, _) in truth.items()
             if not ev["clock_ok"] and batch_of[key] < sync_batch.get(ev["boot"], -1)
             and local_day(first_seen[key], tz_of[ev["site"]]) != stored[key]["day"]]
    assert moved

    # The report adds up to the counted ratings, whichever way it is grouped.
    counted = sum(1 for _, ev, _ in truth.values() if ev["type"] == "rating" and not ev["flags"])
    flagged = sum(1 for _, ev, _ in truth.values() if ev["type"] == "rating" and ev["flags"])
    for group in ("officer", "counter", "site"):
        rows = s.satisfaction(group, "2024-11-01", "2024-12-31")["rows"]
        assert sum(r["ratings"] for r in rows) == counted
        assert sum(r["flagged"] for r in rows) == flagged
