"""The counter's durable vote ledger.

A vote is written here, and committed to disk, before the citizen sees "thank
you"; it leaves only when the central service acknowledges it by
(ledger_id, seq). Power cuts, SD-card trouble and kill -9 are normal, so:

* every commit is fsynced (WAL + synchronous=FULL);
* seqs are never reused, even after everything is acknowledged, because the
  next seq lives in `meta` and moves in the same transaction as the insert;
* a file that is not a usable ledger is moved aside (never deleted) and a
  fresh ledger with a new random id replaces it, so the device never
  crash-loops on a bad file and old acks can't delete new events.
"""

from __future__ import annotations

import functools
import json
import os
import re
import secrets
import sqlite3
import threading
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, Iterator

from common.fsutil import fsync_dir

__all__ = ["Ledger", "LedgerCorrupt", "LedgerError"]

SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 5.0
_LEDGER_ID = re.compile(r"[0-9a-f]{16}")
_RESERVED_META = frozenset({"ledger_id", "next_seq"})
_COLUMNS = {"meta": ["key", "value"], "events": ["seq", "body", "held"]}
# Sidecars go first when quarantining: a fresh database next to a stale -wal
# would have the old WAL replayed into it.
_SIDECARS = ("-wal", "-shm", "-journal")

# Failures of the environment rather than of the file's contents. Moving the
# file aside would not fix them (and for BUSY would discard a healthy ledger).
_ENVIRONMENTAL = frozenset(
    {
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_NOMEM,
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_PERM,
        sqlite3.SQLITE_AUTH,
    }
)


class LedgerError(Exception):
    """The ledger cannot be used (configuration, disk, or a closed ledger)."""


class LedgerCorrupt(LedgerError, RuntimeError):
    """The ledger file's contents are unusable; reopening quarantines it."""


def _code(exc: sqlite3.Error) -> int:
    # Extended codes (e.g. SQLITE_IOERR_SHORT_READ) carry the primary code in the low byte.
    return (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF


def _translate(exc: sqlite3.Error, path: Path) -> LedgerError:
    # At runtime only SQLite's own verdict counts as corruption; the caller
    # can then exit, and the next open() quarantines the file.
    corrupt = _code(exc) in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)
    return (LedgerCorrupt if corrupt else LedgerError)(f"ledger {path}: {exc}")


def _locked(method):
    """Serialise access to the shared connection and type SQLite's errors."""

    @functools.wraps(method)
    def wrapper(self: "Ledger", *args, **kwargs):
        with self._lock:
            try:
                return method(self, *args, **kwargs)
            except sqlite3.Error as exc:
                raise _translate(exc, self.path) from exc

    return wrapper


def _dumps(event: dict) -> str:
    # allow_nan=False: NaN is not JSON and the central service would choke on it.
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False, allow_nan=False)



