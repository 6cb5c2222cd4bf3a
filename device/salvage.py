"""Votes stranded in quarantined ledgers: read what is still readable, send it, count the rest.

A ledger file that SQLite calls corrupt is moved aside (`ledger.db.corrupt-<time>`, never
deleted) and a fresh ledger takes its place, so the counter keeps working. The old file
may still hold votes the service never acknowledged. This module rescues them:

* The quarantined file is never modified: it (and its `-wal`) is copied to a private
  temporary directory and only the copy is opened. A `-wal` without its database is read
  frame by frame into a fresh copy of the database's pages.
* Every event still readable and valid is kept in `salvage.db` next to the ledger and sent
  under its original `(ledger, seq)`, so the service, which dedupes on (device, ledger, seq),
  stores it once whether or not it had it already. An ack for that ledger deletes it.
* What cannot be read (a row SQLite refuses, a body that is not a valid event, a file
  that is not a database at all) is counted as unreadable, logged, and reported in
  telemetry; nothing is dropped silently.
* Each quarantined file is scanned once: `salvage.db` remembers it. Losing `salvage.db`
  itself costs only a re-send of events the service acks again.
"""
from __future__ import annotations

import json
import logging
import shutil
import sqlite3
import struct
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from common.fsutil import fsync_dir
from device.ledger import transaction
from protocol import ProtocolError
from protocol.events import LEDGER_ID_RE, validate_event

__all__ = ["Rescue", "Salvage", "SalvageView", "quarantined_files", "read_quarantined"]

log = logging.getLogger("hailong.device.salvage")

SALVAGE_FILE = "salvage.db"
_SIDECARS = ("-wal", "-shm", "-journal")
MAX_PROBE = 1_000_000  # seqs probed one by one in a damaged table; a ledger holds far fewer


@dataclass
class Rescue:
    """What one quarantined file gave up."""

    ledger: str | None = None
    events: list[dict] = field(default_factory=list)
    unreadable: int = 0
    problems: list[str] = field(default_factory=list)


def quarantined_files(ledger_path: Path) -> list[Path]:
    """The quarantined copies of `ledger_path`, oldest first (a -wal alone stands for its database)."""
    prefix = f"{ledger_path.name}.corrupt-"
    found = set()
    for p in ledger_path.parent.glob(f"{prefix}*"):
        name = p.name
        for suffix in _SIDECARS:
            if name.endswith(suffix):
                name = name[: -len(suffix)]
        found.add(ledger_path.with_name(name))
    return sorted(found)


def read_quarantined(path: Path) -> Rescue:
    """The readable events of a quarantined ledger, read from a private copy."""
    rescue = Rescue()
    with tempfile.TemporaryDirectory(prefix="hailong-salvage-") as tmp:
        copy = Path(tmp) / "copy.db"
        try:
            _copy(path, copy)
        except OSError as exc:
            rescue.unreadable += 1
            rescue.problems.append(f"cannot copy: {exc}")
            return rescue
        try:
            conn = sqlite3.connect(copy, isolation_level=None)
        except sqlite3.Error as exc:
            rescue.unreadable += 1
            rescue.problems.append(f"cannot open: {exc}")
            return rescue
        try:
            _read(conn, rescue)
        finally:
            conn.close()
    return rescue


def _copy(path: Path, copy: Path) -> None:
    wal = Path(f"{path}-wal")
    has_db = path.exists() and path.stat().st_size > 0
    if has_db:
        shutil.copyfile(path, copy)
        if wal.exists():
            shutil.copyfile(wal, f"{copy}-wal")
    elif wal.exists():
        # SQLite would discard a -wal whose database is missing, with every vote in it.
        copy.write_bytes(wal_pages(wal.read_bytes()))
    else:
        raise OSError(f"{path.name} has neither a database nor a -wal")


def wal_pages(wal: bytes) -> bytes:
    """A database image from a WAL alone: each page's last committed version, in page order."""
    if len(wal) < 32:
        return b""
    magic, _, page_size, _, salt1, salt2 = struct.unpack(">IIIIII", wal[:24])
    if magic not in (0x377F0682, 0x377F0683) or not 512 <= page_size <= 65536:
        return b""
    pages: dict[int, bytes] = {}
    staged: dict[int, bytes] = {}
    size = 0
    offset = 32
    while offset + 24 + page_size <= len(wal):
        number, commit_size, s1, s2 = struct.unpack(">IIII", wal[offset:offset + 16])
        if (s1, s2) != (salt1, salt2):
            break  # frames of an older generation of the WAL
        staged[number] = wal[offset + 24:offset + 24 + page_size]
        if commit_size:  # a commit frame: everything staged so far is committed
            pages.update(staged)
            staged.clear()
            size = commit_size
        offset += 24 + page_size
    return b"".join(pages.get(n, bytes(page_size)) for n in range(1, size + 1))


