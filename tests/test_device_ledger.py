from __future__ import annotations

import json
import os
import queue
import random
import re
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from device.ledger import Ledger, LedgerCorrupt, LedgerError

REPO = Path(__file__).resolve().parents[1]
CHILD = Path(__file__).with_name("ledger_crash_child.py")


def vote(rating: int = 5, **extra) -> dict:
    # The counter passes placeholders so "ledger"/"seq" land in canonical position.
    return {"type": "vote", "ledger": None, "seq": None, "rating": rating, **extra}


@pytest.fixture
def path(tmp_path):
    return tmp_path / "data" / "ledger.db"


@pytest.fixture
def ledger(path):
    with Ledger.open(path) as led:
        yield led


def stored(path: Path) -> dict[int, dict]:
    """Every event in the file, read with plain sqlite3 (independent of Ledger)."""
    db = sqlite3.connect(path)
    try:
        return {seq: json.loads(body) for seq, body in db.execute("SELECT seq, body FROM events ORDER BY seq")}
    finally:
        db.close()


# ----------------------------------------------------------------- append


def test_append_assigns_seqs_and_is_durable_on_return(ledger, path):
    events = [ledger.append(vote(r)) for r in (5, 4, 3)]

    assert [e["seq"] for e in events] == [1, 2, 3]
    assert all(e["ledger"] == ledger.ledger_id for e in events)
    assert re.fullmatch(r"[0-9a-f]{16}", ledger.ledger_id)
    # A second connection sees them while the ledger is still open: committed.
    assert stored(path) == {e["seq"]: e for e in events}
    assert ledger.backlog() == 3 and ledger.last_seq() == 3


def test_append_keeps_the_callers_key_order(ledger):
    body = {"type": "vote", "ledger": None, "seq": None, "rating": 1, "note": "Tốt"}
    event = ledger.append(body)

    assert list(event) == ["type", "ledger", "seq", "rating", "note"]
    assert list(ledger.pending()[0]) == list(event)
    assert ledger.pending()[0]["note"] == "Tốt"
    assert body["seq"] is None  # the caller's dict is not modified

    bare = ledger.append({"type": "heartbeat"})
    assert list(bare) == ["type", "ledger", "seq"]


def test_append_rejects_what_json_cannot_carry(ledger):
    with pytest.raises(ValueError):
        ledger.append(vote(score=float("nan")))
    with pytest.raises(TypeError):
        ledger.append(vote(when=object()))
    # A failed append leaves no gap and no half-written event.
    assert ledger.append(vote())["seq"] == 1
    assert ledger.backlog() == 1


def test_seqs_are_never_reused_after_ack_and_reopen(path):
    with Ledger.open(path) as led:
        ids = [led.append(vote())["seq"] for _ in range(3)]
        assert led.acknowledge(led.ledger_id, ids) == [1, 2, 3]
        assert led.backlog() == 0 and led.last_seq() == 3
        first_id = led.ledger_id

    with Ledger.open(path) as led:
        assert led.ledger_id == first_id
        assert led.last_seq() == 3
        assert led.append(vote())["seq"] == 4


def test_a_new_file_gets_a_new_ledger_id(tmp_path):
    with Ledger.open(tmp_path / "a.db") as a:
        a.append(vote())
        old = a.ledger_id
    (tmp_path / "a.db").unlink()  # SD card wiped
    with Ledger.open(tmp_path / "a.db") as again, Ledger.open(tmp_path / "b.db") as b:
        assert len({old, again.ledger_id, b.ledger_id}) == 3
        assert again.append(vote())["seq"] == 1


def test_connection_is_wal_with_full_sync_and_schema_versioned(ledger):
    conn = ledger._conn
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] > 0


def test_meta_round_trips_and_protects_ledger_keys(path):
    with Ledger.open(path) as led:
        assert led.get_meta("device_id") is None
        assert led.get_meta("device_id", "x") == "x"
        led.set_meta("device_id", "hn-q1-03")
        for key in ("ledger_id", "next_seq"):
            with pytest.raises(ValueError):
                led.set_meta(key, "1")
    with Ledger.open(path) as led:
        assert led.get_meta("device_id") == "hn-q1-03"