class Ledger:
    path: Path
    ledger_id: str
    quarantined: Path | None

    def __init__(self, path: Path, conn: sqlite3.Connection, ledger_id: str) -> None:
        self.path = path
        self.ledger_id = ledger_id
        self.quarantined = None
        self._conn = conn
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ open

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        on_quarantine: Callable[[Path, str], None] | None = None,
    ) -> "Ledger":
        path = Path(path)
        _ensure_writable_dir(path.parent)
        try:
            ledger = cls(path, *_prepare(path))
        except LedgerCorrupt as exc:
            moved = _quarantine(path)
            if on_quarantine is not None:
                on_quarantine(moved, str(exc))
            # A second failure on a brand-new file is not the file's fault:
            # let it raise instead of quarantining in a loop.
            ledger = cls(path, *_prepare(path))
            ledger.quarantined = moved
        return ledger

    # ---------------------------------------------------------------- writes

    @_locked
    def append(self, body: dict, *, held: bool = False, meta: Iterable[tuple[str, str]] = ()) -> dict:
        """Store one event; `meta` pairs are set in the same transaction (all or nothing)."""
        event = dict(body)  # assigning existing keys keeps the caller's key order
        with transaction(self._conn) as db:
            for key, value in meta:
                db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, str(value)))
            seq = int(_meta(db, "next_seq"))
            event["ledger"] = self.ledger_id
            event["seq"] = seq
            if held:
                db.execute("UPDATE events SET held = 0 WHERE held = 1")
            db.execute(
                "INSERT INTO events (seq, body, held) VALUES (?, ?, ?)",
                (seq, _dumps(event), int(held)),
            )
            db.execute("UPDATE meta SET value = ? WHERE key = 'next_seq'", (str(seq + 1),))
        return event

    @_locked
    def finalize_held(self, updates: dict | None = None) -> dict | None:
        updates = dict(updates or {})
        if updates.keys() & {"ledger", "seq"}:
            raise ValueError("finalize_held cannot change an event's ledger or seq")
        with transaction(self._conn) as db:
            row = db.execute("SELECT seq, body FROM events WHERE held = 1").fetchone()
            if row is None:
                return None
            event = json.loads(row[1])
            event.update(updates)
            db.execute("UPDATE events SET body = ?, held = 0 WHERE seq = ?", (_dumps(event), row[0]))
        return event

    @_locked
    def acknowledge(self, ledger_id: str, seqs: Iterable[int]) -> list[int]:
        if ledger_id != self.ledger_id:
            return []  # an ack for a ledger this device no longer has
        deleted = []
        # A forgotten delete costs only a re-send that the service acks again, so this
        # commit skips its fsync (WAL + NORMAL stays consistent): the next FULL commit,
        # the next vote, makes it durable anyway. That keeps acks off the press path.
        self._conn.execute("PRAGMA synchronous=NORMAL")
        try:
            with transaction(self._conn) as db:
                for seq in sorted({int(s) for s in seqs}):
                    # A held event was never sent, so an ack naming it is bogus.
                    if db.execute("DELETE FROM events WHERE seq = ? AND held = 0", (seq,)).rowcount:
                        deleted.append(seq)
        finally:
            self._conn.execute("PRAGMA synchronous=FULL")
        return deleted

    @_locked
    def set_meta(self, key: str, value: str) -> None:
        if key in _RESERVED_META:
            raise ValueError(f"meta key {key!r} is managed by the ledger")
        with transaction(self._conn) as db:
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, str(value)))

    # ----------------------------------------------------------------- reads

    @_locked
    def pending(self, after_seq: int = 0, limit: int = 100) -> list[dict]:
        # Events go out strictly in seq order, so a held event is a barrier.
        (barrier,) = self._conn.execute("SELECT min(seq) FROM events WHERE held = 1").fetchone()
        rows = self._conn.execute(
            "SELECT body FROM events WHERE seq > ? AND (? IS NULL OR seq < ?)"
            " ORDER BY seq LIMIT ?",
            (after_seq, barrier, barrier, max(0, limit)),
        )
        return [json.loads(body) for (body,) in rows]

    @_locked
    def backlog(self) -> int:
        return self._conn.execute("SELECT count(*) FROM events").fetchone()[0]

    @_locked
    def last_seq(self) -> int:
        return int(_meta(self._conn, "next_seq")) - 1

    @_locked
    def get_meta(self, key: str, default: str | None = None) -> str | None:
        value = _meta(self._conn, key)
        return default if value is None else value

    def check(self) -> str:
        """"ok", or what is wrong with the file (for `hailong device doctor`).

        Uses a fresh connection: the ledger's own one answers from its page
        cache and would not notice the file rotting underneath it.
        """
        try:
            _inspect(self.path)
        except LedgerError as exc:
            return str(exc)
        return "ok"

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> "Ledger":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Ledger {self.ledger_id} at {self.path}>"


# ----------------------------------------------------------------- helpers


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    # IMMEDIATE takes the write lock up front, so another process can't make
    # us fail half-way through with SQLITE_BUSY on lock upgrade.
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        # A failed COMMIT (disk full, I/O error) may leave the transaction
        # open; the next BEGIN would then fail forever.
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _meta(db: sqlite3.Connection, key: str) -> str | None:
    row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else row[0]


def _ensure_writable_dir(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LedgerError(f"cannot create ledger directory {directory}: {exc}") from exc
    # SQLite needs to create -wal/-shm files next to the database.
    if not os.access(directory, os.W_OK | os.X_OK):
        raise LedgerError(f"ledger directory {directory} is not writable")


def _prepare(path: Path) -> tuple[sqlite3.Connection, str]:
    """Validate, connect, create the schema if new; return (connection, ledger_id).

    Raises LedgerCorrupt if the file's contents are unusable, LedgerError if
    the environment is the problem.
    """
    _inspect(path)
    try:
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise LedgerError(f"cannot open ledger {path}: {exc}") from exc
    try:
        return conn, _setup(conn, path)
    except BaseException as exc:
        conn.close()
        if isinstance(exc, sqlite3.Error):
            raise _opening_error(path, exc) from exc
        raise


def _inspect(path: Path) -> None:
    """Raise LedgerCorrupt unless `path` is missing, empty, or a usable ledger.

    Read-only on purpose: when the last read-write connection closes, SQLite
    checkpoints and deletes -wal/-shm, so merely looking at a damaged file
    that way would alter or destroy the evidence we quarantine. A read-only
    connection cannot checkpoint and leaves the files as they were.
    """
    if not path.exists() or path.stat().st_size == 0:
        wal = Path(f"{path}-wal")
        if wal.exists() and wal.stat().st_size > 0:
            # SQLite silently deletes a -wal whose database is empty or
            # missing, and it may hold committed votes.
            raise LedgerCorrupt(f"{wal.name} without its database")
        return
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S)
    except sqlite3.Error as exc:
        raise LedgerError(f"cannot open ledger {path}: {exc}") from exc
    try:
        problem = "; ".join(str(row[0]) for row in conn.execute("PRAGMA quick_check"))
        if problem != "ok":
            raise LedgerCorrupt(f"quick_check: {problem}")
        _schema(conn)
    except sqlite3.Error as exc:
        raise _opening_error(path, exc) from exc
    finally:
        conn.close()