def _read(conn: sqlite3.Connection, rescue: Rescue) -> None:
    rescue.ledger = _meta(conn, "ledger_id", rescue)
    try:
        rows = conn.execute("SELECT seq, body FROM events ORDER BY seq").fetchall()
    except sqlite3.Error as exc:
        rescue.problems.append(f"events table scan: {exc}")
        rows = _probe(conn, rescue)
    for seq, body in rows:
        event = _event(seq, body, rescue)
        if event is not None:
            rescue.events.append(event)
    if rescue.ledger is None and rescue.events:
        rescue.ledger = rescue.events[0]["ledger"]  # meta is gone; the events still say it
    strays = [e for e in rescue.events if e["ledger"] != rescue.ledger]
    if strays:
        rescue.unreadable += len(strays)
        rescue.problems.append(f"{len(strays)} rows name another ledger than {rescue.ledger}")
        rescue.events = [e for e in rescue.events if e["ledger"] == rescue.ledger]
    if rescue.ledger is not None and not LEDGER_ID_RE.match(rescue.ledger):
        rescue.unreadable += len(rescue.events)
        rescue.problems.append(f"bad ledger id {rescue.ledger!r}")
        rescue.events = []


def _meta(conn: sqlite3.Connection, key: str, rescue: Rescue) -> str | None:
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    except sqlite3.Error as exc:
        rescue.problems.append(f"meta {key}: {exc}")
        return None
    return None if row is None else row[0]


def _probe(conn: sqlite3.Connection, rescue: Rescue) -> list[tuple[int, str]]:
    """One seq at a time: a damaged page costs the rows on it, not the whole table."""
    top = _meta(conn, "next_seq", rescue)
    last = int(top) - 1 if top and top.isdigit() else None
    if last is None:
        try:
            last = conn.execute("SELECT max(seq) FROM events").fetchone()[0]
        except sqlite3.Error as exc:
            rescue.problems.append(f"highest seq: {exc}")
    if last is None:
        rescue.unreadable += 1  # nothing tells how many events the table held
        return []
    rows = []
    for seq in range(1, min(last, MAX_PROBE) + 1):
        try:
            row = conn.execute("SELECT body FROM events WHERE seq = ?", (seq,)).fetchone()
        except sqlite3.Error:
            rescue.unreadable += 1
            continue
        if row is not None:  # no row: acknowledged and deleted long ago
            rows.append((seq, row[0]))
    return rows


def _event(seq: object, body: object, rescue: Rescue) -> dict | None:
    try:
        event = validate_event(json.loads(body))
        if event["seq"] != seq or (rescue.ledger is not None and event["ledger"] != rescue.ledger):
            raise ValueError(f"row {seq} holds event {event['ledger']}/{event['seq']}")
        return event
    except (TypeError, ValueError, ProtocolError) as exc:  # json and protocol errors are ValueErrors
        rescue.unreadable += 1
        rescue.problems.append(f"row {seq}: {exc}")
        return None


_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS files (name TEXT PRIMARY KEY, ledger TEXT, salvaged INTEGER NOT NULL,"
    " unreadable INTEGER NOT NULL, problems TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS events (ledger TEXT NOT NULL, seq INTEGER NOT NULL, body TEXT NOT NULL,"
    " PRIMARY KEY (ledger, seq))",
)


