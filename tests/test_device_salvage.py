"""Votes stranded in a quarantined ledger are rescued, sent once, and what is lost is counted."""
from __future__ import annotations

import hashlib
import sqlite3
import struct
import threading
import time
from pathlib import Path


from device.ledger import Ledger
from device.salvage import Salvage, quarantined_files, read_quarantined, wal_pages
from tests.support import DeviceProcess, write_config
from tests.test_device_power import service  # noqa: F401  (fixture: the real service, dev-1 registered)

EVENT = {"v": 1, "type": "rating", "device": "dev-1", "site": "s", "counter": "1", "ts": 1_700_000_000_000,
         "clock_ok": True, "boot": "b", "mono": 1.0, "officer": None, "ticket": None, "score": 3, "scale": 4,
         "flags": [], "reason": "x" * 150}


def poll(condition, what: str, timeout: float = 15.0) -> None:
    """For state only the store holds: nothing notifies us when telemetry lands there."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        threading.Event().wait(0.05)


def digest(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir()) if p.is_file()}


def table_leaves(path: Path, table: str = "events") -> list[int]:
    """The leaf pages of a table's b-tree (one interior level is enough for these small ledgers)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    (root,) = db.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)).fetchone()
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    db.close()
    data = path.read_bytes()
    page = data[(root - 1) * page_size:root * page_size]
    assert page[0] == 0x05, "the table fits in one page: store more events"
    cells = struct.unpack(">H", page[3:5])[0]
    pointers = [struct.unpack(">H", page[12 + 2 * i:14 + 2 * i])[0] for i in range(cells)]
    children = [struct.unpack(">I", page[p:p + 4])[0] for p in pointers]
    return children + [struct.unpack(">I", page[8:12])[0]]


def smash_page(path: Path, page_no: int) -> None:
    """Overwrite a page's b-tree header: SQLite calls the page (and so the file) malformed."""
    page_size = sqlite3.connect(path).execute("PRAGMA page_size").fetchone()[0]
    with open(path, "r+b") as f:
        f.seek((page_no - 1) * page_size)
        f.write(b"\xff" * 16)


def make_ledger(path: Path, n: int, acked: int = 0) -> list[dict]:
    with Ledger.open(path) as ledger:
        events = [ledger.append(EVENT) for _ in range(n)]
        ledger.acknowledge(ledger.ledger_id, range(1, acked + 1))
    return events[acked:]


def test_a_damaged_page_costs_its_rows_only_and_the_file_is_never_touched(tmp_path):
    path = tmp_path / "ledger.db"
    unsent = make_ledger(path, 60)
    leaves = table_leaves(path)
    smash_page(path, leaves[1])
    before = digest(tmp_path)
    rescue = read_quarantined(path)
    assert digest(tmp_path) == before, "salvage must not modify the quarantined file"
    got = {e["seq"]: e for e in rescue.events}
    assert rescue.ledger == unsent[0]["ledger"]
    assert 0 < rescue.unreadable < 30 and len(got) + rescue.unreadable == 60
    assert all(got[e["seq"]] == e for e in unsent if e["seq"] in got)
    assert rescue.problems


def test_acked_events_are_not_rescued_and_a_wal_without_its_database_is_read(tmp_path):
    path = tmp_path / "ledger.db"
    unsent = make_ledger(path, 10, acked=4)
    assert [e["seq"] for e in read_quarantined(path).events] == [e["seq"] for e in unsent]
    # A -wal alone: SQLite would throw it away with every vote in it.
    db = sqlite3.connect(tmp_path / "w.db")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA wal_autocheckpoint=0")
    db.execute("ATTACH ? AS src", (str(path),))
    db.executescript("CREATE TABLE meta AS SELECT * FROM src.meta; CREATE TABLE events AS SELECT * FROM src.events;")
    db.execute("DETACH src")
    wal = (tmp_path / "w.db-wal").read_bytes()
    db.close()  # checkpoints and deletes the -wal; we kept its bytes
    alone = tmp_path / "ledger.db.corrupt-20260101T000000Z"
    Path(f"{alone}-wal").write_bytes(wal)
    assert wal_pages(wal)[:16] == b"SQLite format 3\x00"
    assert quarantined_files(tmp_path / "ledger.db") == [alone]
    rescue = read_quarantined(alone)
    assert [e["seq"] for e in rescue.events] == [e["seq"] for e in unsent] and rescue.unreadable == 0


