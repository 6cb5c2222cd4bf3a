"""Issue 10: only known devices count; dead letters stay bounded; conflicts and rejected senders apart.

Forged, unregistered and misbound events are stored once (acked) but held out of every figure until
an admin approves or discards them. Every test uses a real SQLite file in tmp_path.
"""
from __future__ import annotations

import hashlib
import sqlite3

import pytest

import broker.store.deadletters as deadletters
from broker.store import MIGRATIONS, Ambiguous, Incoming, NothingHeld, Store
from tests.postgres import raw_connection
from tests.test_broker_store import (LEDGER, T0, assert_rollups_match_events, event, msg, register, statuses,
                                     totals)

DAY = "2024-11-27"


@pytest.fixture
def store(store_url):
    """hcm/1 is a real counter: its device dev-a is registered, off-1 is assigned to it, one rating counted.
    On SQLite, then on PostgreSQL (conftest's store_url)."""
    s = Store.open(store_url)
    s.upsert_site("hcm", "Trung tâm")
    s.upsert_officer("off-1", "Nguyễn Thị Lan")
    register(s, ("hcm", "1"))
    s.assign("hcm", "1", "off-1", T0 - 3_600_000)
    s.ingest([msg(event(seq=1, score=4, officer=None))])
    yield s
    s.close()


def figures(store: Store) -> dict:
    """Everything a report or a dashboard page shows for the day."""
    return {
        "by_officer": store.satisfaction("officer", DAY, DAY)["rows"],
        "by_counter": store.satisfaction("counter", DAY, DAY)["rows"],
        "totals": store.rating_totals(DAY, DAY),
        "latest": store.latest_ratings(),
        "officer_days": store.officer_days("off-1", DAY, DAY),
        "officer_counters": store.officer_counters("off-1", DAY, DAY),
        "reasons": store.low_reasons("off-1", DAY, DAY),
        "flagged": store.flagged_by_counter(DAY, DAY),
        "flagged_hours": dict(store.flagged_by_hour(DAY, DAY)),
    }


def ratings_of(store: Store, key: str, group: str = "officer") -> int:
    return sum(r["ratings"] for r in store.satisfaction(group, DAY, DAY)["rows"] if r["key"] == key)


# ------------------------------------------------------------------ the policy


def test_a_forged_rating_naming_a_real_counter_and_an_invented_officer_is_stored_not_counted(store):
    before = figures(store)
    forged = [event(seq=1, device="evil-1", officer="invented", score=1, reason="Khác"),
              event(seq=2, device="evil-1", officer="invented", score=1, flags=["repeat"])]
    out = store.ingest([msg(ev) for ev in forged])
    # Stored (so acked, exactly once) and marked held; nothing a report or page shows moved.
    assert statuses(out) == ["stored", "stored"] and [o.held for o in out] == ["unregistered"] * 2
    assert figures(store) == before
    assert ratings_of(store, "invented") == 0
    assert [e["held"] for e in store.events(device="evil-1")] == ["unregistered"] * 2
    assert store.counts() == totals(events=3, held=2)
    assert store.held_devices() == [{"device": "evil-1", "site": "hcm", "counter": "1", "registered": None, "events": 2,
                             "ratings": 2, "first_received_ms": T0 + 500, "last_received_ms": T0 + 500}]
    assert_rollups_match_events(store)


def test_a_forged_rating_without_officer_is_not_attributed_to_the_counters_officer(store):
    (out,) = store.ingest([msg(event(seq=1, device="evil-1", officer=None, score=1))])
    assert out.held == "unregistered"
    (held,) = store.events(device="evil-1")
    assert (held["officer"], held["officer_source"]) == (None, None)
    assert ratings_of(store, "off-1") == 1  # only the real device's rating
    assert store.satisfaction("officer", DAY, DAY)["rows"][0]["counts"] == {"1": 0, "2": 0, "3": 0, "4": 1}