class Salvage:
    """salvage.db: which quarantined files were read, and the rescued events not yet acked."""

    def __init__(self, ledger_path: Path, conn: sqlite3.Connection) -> None:
        self.ledger_path = ledger_path
        self._conn = conn

    @classmethod
    def open(cls, ledger_path: str | Path) -> "Salvage":
        ledger_path = Path(ledger_path)
        path = ledger_path.with_name(SALVAGE_FILE)
        try:
            return cls(ledger_path, _connect(path))
        except sqlite3.DatabaseError as exc:
            # Only a record of progress: start it again (the quarantined files are intact),
            # keeping the damaged one for a human.
            log.error("salvage record %s unusable (%s); rebuilding it", path, exc)
            for suffix in ("", *_SIDECARS):
                old = Path(f"{path}{suffix}")
                if old.exists():
                    old.rename(f"{path}.bad{suffix}")
            fsync_dir(path.parent)
            return cls(ledger_path, _connect(path))

    def scan(self) -> list[tuple[Path, Rescue]]:
        """Read every quarantined file not read before; returns what each gave up."""
        done = {name for (name,) in self._conn.execute("SELECT name FROM files")}
        results = []
        for path in quarantined_files(self.ledger_path):
            if path.name in done:
                continue
            rescue = read_quarantined(path)
            self._keep(path, rescue)
            results.append((path, rescue))
            log.warning("salvaged %d events of ledger %s from %s; %d unreadable%s", len(rescue.events),
                        rescue.ledger, path.name, rescue.unreadable,
                        f" ({'; '.join(rescue.problems[:5])})" if rescue.problems else "")
        return results

    def _keep(self, path: Path, rescue: Rescue) -> None:
        with _transaction(self._conn) as db:
            db.executemany("INSERT OR IGNORE INTO events (ledger, seq, body) VALUES (?, ?, ?)",
                           [(e["ledger"], e["seq"], json.dumps(e, separators=(",", ":"), ensure_ascii=False))
                            for e in rescue.events])
            db.execute("INSERT INTO files (name, ledger, salvaged, unreadable, problems) VALUES (?, ?, ?, ?, ?)",
                       (path.name, rescue.ledger, len(rescue.events), rescue.unreadable,
                        "; ".join(rescue.problems)[:2000]))

    def ledgers(self) -> list[str]:
        return [lid for (lid,) in self._conn.execute("SELECT DISTINCT ledger FROM events ORDER BY ledger")]

    def pending(self, ledger: str, after_seq: int = 0, limit: int = 100) -> list[dict]:
        rows = self._conn.execute("SELECT body FROM events WHERE ledger = ? AND seq > ? ORDER BY seq LIMIT ?",
                                  (ledger, after_seq, max(0, limit)))
        return [json.loads(body) for (body,) in rows]

    def acknowledge(self, ledger: str, seqs) -> list[int]:
        done = []
        with _transaction(self._conn, durable=False) as db:
            for seq in sorted({int(s) for s in seqs}):
                if db.execute("DELETE FROM events WHERE ledger = ? AND seq = ?", (ledger, seq)).rowcount:
                    done.append(seq)
        return done

    def figures(self) -> dict:
        """Telemetry's salvage fields; empty while no ledger was ever quarantined."""
        files, salvaged, unreadable = self._conn.execute(
            "SELECT count(*), coalesce(sum(salvaged), 0), coalesce(sum(unreadable), 0) FROM files").fetchone()
        if not files:
            return {}
        (pending,) = self._conn.execute("SELECT count(*) FROM events").fetchone()
        return {"salvaged": salvaged, "salvage_pending": pending, "salvage_unreadable": unreadable}

    def close(self) -> None:
        self._conn.close()


@contextmanager
def _transaction(conn: sqlite3.Connection, durable: bool = True) -> Iterator[sqlite3.Connection]:
    """The ledger's transaction; durable=False skips the fsync at commit."""
    if durable:
        with transaction(conn) as db:
            yield db
        return
    # A forgotten delete costs one re-send that the service acks again.
    conn.execute("PRAGMA synchronous=NORMAL")
    try:
        with transaction(conn) as db:
            yield db
    finally:
        conn.execute("PRAGMA synchronous=FULL")


def _connect(path: Path) -> sqlite3.Connection:
    created = not path.exists()
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5.0)
    try:
        problem = conn.execute("PRAGMA quick_check").fetchone()[0]
        if problem != "ok":
            raise sqlite3.DatabaseError(f"quick_check: {problem}")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")  # rescued votes are as precious as fresh ones
        for statement in _SCHEMA:
            conn.execute(statement)
    except BaseException:
        conn.close()
        raise
    if created:
        fsync_dir(path.parent)
    return conn


class SalvageView:
    """One salvaged ledger as an Outbox sees a ledger: its own seqs, acked under its own id."""

    def __init__(self, salvage: Salvage, ledger_id: str) -> None:
        self.salvage = salvage
        self.ledger_id = ledger_id

    def pending(self, after_seq: int = 0, limit: int = 100) -> list[dict]:
        return self.salvage.pending(self.ledger_id, after_seq, limit)

    def acknowledge(self, ledger_id: str, seqs) -> list[int]:
        if ledger_id != self.ledger_id:
            return []
        return self.salvage.acknowledge(ledger_id, seqs)