def test_closed_ledger_raises_typed_error(path):
    led = Ledger.open(path)
    led.close()
    led.close()  # idempotent
    with pytest.raises(LedgerError):
        led.append(vote())


# ---------------------------------------------------------------- pending


def test_pending_order_limit_and_after_seq(ledger):
    for r in range(1, 6):
        ledger.append(vote(r))

    assert [e["seq"] for e in ledger.pending()] == [1, 2, 3, 4, 5]
    assert [e["seq"] for e in ledger.pending(limit=2)] == [1, 2]
    assert [e["seq"] for e in ledger.pending(after_seq=2, limit=2)] == [3, 4]
    assert ledger.pending(after_seq=5) == []
    assert ledger.pending(limit=0) == []
    ledger.acknowledge(ledger.ledger_id, [2])
    assert [e["seq"] for e in ledger.pending()] == [1, 3, 4, 5]


def test_held_event_blocks_later_ones_until_finalized(ledger):
    ledger.append(vote(5))
    ledger.append(vote(1, reason=None), held=True)
    ledger.append(vote(4))

    assert [e["seq"] for e in ledger.pending()] == [1]
    assert ledger.pending(after_seq=1) == []
    assert ledger.backlog() == 3

    final = ledger.finalize_held({"reason": "slow", "extra": True})
    assert final["seq"] == 2 and final["reason"] == "slow"
    assert list(final) == ["type", "ledger", "seq", "rating", "reason", "extra"]
    assert [e["seq"] for e in ledger.pending()] == [1, 2, 3]
    assert ledger.pending()[1] == final
    assert ledger.finalize_held({"reason": "late"}) is None


def test_finalize_held_without_updates_and_identity_is_protected(ledger):
    held = ledger.append(vote(2, reason=None), held=True)
    with pytest.raises(ValueError):
        ledger.finalize_held({"seq": 99})
    assert ledger.finalize_held() == held


def test_second_held_event_finalizes_the_first_unchanged(ledger):
    first = ledger.append(vote(1, reason=None), held=True)
    ledger.append(vote(2, reason=None), held=True)

    assert ledger.pending() == [first]
    assert ledger.finalize_held({"reason": "rude"})["seq"] == 2
    assert [e["seq"] for e in ledger.pending()] == [1, 2]


def test_event_left_held_by_a_crash_is_finalized_on_open(path):
    led = Ledger.open(path)
    held = led.append(vote(1, reason=None), held=True)
    led.append(vote(5))
    led._conn.close()  # no finalize, no clean shutdown

    with Ledger.open(path) as led:
        assert led.pending() == [held, {**vote(5), "ledger": led.ledger_id, "seq": 2}]
        assert led.finalize_held({"reason": "x"}) is None


# ------------------------------------------------------------ acknowledge


def test_acknowledge_for_another_ledger_deletes_nothing(ledger):
    ledger.append(vote())
    assert ledger.acknowledge("0123456789abcdef", [1]) == []
    assert ledger.backlog() == 1


def test_acknowledge_partial_duplicate_and_unknown(ledger):
    for _ in range(5):
        ledger.append(vote())

    assert ledger.acknowledge(ledger.ledger_id, [4, 2, 2, 99, 0]) == [2, 4]
    assert ledger.acknowledge(ledger.ledger_id, [2, 4]) == []
    assert ledger.acknowledge(ledger.ledger_id, iter([1])) == [1]
    assert [e["seq"] for e in ledger.pending()] == [3, 5]
    assert ledger.backlog() == 2


def test_acknowledging_a_held_event_is_ignored(ledger):
    ledger.append(vote(1), held=True)
    assert ledger.acknowledge(ledger.ledger_id, [1]) == []
    assert ledger.backlog() == 1
    ledger.finalize_held({"reason": "x"})
    assert ledger.acknowledge(ledger.ledger_id, [1]) == [1]


# ------------------------------------------------------------- corruption


def populated(path: Path, n: int = 200) -> str:
    with Ledger.open(path) as led:
        for i in range(n):
            led.append(vote(i % 5 + 1, note="x" * 40))
        return led.ledger_id


def garbage(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(random.Random(7).randbytes(20_000))


def truncated(path: Path) -> None:
    populated(path)
    Path(f"{path}-wal").unlink(missing_ok=True)
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)