def test_a_registered_device_claiming_another_counter_is_held_as_misbound(store):
    register(store, ("hcm", "2"))  # dev-a-hcm-2 serves hcm/2
    (out,) = store.ingest([msg(event(seq=1, device="dev-a-hcm-2", counter="1", officer=None))])
    assert out.held == "misbound: registered at hcm/2"
    assert ratings_of(store, "hcm/1", "counter") == 1 and ratings_of(store, "off-1") == 1
    assert store.held_devices() == [{"device": "dev-a-hcm-2", "site": "hcm", "counter": "1",
                             "registered": {"site": "hcm", "counter": "2"}, "events": 1, "ratings": 1,
                             "first_received_ms": T0 + 500, "last_received_ms": T0 + 500}]


def test_a_resend_of_a_held_event_is_a_duplicate_not_held_twice(store):
    ev = event(seq=1, device="evil-1")
    assert statuses(store.ingest([msg(ev), msg(ev)])) == ["stored", "duplicate"]
    (again,) = store.ingest([msg(ev, received_ms=T0 + 9_000)])
    assert (again.status, again.event) == ("duplicate", ev)
    assert store.counts() == totals(events=2, duplicates=2, held=1)
    assert store.held_devices()[0]["events"] == 1


def test_registering_later_does_not_count_what_is_held_nor_move_what_was_counted(store):
    store.ingest([msg(event(seq=1, device="pi-new", officer=None))])
    store.register_device("pi-new", "hcm", "1")
    assert ratings_of(store, "hcm/1", "counter") == 1  # registering alone counts nothing held
    store.ingest([msg(event(seq=2, device="pi-new", officer=None))])
    assert ratings_of(store, "hcm/1", "counter") == 2  # from now on its events count
    store.register_device("pi-new", "hcm", "2")  # moved: what it sent from hcm/1 stays counted there
    assert ratings_of(store, "hcm/1", "counter") == 2 and ratings_of(store, "hcm/2", "counter") == 0
    assert [e["held"] for e in store.events(device="pi-new")] == ["unregistered", None]


# ----------------------------------------------------------- approve, discard


def test_approve_registers_the_device_and_counts_its_held_events_by_their_time(store):
    store.assign("hcm", "1", "off-2", T0 + 60_000)  # off-2 took over a minute after T0
    held = [event(seq=1, device="pi-new", officer=None, score=1, ts=T0 + 1_000),
            event(seq=2, device="pi-new", officer=None, score=2, ts=T0 + 120_000),
            event(seq=3, device="pi-new", officer="off-9", score=3, ts=T0 + 120_000),
            event("call", seq=4, device="pi-new", officer=None, ts=T0 + 120_000)]
    store.ingest([msg(ev) for ev in held])
    before = store.satisfaction("officer", DAY, DAY)["rows"]
    assert store.approve_device("pi-new") == {"device": "pi-new", "site": "hcm", "counter": "1", "counted": 4}
    after = {r["key"]: r for r in store.satisfaction("officer", DAY, DAY)["rows"]}
    # Exactly the held events, attributed as if they had arrived registered.
    assert {r["key"]: r["ratings"] for r in before} == {"off-1": 1}
    assert {k: r["ratings"] for k, r in after.items()} == {"off-1": 2, "off-2": 1, "off-9": 1}
    assert after["off-1"]["counts"] == {"1": 1, "2": 0, "3": 0, "4": 1} and after["off-2"]["served"] == 1
    assert [(e["officer"], e["officer_source"], e["held"]) for e in store.events(device="pi-new")] == [
        ("off-1", "assignment", None), ("off-2", "assignment", None), ("off-9", "event", None),
        ("off-2", "assignment", None)]
    assert store.device("pi-new")["registered"] and store.counter("hcm", "1")["device"] == "pi-new"
    assert store.counts() == totals(events=5, held=0) and store.held_devices() == []
    assert_rollups_match_events(store)
    with pytest.raises(NothingHeld):
        store.approve_device("pi-new")  # nothing left to approve


