"""The queue's store (migration 5): numbers unique under concurrent writers, takes exactly once in the
ingest batch, calls that finish and call tickets. Real SQLite files; no broker."""
from __future__ import annotations

import threading

import pytest

from broker.store import QueueRefusal, Store
from broker.store.batch import Incoming
from protocol.codec import encode
from protocol.events import make_event

DAY = "2026-11-18"
T0 = 1_794_972_600_000  # 2026-11-18 10:30 in Hà Nội (DAY)


@pytest.fixture
def store(store_url):
    with Store.open(store_url) as s:  # SQLite, then PostgreSQL (conftest's store_url)
        s.upsert_site("s1", "UBND xã")
        s.upsert_queue("s1", "A", "Đất đai", "A")
        s.upsert_queue("s1", "B", "Tư pháp", "B")
        s.register_device("kiosk-1", "s1", "kiosk")
        s.register_device("dev-1", "s1", "1")
        s.set_counter_queues("s1", "1", ["A", "B"])
        yield s


def ev(type_: str, device: str, counter: str, seq: int, ts: int, **fields) -> dict:
    return make_event(type_, device=device, site="s1", counter=counter, ledger="0123456789abcdef", seq=seq, ts=ts,
                      clock_ok=True, boot="b", mono=float(seq), **fields)


def take(seq: int, ticket: str, ts: int = T0, device: str = "kiosk-1", priority: bool = False) -> dict:
    queue = ticket[0]
    return ev("take", device, "kiosk", seq, ts, ticket=ticket, queue=queue, priority=priority, source="block",
              date=DAY)


def ingest(store: Store, *events: dict, received_ms: int = T0):
    return store.ingest([Incoming(e["device"], encode(e), received_ms) for e in events])


def test_numbers_are_unique_across_writers_requests_and_blocks(store_url, store):
    other = Store.open(store_url)  # a second service process on the same file or database
    handed: list[int] = []
    lock = threading.Lock()

    def work(s: Store, device: str) -> None:
        for i in range(30):
            if i % 5 == 0:
                got = s.reserve_block(device, f"{i:08x}", "s1", DAY, "A", 7, T0)
                numbers = list(range(got["first"], got["last"] + 1))
            else:
                numbers = [s.allocate_number(device, f"{i:08x}", "s1", DAY, "A", False, T0)["number"]]
            with lock:
                handed.extend(numbers)

    try:
        threads = [threading.Thread(target=work, args=(s, d)) for s, d in ((store, "kiosk-1"), (other, "kiosk-2"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        other.close()
    assert len(handed) == 2 * (6 * 7 + 24)
    assert sorted(handed) == list(range(1, len(handed) + 1))  # unique, and no gap either
    assert store.allocate_number("kiosk-1", "ffffffff", "s1", "2026-11-19", "A", False, T0)["ticket"] == "A001"


def test_a_redelivered_request_gets_the_same_numbers_and_the_day_ends_at_999(store):
    first = store.reserve_block("kiosk-1", "00000001", "s1", DAY, "B", 995, T0)
    assert store.reserve_block("kiosk-1", "00000001", "s1", DAY, "B", 995, T0) == first
    assert store.reserve_block("kiosk-1", "00000002", "s1", DAY, "B", 10, T0)["last"] == 999  # what is left
    with pytest.raises(QueueRefusal, match="all 999 numbers"):
        store.allocate_number("kiosk-1", "00000003", "s1", DAY, "B", False, T0)
    with pytest.raises(QueueRefusal, match="unknown queue 'Z'"):
        store.allocate_number("kiosk-1", "00000004", "s1", DAY, "Z", False, T0)
    assert [b["first"] for b in store.blocks("s1", DAY)] == [1, 996]


def test_takes_are_stored_once_and_a_clash_in_the_same_batch_is_refused(store):
    out = ingest(store, take(1, "A001"), take(2, "A001"), take(1, "A001"))
    assert [o.status for o in out] == ["stored", "rejected", "duplicate"]
    assert "A001 of 2026-11-18" in out[1].reason and "already held" in out[1].reason
    assert [t["ticket"] for t in store.tickets("s1", DAY)] == ["A001"]
    assert store.dead_letters(10, 0)[0]["seq"] == 2
    assert [o.status for o in ingest(store, take(1, "A001"))] == ["duplicate"]
    assert len(store.tickets("s1", DAY)) == 1


def test_a_held_kiosk_makes_no_ticket(store):
    (out,) = ingest(store, take(1, "A005", device="kiosk-9"))
    assert out.status == "stored" and out.held is not None
    assert store.tickets("s1", DAY) == []


def test_a_replayed_next_finishes_the_ticket_but_calls_nobody(store):
    ingest(store, take(1, "A001"), take(2, "B001", ts=T0 + 1000, priority=True))
    ingest(store, ev("call", "dev-1", "1", 1, T0 + 5000, action="next"))
    assert store.queue_call("dev-1", "0123456789abcdef", 1, live=True)["ticket"] == "B001"  # priority first
    ingest(store, ev("call", "dev-1", "1", 2, T0 + 9000, action="next"))
    assert store.queue_call("dev-1", "0123456789abcdef", 2, live=False) == {"ticket": None, "call": None}
    got = {t["ticket"]: t for t in store.tickets("s1", DAY)}
    assert (got["B001"]["status"], got["B001"]["done_ts"]) == ("done", T0 + 9000)
    assert got["A001"]["status"] == "waiting"
    assert store.queue_call("dev-1", "0123456789abcdef", 99, live=True) is None  # no such call event


def test_waiting_stats_refuse_a_bad_group_or_period(store):
    with pytest.raises(ValueError, match="group must be one of queue, officer, counter, site"):
        store.waiting_stats("hour", DAY, DAY)
    with pytest.raises(ValueError, match="is after"):
        store.waiting_stats("site", "2026-11-19", DAY)
    assert store.waiting_stats("site", DAY, DAY) == []