def test_a_file_that_is_no_database_counts_as_unreadable(tmp_path):
    bad = tmp_path / "ledger.db.corrupt-20260101T000000Z"
    bad.write_bytes(b"not a database at all" * 300)
    rescue = read_quarantined(bad)
    assert rescue.events == [] and rescue.unreadable == 1 and rescue.ledger is None


def test_each_quarantined_file_is_read_once_and_acks_end_the_rescue(tmp_path):
    path = tmp_path / "ledger.db"
    unsent = make_ledger(path, 5)
    path.rename(tmp_path / "ledger.db.corrupt-20260101T000000Z")
    salvage = Salvage.open(path)
    ((_, rescue),) = salvage.scan()
    assert len(rescue.events) == 5 and salvage.scan() == []
    (lid,) = salvage.ledgers()
    assert salvage.pending(lid, after_seq=2, limit=10) == unsent[2:]
    assert salvage.acknowledge(lid, [1, 2, 99]) == [1, 2] and salvage.acknowledge("f" * 16, [3]) == []
    assert salvage.figures() == {"salvaged": 5, "salvage_pending": 3, "salvage_unreadable": 0}
    salvage.close()
    reopened = Salvage.open(path)
    assert reopened.scan() == [] and len(reopened.pending(lid)) == 3
    reopened.close()


def test_stranded_votes_reach_the_service_once_and_the_loss_is_reported(tmp_path, mosquitto, service):
    store = service
    cfg = write_config(tmp_path, mosquitto, extra="[rating]\nrepeat_gap_s = 0\n[telemetry]\ninterval_s = 1\n")
    ledger = tmp_path / "data" / "ledger.db"
    mosquitto.stop()  # the presses stay unsent in the ledger
    dev = DeviceProcess(cfg)
    dev.wait_ready()
    dev.send(*[f"press {1 + i % 4}" for i in range(60)])
    dev.wait("stored", lambda v: len(v) == 60)
    assert dev.quit() == 0
    reported = {(e["ledger"], e["seq"]): e for e in dev.stored()}
    smash_page(ledger, table_leaves(ledger)[1])  # the SD card rots one page

    mosquitto.start()
    dev = DeviceProcess(cfg)
    try:
        dev.wait_ready()
        assert len(dev.of("quarantined")) == 1
        (rescue,) = dev.of("salvage")
        assert rescue["events"] + rescue["unreadable"] == 60 and rescue["unreadable"] > 0
        dev.wait("salvage_acked", lambda v: sum(map(len, v)) == rescue["events"], timeout=30)
        dev.send("press 4")  # the new ledger works alongside
        dev.wait("acked")
        got = [e["event"] for e in store.events(device="dev-1", limit=1000)]
        old = {(e["ledger"], e["seq"]): e for e in got if (e["ledger"], e["seq"]) in reported}
        assert len(old) == rescue["events"] == len(got) - 1, "each readable vote stored exactly once"
        assert all(reported[k] == e for k, e in old.items()), "rescued votes arrive unchanged"
        assert store.counts()["duplicates"] == 0
        health = {"salvaged": rescue["events"], "pending": 0, "unreadable": rescue["unreadable"]}
        poll(lambda: (store.device("dev-1") or {}).get("salvage") == health, f"fleet health showing {health}")
        assert dev.quit() == 0
    finally:
        dev.close()
    # Started again, it neither reads the quarantined file again nor re-sends anything.
    dev = DeviceProcess(cfg)
    try:
        dev.wait_ready()
        dev.wait("online", lambda v: v[-1] is True)
        assert dev.of("salvage") == [] and dev.of("quarantined") == []
        assert dev.quit() == 0
    finally:
        dev.close()
    assert len(store.events(device="dev-1", limit=1000)) == rescue["events"] + 1