def test_approve_refuses_a_device_whose_held_events_name_several_counters(store):
    store.ingest([msg(event(seq=1, device="pi-new", counter="5")), msg(event(seq=2, device="pi-new", counter="6")),
                  msg(event(seq=3, device="pi-new", counter="6"))])
    with pytest.raises(Ambiguous, match="hcm/5, hcm/6"):
        store.approve_device("pi-new")
    assert issubclass(Ambiguous, ValueError) and issubclass(NothingHeld, LookupError)
    with pytest.raises(ValueError):
        store.approve_device("pi-new", site="hcm")
    with pytest.raises(NothingHeld):
        store.approve_device("pi-new", "hcm", "7")
    assert store.approve_device("pi-new", "hcm", "6")["counted"] == 2
    assert ratings_of(store, "hcm/6", "counter") == 2 and ratings_of(store, "hcm/5", "counter") == 0
    (left,) = store.held_devices()
    assert (left["counter"], left["events"], left["registered"]) == ("5", 1, {"site": "hcm", "counter": "6"})
    assert store.counts()["held"] == 1
    with pytest.raises(NothingHeld):
        store.approve_device("nobody")


def test_discarded_events_are_kept_for_audit_and_never_counted(store):
    store.ingest([msg(event(seq=1, device="evil-1")), msg(event(seq=2, device="evil-1", counter="2"))])
    before = figures(store)
    assert store.discard_held("evil-1", T0 + 60_000, site="hcm", counter="2") == {"device": "evil-1",
                                                                                   "discarded": 1}
    assert store.discard_held("evil-1", T0 + 70_000) == {"device": "evil-1", "discarded": 1}
    assert [(e["held"], e["discarded_ms"]) for e in store.events(held=True)] == [
        ("unregistered", T0 + 70_000), ("unregistered", T0 + 60_000)]
    assert store.held_devices() == [] and store.counts() == totals(events=3, held=0)
    for refused in (lambda: store.approve_device("evil-1"), lambda: store.discard_held("evil-1", T0)):
        with pytest.raises(NothingHeld):
            refused()
    with pytest.raises(ValueError):
        store.discard_held("evil-1", -1)
    assert figures(store) == before
    # Still unknown: what it sends next is held again, not counted.
    (out,) = store.ingest([msg(event(seq=3, device="evil-1"))])
    assert out.held == "unregistered" and figures(store) == before
    assert [e["seq"] for e in store.events(held=False)] == [1]


def test_held_events_are_re_timed_and_counted_on_their_corrected_day_when_approved(store):
    # Recorded late on the 26th by a Pi without a clock, received on the 27th: held, arrival time.
    late = event(seq=1, device="pi-new", ts=1000, clock_ok=False, boot="b", mono=50.0, officer=None)
    store.ingest([msg(late, received_ms=T0)])
    store.ingest([msg(event(seq=2, device="pi-new", ts=1732640370000 + 350_000, boot="b", mono=400.0))])
    first = store.events(device="pi-new")[0]
    assert (first["ts"], first["ts_source"], first["day"], first["held"]) == (
        1732640370000, "corrected", "2024-11-26", "unregistered")
    assert store.satisfaction("site", "2024-11-26", "2024-11-26")["rows"] == []
    store.approve_device("pi-new")
    (day26,) = store.satisfaction("site", "2024-11-26", "2024-11-26")["rows"]
    assert day26["ratings"] == 1
    assert_rollups_match_events(store)


# ---------------------------------------------------------------- dead letters