def tables_missing(path: Path) -> None:
    populated(path, n=3)
    db = sqlite3.connect(path)
    db.execute("DROP TABLE events")
    db.commit()
    db.close()


def foreign_database(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY)")
    db.commit()
    db.close()


def newer_schema(path: Path) -> None:
    populated(path, n=3)
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 7")
    db.close()


@pytest.mark.parametrize("damage", [garbage, truncated, tables_missing, foreign_database, newer_schema])
def test_unusable_file_is_quarantined_and_replaced(path, damage):
    damage(path)
    original = path.read_bytes()
    calls = []

    with Ledger.open(path, on_quarantine=lambda moved, why: calls.append((moved, why))) as led:
        [(moved, why)] = calls
        assert moved == led.quarantined and why
        assert led.quarantined.parent == path.parent
        assert re.fullmatch(r"ledger\.db\.corrupt-\d{8}T\d{6}Z", led.quarantined.name)
        assert led.quarantined.read_bytes() == original  # kept, byte for byte
        assert led.append(vote())["seq"] == 1
        assert led.check() == "ok"
        first_id = led.ledger_id

    with Ledger.open(path) as led:  # the fresh ledger is a normal ledger now
        assert led.quarantined is None and led.ledger_id == first_id
        assert led.backlog() == 1


def test_quarantine_moves_wal_siblings_and_names_stay_unique(path):
    moved = []
    for _ in range(3):
        garbage(path)
        Path(f"{path}-wal").write_bytes(b"stale wal")
        Path(f"{path}-shm").write_bytes(b"stale shm")
        Ledger.open(path, on_quarantine=lambda p, why: moved.append(p)).close()

    assert len(set(moved)) == 3
    for p in moved:
        assert p.exists()
        assert Path(f"{p}-wal").read_bytes() == b"stale wal"
        # -shm is only an index SQLite rebuilds from the -wal; it moves along
        # but its bytes are not evidence.
        assert Path(f"{p}-shm").exists()
    assert sorted(p.name for p in path.parent.iterdir() if p.name.startswith("ledger.db.corrupt")) == sorted(
        f"{p.name}{suffix}" for p in moved for suffix in ("", "-wal", "-shm")
    )


def test_wal_without_its_database_is_kept_not_silently_deleted(path):
    populated(path, n=3)
    led = Ledger.open(path)
    led.append(vote())
    wal = Path(f"{path}-wal").read_bytes()  # the newest vote lives only here until a checkpoint
    led.close()
    path.write_bytes(b"")  # the card lost the main file's contents
    Path(f"{path}-wal").write_bytes(wal)

    with Ledger.open(path) as led:
        assert led.quarantined.read_bytes() == b""
        assert Path(f"{led.quarantined}-wal").read_bytes() == wal
        assert led.backlog() == 0


def test_a_failing_quarantine_callback_does_not_leave_a_bad_file_behind(path):
    garbage(path)

    def boom(moved, why):
        raise OSError("syslog is down")

    with pytest.raises(OSError):
        Ledger.open(path, on_quarantine=boom)
    with Ledger.open(path) as led:  # the bad file was already moved aside
        assert led.quarantined is None and led.append(vote())["seq"] == 1


def test_failed_write_rolls_back_and_leaves_the_ledger_usable(ledger, path):
    ledger.append(vote())
    ledger._conn.execute("PRAGMA query_only = ON")  # stands in for a full or read-only card
    with pytest.raises(LedgerError):
        ledger.append(vote())
    ledger._conn.execute("PRAGMA query_only = OFF")
    assert ledger.append(vote())["seq"] == 2
    assert sorted(stored(path)) == [1, 2]


def test_healthy_ledger_is_not_quarantined(path):
    ledger_id = populated(path, n=5)
    calls = []
    with Ledger.open(path, on_quarantine=lambda *a: calls.append(a)) as led:
        assert led.ledger_id == ledger_id and led.quarantined is None and calls == []
        assert led.backlog() == 5 and led.check() == "ok"


def test_damage_while_running_is_reported_and_typed(path):
    populated(path)
    with Ledger.open(path) as led:
        # Another writer makes the ledger drop its page cache at its next
        # read, so it really reads the file the SD card is rotting under.
        other = sqlite3.connect(path)
        other.execute("INSERT INTO meta VALUES ('doctor', 'was here')")
        other.commit()
        other.close()
        with open(path, "r+b") as f:
            f.seek(4096 * 3)
            f.write(b"\xff" * (path.stat().st_size - 4096 * 3))

        assert led.check() != "ok"
        with pytest.raises(LedgerCorrupt):
            led.pending(limit=1000)