def _opening_error(path: Path, exc: sqlite3.Error) -> LedgerError:
    # While opening, any SQLite complaint about the file itself (not a
    # database, malformed, no such table...) means the file is unusable.
    if _code(exc) in _ENVIRONMENTAL:
        return LedgerError(f"cannot open ledger {path}: {exc}")
    return LedgerCorrupt(str(exc))


def _setup(conn: sqlite3.Connection, path: Path) -> str:
    if conn.execute("PRAGMA journal_mode=WAL").fetchone()[0].lower() != "wal":
        raise LedgerError(f"ledger {path}: the filesystem does not support WAL mode")
    # synchronous is per connection: FULL fsyncs the WAL at every commit,
    # which is what "durable before thank you" means across a power cut.
    conn.execute("PRAGMA synchronous=FULL")

    # Inside the write lock, so two processes can't both create the schema.
    with transaction(conn):
        ledger_id = _schema(conn)
        created = ledger_id is None
        if created:
            ledger_id = _create_schema(conn)
        # "Is anything held?" is asked on every send and every reason question: without
        # this index it scans the whole backlog (1.6 ms at 10,000 events, on the press path).
        conn.execute("CREATE INDEX IF NOT EXISTS events_held ON events (seq) WHERE held = 1")
        # A held event outlived its process: the reason window is long gone.
        conn.execute("UPDATE events SET held = 0 WHERE held = 1")
    if created:
        fsync_dir(path.parent)  # SQLite syncs the directory for -wal, not for the main file
    return ledger_id


def _schema(conn: sqlite3.Connection) -> str | None:
    """The ledger_id of a valid ledger, None for an empty file; else LedgerCorrupt."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    tables = sorted(name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))
    if version == 0 and not tables:
        return None
    if version != SCHEMA_VERSION:
        # Also a newer version after a downgrade: we can't use it, and
        # refusing to start would stop the counter collecting votes at all.
        raise LedgerCorrupt(f"schema version {version} (expected {SCHEMA_VERSION}), tables {tables}")
    for table, columns in _COLUMNS.items():
        found = [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]
        if found != columns:
            raise LedgerCorrupt(f"table {table} has columns {found}, expected {columns}")
    ledger_id = _meta(conn, "ledger_id")
    if ledger_id is None or not _LEDGER_ID.fullmatch(ledger_id):
        raise LedgerCorrupt(f"bad ledger_id {ledger_id!r}")
    next_seq = _meta(conn, "next_seq")
    (max_seq,) = conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()
    if next_seq is None or not next_seq.isdigit() or int(next_seq) <= max_seq:
        # Trusting it could hand out a seq the central service already has.
        raise LedgerCorrupt(f"next_seq {next_seq!r} but highest stored seq is {max_seq}")
    return ledger_id


def _create_schema(conn: sqlite3.Connection) -> str:
    ledger_id = secrets.token_hex(8)
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    conn.execute(
        "CREATE TABLE events (seq INTEGER PRIMARY KEY, body TEXT NOT NULL, held INTEGER NOT NULL DEFAULT 0)"
    )
    conn.executemany(
        "INSERT INTO meta (key, value) VALUES (?, ?)", [("ledger_id", ledger_id), ("next_seq", "1")]
    )
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")  # transactional: part of the db header
    return ledger_id


def _quarantine(path: Path) -> Path:
    """Move the database and its sidecars aside; return the database's new path."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    base = f"{path.name}.corrupt-{stamp}"
    target = path.with_name(base)
    n = 0
    while any(Path(f"{target}{s}").exists() for s in ("", *_SIDECARS)):
        n += 1
        target = path.with_name(f"{base}.{n}")
    try:
        for suffix in _SIDECARS:
            sidecar = Path(f"{path}{suffix}")
            if sidecar.exists():
                sidecar.rename(f"{target}{suffix}")
        if path.exists():
            path.rename(target)
        fsync_dir(path.parent)
    except OSError as exc:
        raise LedgerError(f"ledger {path} is corrupt and could not be moved aside: {exc}") from exc
    return target