def test_an_8_mib_payload_is_kept_as_a_4_kib_prefix_with_its_size_and_hash(store):
    payload = b'{"pad":"' + "ạ".encode() * (8 * 2**20 // 3) + b'"}'
    (out,) = store.ingest([Incoming("evil-1", payload, T0)])
    assert out.status == "rejected"
    (letter,) = store.dead_letters()
    assert (letter["size"], letter["sha256"], letter["truncated"]) == (
        len(payload), hashlib.sha256(payload).hexdigest(), True)
    kept = letter["payload"].encode()
    assert len(kept) <= 4096 and payload.startswith(kept)  # cut between characters: still text
    assert (letter["encoding"], len(kept)) == ("utf-8", 4094)
    db = raw_connection(store)
    try:
        assert db.execute("SELECT length(payload) FROM dead_letters").fetchone()[0] == 4094
    finally:
        db.close()


def test_a_binary_prefix_is_cut_at_the_limit():
    payload = bytes(range(256)) * 40
    assert deadletters.prefix(payload) == payload[:4096]
    assert deadletters.prefix(b"short") == b"short"


def test_the_dead_letter_table_keeps_the_newest_and_counts_what_it_drops(store, monkeypatch):
    monkeypatch.setattr(deadletters, "MAX_ROWS", 3)
    store.ingest([Incoming("evil-1", b"{%d" % i, T0 + i) for i in range(2)])
    assert store.counts() == totals(events=1, rejected=2, dead_letters=2)
    store.ingest([Incoming("evil-1", b"{%d" % i, T0 + i) for i in range(2, 6)])
    assert [letter["payload"] for letter in store.dead_letters()] == ["{5", "{4", "{3"]
    assert store.counts() == totals(events=1, rejected=6, dead_letters=3, dead_letters_dropped=3)


# ------------------------------------------------- conflicts, the device list


def test_a_conflicting_duplicate_is_counted_as_a_conflict_not_as_a_duplicate(store):
    ev = event(seq=2, score=4)
    store.ingest([msg(ev)])
    out = store.ingest([msg(ev), msg(dict(ev, score=1))])
    assert statuses(out) == ["duplicate", "conflict"] and out[1].event == ev
    assert store.counts() == totals(events=2, duplicates=1, conflicts=1, dead_letters=1)
    (letter,) = store.dead_letters()
    assert letter["reason"].startswith("conflicting duplicate") and (letter["ledger"], letter["seq"]) == (LEDGER, 2)


def test_a_device_is_listed_once_it_sent_one_valid_message(store):
    store.ingest([Incoming("junk-1", b"{nope", T0), msg(event(seq=1, device="dev-b"), device="junk-1")])
    assert [d["device"] for d in store.devices()] == ["dev-a"]
    store.ingest([Incoming("junk-1", b"{nope", T0 + 5), msg(event(seq=1, device="junk-1"), received_ms=T0 + 7)])
    junk = store.device("junk-1")
    assert (junk["registered"], junk["site"], junk["first_seen_ms"], junk["last_seen_ms"]) == (
        False, "hcm", T0 + 7, T0 + 7)


# ------------------------------------------------------------------ migration


def test_migration_3_tidies_totals_dead_letters_and_devices(tmp_path):
    # A store as release 2 left it (migrations 1 and 2), holding what the old code wrote.
    path = tmp_path / "v2.db"
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("BEGIN")
    MIGRATIONS[0](raw)
    MIGRATIONS[1](raw)
    big = b'{"x":"' + b"y" * 10_000 + b'"}'
    raw.executemany("INSERT INTO dead_letters (received_ms, device, reason, payload) VALUES (?, ?, ?, ?)",
                    [(T0, "junk", "invalid JSON", big), (T0, "pi-1", "conflicting duplicate: ...", b"{}")])
    raw.execute("UPDATE totals SET n = CASE name WHEN 'events' THEN 1 WHEN 'duplicates' THEN 3"
                " WHEN 'rejected' THEN 1 WHEN 'dead_letters' THEN 2 END")
    raw.execute("INSERT INTO devices (id, registered, first_seen_ms, last_seen_ms) VALUES ('junk', 0, ?, ?)",
                (T0, T0))
    raw.execute("INSERT INTO devices (id, registered, online) VALUES ('ghost', 0, 1)")
    raw.execute("INSERT INTO devices (id, registered, site, counter) VALUES ('pi-1', 0, 'hcm', '1')")
    raw.execute("PRAGMA user_version = 2")
    raw.execute("COMMIT")
    raw.close()
    with Store.open(path) as s:
        # The conflict the old code counted as a duplicate is a conflict now (it was dead-lettered).
        assert s.counts() == totals(events=1, duplicates=2, conflicts=1, rejected=1, dead_letters=2)
        assert [d["device"] for d in s.devices()] == ["ghost", "pi-1"]  # junk only ever sent garbage
        conflict, old = s.dead_letters()
        assert (old["size"], old["truncated"], len(old["payload"])) == (len(big), True, 4096)
        assert old["sha256"] == hashlib.sha256(big).hexdigest()
        assert (conflict["size"], conflict["truncated"]) == (2, False)


# ------------------------------------------------ the registry: one device per counter


def test_the_device_at_a_counter_is_only_ever_its_registered_device(store):
    # evil-1 claims hcm/3, where nobody is registered: an assignment there must go nowhere,
    # not to the claimant's topic with the officer's name in it.
    store.ingest([msg(event(seq=1, device="evil-1", counter="3"))])
    assert store.device_at("hcm", "3") is None
    # Nor does it win a counter that has a registered device, or a counter whose row names none.
    store.ingest([msg(event(seq=2, device="evil-1", counter="1"))])
    assert store.device_at("hcm", "1") == "dev-a"
    store.upsert_counter("hcm", "4", "Quầy 4")
    store.ingest([msg(event(seq=3, device="evil-1", counter="4"))])
    assert store.device_at("hcm", "4") is None
    store.register_device("pi-4", "hcm", "4")
    assert store.device_at("hcm", "4") == "pi-4"
    store.register_device("pi-4", "hcm", "5")  # moved away: the counter has no device again
    assert (store.device_at("hcm", "4"), store.device_at("hcm", "5")) == (None, "pi-4")


@pytest.mark.parametrize("how", ["register_device", "upsert_counter", "approve_device"])
def test_registering_a_device_at_a_counter_unbinds_the_one_that_was_there(store, how):
    store.ingest([msg(event(seq=2, device="pi-new", officer=None))])  # held: pi-new is unknown so far
    if how == "register_device":
        store.register_device("pi-new", "hcm", "1")
    elif how == "upsert_counter":
        store.upsert_counter("hcm", "1", "Quầy 1", device="pi-new")
    else:
        store.approve_device("pi-new")
    old = store.device("dev-a")
    assert (old["registered"], store.device("pi-new")["registered"]) == (False, True)
    assert store.counter("hcm", "1")["device"] == store.device_at("hcm", "1") == "pi-new"
    counted = ratings_of(store, "hcm/1", "counter")
    # The replaced device's events are held from now on; the one it sent before stays counted.
    (out,) = store.ingest([msg(event(seq=3, device="dev-a", officer=None))])
    assert out.held == "unregistered"
    assert ratings_of(store, "hcm/1", "counter") == counted and ratings_of(store, "off-1") == counted
    assert [e["held"] for e in store.events(device="dev-a")] == [None, "unregistered"]
    (out,) = store.ingest([msg(event(seq=4, device="pi-new", officer=None))])
    assert out.held is None and ratings_of(store, "hcm/1", "counter") == counted + 1
    assert_rollups_match_events(store)


def test_re_registering_the_same_device_keeps_it_bound(store):
    store.register_device("dev-a", "hcm", "1")
    store.upsert_counter("hcm", "1", "Quầy 1", device="dev-a")
    assert store.device("dev-a")["registered"] and store.device_at("hcm", "1") == "dev-a"
    (out,) = store.ingest([msg(event(seq=2))])
    assert out.held is None


def test_migration_4_leaves_one_registered_device_per_counter(tmp_path):
    # A store as migration 3 left it, where a replaced Pi stayed registered at its counter.
    path = tmp_path / "v3.db"
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("BEGIN")
    for migration in MIGRATIONS[:3]:
        migration(raw)
    raw.executemany("INSERT INTO counters (site, counter, name, device) VALUES (?, ?, '', ?)",
                    [("hcm", "1", "pi-new"), ("hcm", "2", "pi-2"), ("hcm", "3", None)])
    raw.executemany("INSERT INTO devices (id, registered, site, counter) VALUES (?, ?, ?, ?)",
                    [("pi-old", 1, "hcm", "1"), ("pi-new", 1, "hcm", "1"), ("pi-2", 1, "hcm", "2"),
                     ("pi-3", 1, "hcm", "3"), ("stray", 0, "hcm", "2")])
    raw.execute("PRAGMA user_version = 3")
    raw.execute("COMMIT")
    raw.close()
    with Store.open(path) as s:
        assert {d["device"]: d["registered"] for d in s.devices()} == {
            "pi-old": False, "pi-new": True, "pi-2": True, "pi-3": True, "stray": False}
        assert [s.device_at("hcm", c) for c in "123"] == ["pi-new", "pi-2", "pi-3"]
        (out,) = s.ingest([msg(event(seq=1, device="pi-old", officer=None))])
        assert out.held == "unregistered"