def test_unwritable_data_dir_is_a_configuration_error(tmp_path):
    (tmp_path / "not-a-dir").write_text("")
    with pytest.raises(LedgerError, match="directory"):
        Ledger.open(tmp_path / "not-a-dir" / "ledger.db")


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_data_dir_is_a_configuration_error(tmp_path):
    data = tmp_path / "ro"
    data.mkdir()
    data.chmod(0o500)
    try:
        with pytest.raises(LedgerError, match="not writable"):
            Ledger.open(data / "ledger.db")
    finally:
        data.chmod(0o700)


# ---------------------------------------------------------------- crashes


def run_child_until_killed(path: Path, round_: int, lines_wanted: int, step: bool) -> list[dict]:
    """Every event the child announced before it was SIGKILLed."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONIOENCODING": "utf-8"}
    proc = subprocess.Popen(
        [sys.executable, str(CHILD), str(path), str(round_), *(["--step"] if step else [])],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    lines: queue.Queue[bytes | None] = queue.Queue()

    def read():
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    printed = []
    try:
        while len(printed) < lines_wanted:
            try:
                line = lines.get(timeout=20)
            except queue.Empty:
                break  # stalled: fails below, with its stderr
            if line is None:
                break  # died by itself: fails below, with its stderr
            printed.append(json.loads(line))
            if step and len(printed) < lines_wanted:
                proc.stdin.write(b"go\n")
                proc.stdin.flush()
    finally:
        # Flat out, this lands mid-append (mid-transaction, mid-fsync, between
        # commit and print...); stepping, right after append returned.
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=20)
        reader.join(timeout=20)
        stderr = proc.stderr.read()
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            pipe.close()
    assert proc.returncode == -signal.SIGKILL and len(printed) == lines_wanted, stderr
    # Lines still in the pipe were announced too. One line per write(2), so
    # a line is either whole or absent.
    while (line := lines.get_nowait()) is not None:
        printed.append(json.loads(line))
    return printed


def test_every_announced_event_survives_kill_9(path):
    rng = random.Random()
    seed = rng.randrange(1 << 30)
    rng.seed(seed)
    highest = 0
    ledger_id = None

    for round_ in range(1, 9):
        step = round_ % 2 == 0
        printed = run_child_until_killed(path, round_, rng.randint(5, 80), step)

        with Ledger.open(path) as led:
            events = stored(path)
            assert led.quarantined is None, seed
            assert ledger_id in (None, led.ledger_id), seed
            ledger_id = led.ledger_id
            # Resumes after the highest seq ever assigned, never reusing one.
            assert printed[0]["seq"] == highest + 1, seed
            for event in printed:
                assert events[event["seq"]] == event, seed
            assert list(events) == list(range(1, len(events) + 1)), seed
            assert led.last_seq() == len(events) == led.backlog(), seed
            # Only a kill between commit and print leaves an unannounced event.
            assert len(events) - printed[-1]["seq"] in ((0,) if step else (0, 1)), seed
            assert [e["n"] for e in printed] == list(range(1, len(printed) + 1)), seed
            highest = len(events)


# ----------------------------------------------------------------- threads


def test_concurrent_appends_get_unique_contiguous_seqs(ledger):
    per_thread, threads = 40, 8
    results: list[list[dict]] = [[] for _ in range(threads)]
    start = threading.Barrier(threads)

    def work(i):
        start.wait()
        for n in range(per_thread):
            results[i].append(ledger.append(vote(thread=i, n=n)))
            if n % 10 == 0:
                ledger.pending()  # readers interleave with writers

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)

    seqs = sorted(e["seq"] for r in results for e in r)
    assert seqs == list(range(1, per_thread * threads + 1))
    for r in results:  # each thread's own appends come back in order
        assert [e["seq"] for e in r] == sorted(e["seq"] for e in r)
    by_seq = {e["seq"]: e for e in ledger.pending(limit=10_000)}
    assert all(by_seq[e["seq"]] == e for r in results for e in r)
