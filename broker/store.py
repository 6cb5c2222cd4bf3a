"""The central service's store: every event exactly once, and per-officer satisfaction.

The ingest loop acks an event to its device only after `Store.ingest` has
returned, i.e. after the transaction holding it was committed and fsynced
(WAL + synchronous=FULL). A device resends until acked, so the store must
recognise resends: `(device, ledger, seq)` is unique, a resend is reported as
"duplicate" and acked again, and it never reaches the counts twice.

Satisfaction is answered from per-day rollups that move in the same
transaction as the events, so a month's report never reads the events table.
See docs/store.md for the schema and the rules for time and attribution.
"""
from __future__ import annotations

import base64
import functools
import json
import os
import sqlite3
import threading
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator
from zoneinfo import ZoneInfo

from broker import stats
from broker.registry import RegistryQueries
from broker.web.queries import DashboardQueries
from broker.timefix import boot_offset, corrected_ts
from common.periods import DEFAULT_TZ, local_day, parse_day, split_months, zone
from protocol import ProtocolError
from protocol.codec import MAX_INT, decode
from protocol.events import LEDGER_ID_RE, decode_event

__all__ = ["MIGRATIONS", "Incoming", "Outcome", "Store", "StoreError", "UNATTRIBUTED"]

BUSY_TIMEOUT_S = 10.0
UNATTRIBUTED = "(không rõ)"  # the name shown for ratings no officer could be attributed to
GROUPS = ("officer", "counter", "site")


class StoreError(Exception):
    """The store cannot do what was asked: database trouble, a closed store, a newer schema."""


@dataclass(frozen=True)
class Incoming:
    """One MQTT message from {prefix}/{topic_device}/event."""

    topic_device: str
    payload: bytes
    received_ms: int  # service wall clock when received (ms since epoch UTC)


@dataclass(frozen=True)
class Outcome:
    status: str  # "stored" | "duplicate" | "rejected"
    device: str  # the topic's device id: where the ack goes
    ledger: str | None  # None when the payload was too broken to tell
    seq: int | None
    reason: str | None  # why it was rejected
    event: dict | None  # the event as stored (the first copy, for a duplicate); None when rejected


# ----------------------------------------------------------------- schema
#
# Append-only: a released migration is never edited, a change is a new
# function at the end. PRAGMA user_version = how many have been applied.


def _v1_initial(db: sqlite3.Connection) -> None:
    statements = [
        # Registry. No foreign keys on purpose: events from sites, counters and
        # officers nobody registered yet are stored, never refused.
        "CREATE TABLE sites (id TEXT PRIMARY KEY, name TEXT NOT NULL, tz TEXT NOT NULL)",
        """CREATE TABLE counters (site TEXT NOT NULL, counter TEXT NOT NULL, name TEXT NOT NULL,
            device TEXT, PRIMARY KEY (site, counter)) WITHOUT ROWID""",
        """CREATE TABLE officers (id TEXT PRIMARY KEY, name TEXT NOT NULL, code TEXT NOT NULL,
            unit TEXT NOT NULL, badge TEXT UNIQUE)""",
        # Change points: who sits at a counter from start_ms until the next row.
        """CREATE TABLE assignments (site TEXT NOT NULL, counter TEXT NOT NULL, start_ms INTEGER NOT NULL,
            officer TEXT, PRIMARY KEY (site, counter, start_ms)) WITHOUT ROWID""",
        """CREATE TABLE devices (id TEXT PRIMARY KEY, registered INTEGER NOT NULL DEFAULT 0,
            site TEXT, counter TEXT, first_seen_ms INTEGER, last_seen_ms INTEGER, online INTEGER,
            fw TEXT, ledger TEXT, backlog INTEGER, clock_ok INTEGER, telemetry TEXT)""",
        # ts is the time the service believes (see ts_source); the device's own
        # fields are kept untouched in body, the payload as received.
        """CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            device TEXT NOT NULL, ledger TEXT NOT NULL, seq INTEGER NOT NULL,
            type TEXT NOT NULL, site TEXT NOT NULL, counter TEXT NOT NULL,
            boot TEXT NOT NULL, mono REAL NOT NULL,
            ts INTEGER NOT NULL, ts_source TEXT NOT NULL, received_ms INTEGER NOT NULL,
            day TEXT NOT NULL, officer TEXT, officer_source TEXT,
            scale INTEGER, score INTEGER, flagged INTEGER, action TEXT, reason TEXT,
            body TEXT NOT NULL)""",
        "CREATE UNIQUE INDEX events_key ON events (device, ledger, seq)",
        # Partial indexes stay tiny: only events waiting for a clock, only ratings with a reason.
        "CREATE INDEX events_unsynced ON events (device, boot) WHERE ts_source = 'received'",
        "CREATE INDEX events_reasons ON events (officer, day) WHERE reason IS NOT NULL",
        """CREATE TABLE boot_offsets (device TEXT NOT NULL, boot TEXT NOT NULL, offset_ms REAL NOT NULL,
            ledger TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (device, boot)) WITHOUT ROWID""",
        # Rollups: counts per (site, counter, officer, day, ...), '' for no officer.
        # Period first: every report is a range of days. The month tables hold the
        # same counts summed by month, so a report over whole months reads ~30x
        # fewer rows (a month of 200 officers is ~2,000 rows instead of ~60,000).
        *(f"""CREATE TABLE rating_{period}s ({period} TEXT NOT NULL, site TEXT NOT NULL, counter TEXT NOT NULL,
            officer TEXT NOT NULL, scale INTEGER NOT NULL, score INTEGER NOT NULL, flagged INTEGER NOT NULL,
            n INTEGER NOT NULL,
            PRIMARY KEY ({period}, site, counter, officer, scale, score, flagged)) WITHOUT ROWID"""
          for period in ("day", "month")),
        *(f"""CREATE TABLE call_{period}s ({period} TEXT NOT NULL, site TEXT NOT NULL, counter TEXT NOT NULL,
            officer TEXT NOT NULL, action TEXT NOT NULL, n INTEGER NOT NULL,
            PRIMARY KEY ({period}, site, counter, officer, action)) WITHOUT ROWID"""
          for period in ("day", "month")),
        """CREATE TABLE dead_letters (id INTEGER PRIMARY KEY, received_ms INTEGER NOT NULL,
            device TEXT NOT NULL, ledger TEXT, seq INTEGER, reason TEXT NOT NULL, payload BLOB NOT NULL)""",
        """CREATE TABLE tickets (site TEXT NOT NULL, day TEXT NOT NULL, last INTEGER NOT NULL,
            PRIMARY KEY (site, day)) WITHOUT ROWID""",
        # Running totals for /metrics: count(*) over millions of events is too slow to scrape.
        "CREATE TABLE totals (name TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID",
        "INSERT INTO totals VALUES ('events', 0), ('dead_letters', 0), ('duplicates', 0), ('rejected', 0)",
    ]
    for sql in statements:
        db.execute(sql)


def _v2_flagged_index(db: sqlite3.Connection) -> None:
    # The dashboard's misuse page counts flagged presses by counter and hour. Only flagged rows,
    # so it stays small, and covering (ts, flagged included) so the count never touches the
    # 4 GB events table: 340 ms -> ~80 ms for a month over 10 M ratings.
    db.execute("CREATE INDEX IF NOT EXISTS events_flagged_hours ON events (day, site, counter, ts, flagged)"
               " WHERE flagged = 1")


# Append-only: a release never edits a migration that has shipped.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_v1_initial, _v2_flagged_index]


# ------------------------------------------------------------- statements

_INSERT_EVENT = """INSERT INTO events (device, ledger, seq, type, site, counter, boot, mono, ts, ts_source,
    received_ms, day, officer, officer_source, scale, score, flagged, action, reason, body)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""
_STORED = """SELECT e.device, e.ledger, e.seq, e.body FROM json_each(?) AS k
    JOIN events AS e ON e.device = k.value ->> 0 AND e.ledger = k.value ->> 1 AND e.seq = k.value ->> 2"""
_ASSIGNED = """SELECT officer FROM assignments WHERE site = ? AND counter = ? AND start_ms <= ?
    ORDER BY start_ms DESC LIMIT 1"""

# Rollup keys, in this order: site, counter, officer, day or month, then the type's own columns.
_ROLLUP_KEYS = {"rating": ("scale", "score", "flagged"), "call": ("action",)}


def _rollup_sql(kind: str, period: str) -> tuple[str, str]:
    """(add n to a row, delete the row if it dropped to zero) for one rollup table."""
    key = ("site", "counter", "officer", period, *_ROLLUP_KEYS[kind])
    table = f"{kind}_{period}s"
    add = (f"INSERT INTO {table} ({', '.join(key)}, n) VALUES ({', '.join('?' * (len(key) + 1))})"
           " ON CONFLICT DO UPDATE SET n = n + excluded.n")
    drop = f"DELETE FROM {table} WHERE {' AND '.join(f'{k} = ?' for k in key)} AND n <= 0"
    return add, drop


_ROLLUPS = {(kind, period): _rollup_sql(kind, period) for kind in _ROLLUP_KEYS for period in ("day", "month")}
_SEEN = """INSERT INTO devices (id, site, counter, first_seen_ms, last_seen_ms) VALUES (?, ?, ?, ?, ?)
    ON CONFLICT (id) DO UPDATE SET
        first_seen_ms = min(coalesce(first_seen_ms, excluded.first_seen_ms), excluded.first_seen_ms),
        last_seen_ms = max(coalesce(last_seen_ms, 0), excluded.last_seen_ms),
        site = CASE WHEN registered OR excluded.site IS NULL THEN site ELSE excluded.site END,
        counter = CASE WHEN registered OR excluded.site IS NULL THEN counter ELSE excluded.counter END"""
_DEAD = "INSERT INTO dead_letters (received_ms, device, ledger, seq, reason, payload) VALUES (?, ?, ?, ?, ?, ?)"
_TOTAL = "UPDATE totals SET n = n + ? WHERE name = ?"
_DEVICE_COLUMNS = ("id, registered, site, counter, first_seen_ms, last_seen_ms, online, fw, ledger, "
                   "backlog, clock_ok, telemetry")


# ------------------------------------------------------------------ store


def _translated(method):
    """SQLite's errors leave the store as StoreError; argument errors stay ValueError."""

    @functools.wraps(method)
    def wrapper(self: "Store", *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as exc:
            raise StoreError(f"store {self.path}: {exc}") from exc

    return wrapper


class Store(RegistryQueries, DashboardQueries):
    path: Path

    def __init__(self, path: Path, db: sqlite3.Connection, reader: sqlite3.Connection) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = db  # writes, under _wlock
        # A second connection lets reports run while a batch commits (WAL readers never block).
        self._reader: sqlite3.Connection | None = reader
        self._wlock = threading.RLock()
        self._rlock = threading.Lock()
        # Caches of committed state, for the ingest hot path. Another connection's
        # commit changes PRAGMA data_version, and then they are dropped.
        self._zones: dict[str, ZoneInfo] = {}
        self._offsets: dict[tuple[str, str], float | None] = {}
        self._data_version = -1

    # ------------------------------------------------------------- lifecycle

    @classmethod
    def open(cls, url_or_path: str | Path) -> "Store":
        """Open (creating if needed) "sqlite:///relative.db", "sqlite:////abs/path.db" or a plain path."""
        path = _path_of(url_or_path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the store's directory {path.parent}: {exc}") from exc
        created = not path.exists()
        db = reader = None
        try:
            db = _connect(path)
            if db.execute("PRAGMA journal_mode=WAL").fetchone()[0].lower() != "wal":
                raise StoreError(f"store {path}: the filesystem does not support WAL mode")
            # A batch from many devices dirties hundreds of index pages. Checkpointing
            # every ~40 MB instead of every 4 MB writes a hot page back once, not
            # several times (10-20 % more events/s); the size limit trims the file after.
            db.execute("PRAGMA wal_autocheckpoint=10000")
            db.execute("PRAGMA journal_size_limit=67108864")
            _migrate(db, path)
            reader = _connect(path)
        except BaseException as exc:
            for conn in (db, reader):
                if conn is not None:
                    conn.close()
            if isinstance(exc, sqlite3.Error):
                raise StoreError(f"cannot open store {path}: {exc}") from exc
            raise
        if created:
            _fsync_dir(path.parent)  # SQLite syncs the directory for -wal, not for the main file
        return cls(path, db, reader)

    def close(self) -> None:
        with self._wlock, self._rlock:
            for conn in (self._db, self._reader):
                if conn is not None:
                    conn.close()
            self._db = self._reader = None

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Store {self.path}>"

    @contextmanager
    def _write(self, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """One write transaction, committed (and, if durable, fsynced) on leaving."""
        with self._wlock:
            db = self._db
            if db is None:
                raise StoreError("the store is closed")
            if not durable:
                # Losing the last few of these in a power cut is harmless; WAL with
                # NORMAL stays consistent and the next FULL commit syncs them too.
                db.execute("PRAGMA synchronous=NORMAL")
            try:
                # IMMEDIATE takes the write lock up front, so another process
                # cannot make us fail half-way through on lock upgrade.
                db.execute("BEGIN IMMEDIATE")
                try:
                    yield db
                    db.execute("COMMIT")
                except BaseException:
                    # A failed COMMIT (disk full, I/O error) can leave the transaction
                    # open, and the next BEGIN would then fail forever.
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    raise
            finally:
                if not durable:
                    db.execute("PRAGMA synchronous=FULL")

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """One read transaction: every query inside sees the same snapshot."""
        with self._rlock:
            db = self._reader
            if db is None:
                raise StoreError("the store is closed")
            db.execute("BEGIN")
            try:
                yield db
            finally:
                db.execute("COMMIT")

    # ---------------------------------------------------------------- ingest

    @_translated
    def ingest(self, batch: list[Incoming]) -> list[Outcome]:
        """Store a batch of event messages in ONE transaction; outcomes in batch order.

        When this returns, everything "stored" (and every dead letter) is on disk,
        so the caller may ack all of them. If it raises, nothing was stored.
        """
        if not batch:
            return []
        with self._wlock:
            with self._write() as db:
                version = db.execute("PRAGMA data_version").fetchone()[0]
                if version != self._data_version:
                    self._zones.clear()
                    self._offsets.clear()
                    self._data_version = version
                outcomes, new_offsets = _Batch(self, db).run(batch)
            # Only now that they are committed may they be cached.
            self._offsets.update(new_offsets)
            if len(self._offsets) > 200_000:  # one entry per boot of every device, forever
                self._offsets.clear()
        return outcomes

    def _zone(self, db: sqlite3.Connection, site: str) -> ZoneInfo:
        tz = self._zones.get(site)
        if tz is None:
            row = db.execute("SELECT tz FROM sites WHERE id = ?", (site,)).fetchone()
            tz = self._zones[site] = zone(row[0] if row else DEFAULT_TZ)
        return tz

    def _offset(self, db: sqlite3.Connection, device: str, boot: str) -> float | None:
        key = (device, boot)
        try:
            return self._offsets[key]
        except KeyError:
            pass
        row = db.execute("SELECT offset_ms FROM boot_offsets WHERE device = ? AND boot = ?", key).fetchone()
        offset = self._offsets[key] = None if row is None else row[0]
        return offset

    # -------------------------------------------------------------- registry

    @_translated
    def upsert_site(self, id: str, name: str = "", tz: str = DEFAULT_TZ) -> dict:
        """Create or replace a site. Changing tz re-buckets future events only (see docs/store.md)."""
        zone(tz)  # ValueError for an unknown zone, before anything is written
        with self._write() as db:
            db.execute("INSERT OR REPLACE INTO sites (id, name, tz) VALUES (?, ?, ?)", (id, name, tz))
            self._zones.pop(id, None)
        return {"id": id, "name": name, "tz": tz}

    @_translated
    def upsert_counter(self, site: str, counter: str, name: str = "", device: str | None = None) -> dict:
        """Create or rename a counter; a device given here is registered there (None: binding unchanged)."""
        with self._write() as db:
            db.execute(
                "INSERT INTO counters (site, counter, name) VALUES (?, ?, ?)"
                " ON CONFLICT DO UPDATE SET name = excluded.name",
                (site, counter, name),
            )
            if device is not None:
                _register(db, device, site, counter)
            row = db.execute("SELECT device FROM counters WHERE site = ? AND counter = ?", (site, counter)).fetchone()
        return {"site": site, "counter": counter, "name": name, "device": row[0]}

    @_translated
    def upsert_officer(self, id: str, name: str, code: str = "", unit: str = "", badge: str | None = None) -> dict:
        """Create or update an officer; badge None leaves the badge as it was.

        A badge belongs to one person: giving it to this officer takes it from
        whoever had it (cards are reissued).
        """
        badge = _badge(badge)
        with self._write() as db:
            if badge is not None:
                db.execute("UPDATE officers SET badge = NULL WHERE badge = ? AND id != ?", (badge, id))
            db.execute(
                "INSERT INTO officers (id, name, code, unit, badge) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT DO UPDATE SET name = excluded.name, code = excluded.code,"
                " unit = excluded.unit, badge = coalesce(excluded.badge, badge)",
                (id, name, code, unit, badge),
            )
            row = db.execute("SELECT id, name, code, unit, badge FROM officers WHERE id = ?", (id,)).fetchone()
        return _officer(row)

    @_translated
    def assign(self, site: str, counter: str, officer: str | None, at_ms: int) -> dict:
        """From at_ms on, `officer` (None: nobody) sits at the counter, until the next change.

        The history is a list of change points, so this closes whatever assignment
        was open at at_ms. A change recorded late does not re-attribute events
        already stored (docs/store.md).
        """
        _check_ms(at_ms, "at_ms")
        with self._write() as db:
            db.execute(
                "INSERT OR REPLACE INTO assignments (site, counter, start_ms, officer) VALUES (?, ?, ?, ?)",
                (site, counter, at_ms, officer),
            )
            nxt = db.execute(
                "SELECT min(start_ms) FROM assignments WHERE site = ? AND counter = ? AND start_ms > ?",
                (site, counter, at_ms),
            ).fetchone()[0]
        return {"site": site, "counter": counter, "officer": officer, "start_ms": at_ms, "end_ms": nxt}

    @_translated
    def assignment_at(self, site: str, counter: str, at_ms: int) -> str | None:
        with self._read() as db:
            row = db.execute(_ASSIGNED, (site, counter, at_ms)).fetchone()
        return None if row is None else row[0]

    @_translated
    def officer_by_badge(self, uid: str) -> dict | None:
        with self._read() as db:
            row = db.execute("SELECT id, name, code, unit, badge FROM officers WHERE badge = ?",
                             (_badge(uid),)).fetchone()
        return None if row is None else _officer(row)

    @_translated
    def register_device(self, device: str, site: str, counter: str) -> dict:
        with self._write() as db:
            _register(db, device, site, counter)
            row = db.execute(f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE id = ?", (device,)).fetchone()
        return _device(row)

    @_translated
    def devices(self) -> list[dict]:
        """Every device seen or registered, by id. Unregistered ones carry the site and counter they claim."""
        with self._read() as db:
            rows = db.execute(f"SELECT {_DEVICE_COLUMNS} FROM devices ORDER BY id").fetchall()
        return [_device(row) for row in rows]

    @_translated
    def device_status(self, device: str, status: dict, at_ms: int) -> None:
        """Record a (retained) status message: online or not, firmware, ledger."""
        online = bool(status.get("online"))
        with self._write(durable=False) as db:
            db.execute(
                "INSERT INTO devices (id, first_seen_ms, last_seen_ms, online, fw, ledger) VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET online = excluded.online,"
                " fw = coalesce(excluded.fw, fw), ledger = coalesce(excluded.ledger, ledger),"
                " first_seen_ms = coalesce(first_seen_ms, excluded.first_seen_ms),"
                " last_seen_ms = max(coalesce(last_seen_ms, 0), coalesce(excluded.last_seen_ms, 0))",
                # An offline status is the broker speaking for a device that is gone:
                # it says nothing about when the device was last seen.
                (device, at_ms, at_ms if online else None, int(online), status.get("fw"), status.get("ledger")),
            )

    @_translated
    def device_telemetry(self, device: str, telemetry: dict, at_ms: int) -> None:
        body = json.dumps(telemetry, ensure_ascii=False, separators=(",", ":"))
        clock_ok = telemetry.get("clock_ok")
        with self._write(durable=False) as db:
            db.execute(
                "INSERT INTO devices (id, first_seen_ms, last_seen_ms, fw, ledger, backlog, clock_ok, telemetry)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET fw = coalesce(excluded.fw, fw),"
                " ledger = coalesce(excluded.ledger, ledger), backlog = excluded.backlog,"
                " clock_ok = excluded.clock_ok, telemetry = excluded.telemetry,"
                " first_seen_ms = coalesce(first_seen_ms, excluded.first_seen_ms),"
                " last_seen_ms = max(coalesce(last_seen_ms, 0), excluded.last_seen_ms)",
                (device, at_ms, at_ms, telemetry.get("fw"), telemetry.get("ledger"), telemetry.get("backlog"),
                 None if clock_ok is None else int(bool(clock_ok)), body),
            )

    # ----------------------------------------------------------------- reads

    @_translated
    def dead_letters(self, limit: int = 100, offset: int = 0) -> list[dict]:
        """Newest first. payload is the text when it is UTF-8, else base64 (see "encoding")."""
        with self._read() as db:
            rows = db.execute(
                "SELECT id, received_ms, device, ledger, seq, reason, payload FROM dead_letters"
                " ORDER BY id DESC LIMIT ? OFFSET ?",
                (_count(limit, "limit"), _count(offset, "offset")),
            ).fetchall()
        letters = []
        for id_, received_ms, device, ledger, seq, reason, payload in rows:
            try:
                text, encoding = payload.decode("utf-8"), "utf-8"
            except UnicodeDecodeError:
                text, encoding = base64.b64encode(payload).decode("ascii"), "base64"
            letters.append({"id": id_, "received_ms": received_ms, "device": device, "ledger": ledger, "seq": seq,
                            "reason": reason, "payload": text, "encoding": encoding, "size": len(payload)})
        return letters

    @_translated
    def events(self, *, device: str | None = None, site: str | None = None, counter: str | None = None,
               officer: str | None = None, type: str | None = None, since_ms: int | None = None,
               until_ms: int | None = None, limit: int = 100, after_id: int | None = None) -> list[dict]:
        """Stored events in storage order; pass the last "id" as after_id for the next page.

        since_ms/until_ms bound the service's time (ts), since inclusive, until exclusive.
        """
        where, args = [], []
        for column, value in (("device", device), ("site", site), ("counter", counter),
                              ("officer", officer), ("type", type)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        for clause, value in (("ts >= ?", since_ms), ("ts < ?", until_ms), ("id > ?", after_id)):
            if value is not None:
                where.append(clause)
                args.append(value)
        sql = ("SELECT id, device, ledger, seq, type, site, counter, ts, ts_source, day, received_ms,"
               " officer, officer_source, body FROM events")
        if where:
            sql += " WHERE " + " AND ".join(where)
        with self._read() as db:
            rows = db.execute(sql + " ORDER BY id LIMIT ?", (*args, _count(limit, "limit"))).fetchall()
        keys = ("id", "device", "ledger", "seq", "type", "site", "counter", "ts", "ts_source", "day",
                "received_ms", "officer", "officer_source")
        return [{**dict(zip(keys, row)), "event": json.loads(row[-1])} for row in rows]

    @_translated
    def next_ticket(self, site: str, day: str) -> int:
        """The site's next queue number for that local day: 1, 2, 3 ... durable before it is returned."""
        day = parse_day(day)
        with self._write() as db:
            (number,) = db.execute(
                "INSERT INTO tickets (site, day, last) VALUES (?, ?, 1)"
                " ON CONFLICT DO UPDATE SET last = last + 1 RETURNING last",
                (site, day),
            ).fetchone()
        return number

    @_translated
    def counts(self) -> dict:
        with self._read() as db:
            return dict(db.execute("SELECT name, n FROM totals").fetchall())

    # ------------------------------------------------------------ statistics

    @_translated
    def satisfaction(self, group: str, date_from: str, date_to: str, *, site: str | None = None,
                     satisfied_from: int | None = None) -> dict:
        """Ranked satisfaction per officer, counter ("site/counter") or site, days inclusive.

        Read from the rollups only. "scale" is the scale most ratings of the period
        were given on; rows on other scales are stated on it (broker.stats.summarize_scales).
        Each row also has "served": the officer's/counter's NEXT calls in the period.
        """
        if group not in GROUPS:
            raise ValueError(f"group must be one of {', '.join(GROUPS)}, got {group!r}")
        date_from, date_to = parse_day(date_from), parse_day(date_to)
        if date_from > date_to:
            raise ValueError(f"date_from {date_from} is after date_to {date_to}")
        columns = {"officer": "officer", "counter": "site, counter", "site": "site"}[group]
        site_clause = "" if site is None else " AND site = ?"
        parts, args = [], []
        for period, first, last in split_months(date_from, date_to):
            parts.append(f"SELECT {columns}, {{}}, n FROM {{}}_{period}s WHERE {period} BETWEEN ? AND ?{site_clause}")
            args += [first, last] + ([] if site is None else [site])
        rating_rows = " UNION ALL ".join(p.format("scale, score, flagged", "rating") for p in parts)
        call_rows = " UNION ALL ".join(p.format("action", "call") for p in parts)
        with self._read() as db:
            ratings = db.execute(
                f"SELECT {columns}, scale, score, flagged, sum(n) FROM ({rating_rows})"
                f" GROUP BY {columns}, scale, score, flagged", args).fetchall()
            calls = db.execute(
                f"SELECT {columns}, sum(n) FROM ({call_rows}) WHERE action = 'next' GROUP BY {columns}",
                args).fetchall()
            names = _names(db, group)
        width = 2 if group == "counter" else 1
        per_key: dict[tuple, tuple[dict[int, dict[int, int]], list[int]]] = {}
        by_scale: Counter[int] = Counter()
        for row in ratings:
            key = row[:width]
            scale, score, flagged, n = row[width:]
            counts, flags = per_key.setdefault(key, ({}, [0]))
            by_scale[scale] += n
            by_score = counts.setdefault(scale, {})  # a scale seen only in flagged ratings still counts
            if flagged:
                flags[0] += n
            else:
                by_score[score] = by_score.get(score, 0) + n
        served = {row[:width]: row[width] for row in calls}
        # The most common scale; on a tie the larger, so the result does not depend on row order.
        scale = max(by_scale, key=lambda s: (by_scale[s], s)) if by_scale else None
        rows = []
        for key, (counts, flags) in per_key.items():
            if group == "officer" and key == ("",):
                shown, name = None, UNATTRIBUTED
            else:
                shown, name = "/".join(key), names.get(key) or key[-1]
            figures = stats.summarize_scales(counts, scale, flags[0], satisfied_from)
            rows.append({"key": shown, "name": name, **figures, "served": served.get(key, 0)})
        return {"scale": scale, "group": group, "from": date_from, "to": date_to, "rows": stats.rank(rows)}

    @_translated
    def low_reasons(self, officer: str | None, date_from: str, date_to: str) -> list[dict]:
        """Reasons citizens gave with the officer's counted ratings, most frequent first.

        officer None (or "") asks about unattributed ratings.
        """
        date_from, date_to = parse_day(date_from), parse_day(date_to)
        with self._read() as db:
            rows = db.execute(
                "SELECT reason, count(*) FROM events WHERE officer IS ? AND day BETWEEN ? AND ?"
                " AND reason IS NOT NULL AND type = 'rating' AND flagged = 0"
                " GROUP BY reason ORDER BY count(*) DESC, reason",
                (officer or None, date_from, date_to),
            ).fetchall()
        return [{"reason": reason, "count": n} for reason, n in rows]


# ------------------------------------------------------------------ ingest


class _Batch:
    """The work of one `Store.ingest` call, inside its transaction."""

    def __init__(self, store: Store, db: sqlite3.Connection) -> None:
        self.store = store
        self.db = db
        self.ratings: Counter[tuple] = Counter()  # rollup key -> change in n
        self.calls: Counter[tuple] = Counter()

    def run(self, batch: list[Incoming]) -> tuple[list[Outcome], dict[tuple[str, str], float]]:
        db = self.db
        outcomes: list[Outcome | None] = [None] * len(batch)
        dead: list[tuple[int, tuple]] = []  # (position in the batch, row)
        valid: list[tuple[int, Incoming, dict, bytes]] = []
        seen: dict[str, list] = {}  # device -> [site, counter, first_ms, last_ms]
        rejected = 0

        for i, inc in enumerate(batch):
            device = inc.topic_device
            payload = bytes(inc.payload)
            mark = seen.get(device)
            if mark is None:
                seen[device] = [None, None, inc.received_ms, inc.received_ms]
            else:
                mark[2] = min(mark[2], inc.received_ms)
                mark[3] = max(mark[3], inc.received_ms)
            try:
                ev = decode_event(payload)
            except ProtocolError as exc:
                ledger, seq = _salvage(payload)
                reason = str(exc)
            else:
                if ev["device"] == device:
                    valid.append((i, inc, ev, payload))
                    continue
                ledger, seq = ev["ledger"], ev["seq"]
                reason = f"device {ev['device']!r} in payload does not match topic device {device!r} (spoofing)"
            rejected += 1
            outcomes[i] = Outcome("rejected", device, ledger, seq, reason, None)
            dead.append((i, (inc.received_ms, device, ledger, seq, reason, payload)))

        stored: dict[tuple, str] = {}
        if valid:
            # One query for the whole batch: a lookup per event costs twice as much.
            keys = json.dumps([(ev["device"], ev["ledger"], ev["seq"]) for _, _, ev, _ in valid])
            for device, ledger, seq, body in db.execute(_STORED, (keys,)):
                stored[device, ledger, seq] = body
        fresh: dict[tuple[str, str, int], tuple[int, Incoming, dict, bytes]] = {}
        duplicates = 0
        for i, inc, ev, payload in valid:
            key = (ev["device"], ev["ledger"], ev["seq"])
            first = fresh.get(key)
            if first is not None:
                kept = first[2]
            elif key in stored:
                kept = json.loads(stored[key])
            else:
                fresh[key] = (i, inc, ev, payload)
                seen[key[0]][:2] = ev["site"], ev["counter"]
                continue
            duplicates += 1
            outcomes[i] = Outcome("duplicate", key[0], key[1], key[2], None, kept)
            if kept != ev:
                # Same identity, different content: a device bug or tampering. The
                # first copy stays authoritative; keep this one for a human to look at.
                dead.append((i, (inc.received_ms, key[0], key[1], key[2],
                                 "conflicting duplicate: this (device, ledger, seq) is stored with a different body",
                                 payload)))

        new_offsets = self._learn_offsets(fresh.values())
        for (device, boot), offset in new_offsets.items():
            self._correct_boot(device, boot, offset)
        rows = []
        for i, inc, ev, payload in fresh.values():
            rows.append(self._row(inc, ev, payload, new_offsets))
            outcomes[i] = Outcome("stored", inc.topic_device, ev["ledger"], ev["seq"], None, ev)

        db.executemany(_INSERT_EVENT, rows)
        self._apply_rollups()
        db.executemany(_SEEN, [(d, *mark) for d, mark in seen.items()])
        if dead:  # in batch order, so their ids follow arrival
            db.executemany(_DEAD, [row for _, row in sorted(dead, key=lambda d: d[0])])
        db.executemany(_TOTAL, [(len(rows), "events"), (duplicates, "duplicates"), (rejected, "rejected"),
                                (len(dead), "dead_letters")])
        return outcomes, new_offsets  # type: ignore[return-value]

    def _learn_offsets(self, fresh) -> dict[tuple[str, str], float]:
        """Offsets of boots whose first synchronised event is in this batch."""
        learned: dict[tuple[str, str], float] = {}
        rows = []
        for _, _, ev, _ in fresh:
            if not ev["clock_ok"]:
                continue
            key = (ev["device"], ev["boot"])
            if key in learned or self.store._offset(self.db, *key) is not None:
                continue  # the first synchronised event of a boot sets its offset for good
            learned[key] = boot_offset(ev["ts"], ev["mono"])
            rows.append((*key, learned[key], ev["ledger"], ev["seq"]))
        if rows:
            self.db.executemany(
                "INSERT INTO boot_offsets (device, boot, offset_ms, ledger, seq) VALUES (?, ?, ?, ?, ?)", rows)
        return learned

    def _correct_boot(self, device: str, boot: str, offset: float) -> None:
        """Re-time the stored events of a boot that had no good clock until now."""
        db = self.db
        found = db.execute(
            "SELECT id, type, site, counter, mono, day, officer, officer_source, scale, score, flagged, action"
            " FROM events WHERE device = ? AND boot = ? AND ts_source = 'received'",
            (device, boot),
        ).fetchall()
        updates = []
        for id_, type_, site, counter, mono, day, officer, source, scale, score, flagged, action in found:
            ts = corrected_ts(offset, mono)
            new_day = local_day(ts, self.store._zone(db, site))
            new_officer, new_source = officer, source
            if source != "event":
                # It was attributed at the time it was received, which was wrong too.
                new_officer = self._assigned(site, counter, ts)
                new_source = "assignment" if new_officer is not None else None
            updates.append((ts, new_day, new_officer, new_source, id_))
            self._count(type_, site, counter, officer, day, scale, score, flagged, action, -1)
            self._count(type_, site, counter, new_officer, new_day, scale, score, flagged, action, +1)
        if updates:
            db.executemany(
                "UPDATE events SET ts = ?, ts_source = 'corrected', day = ?, officer = ?, officer_source = ?"
                " WHERE id = ?", updates)

    def _row(self, inc: Incoming, ev: dict, payload: bytes, new_offsets) -> tuple:
        device, site, counter, boot = ev["device"], ev["site"], ev["counter"], ev["boot"]
        if ev["clock_ok"]:
            ts, source = ev["ts"], "device"
        else:
            offset = new_offsets.get((device, boot))
            if offset is None:
                offset = self.store._offset(self.db, device, boot)
            if offset is not None:
                ts, source = corrected_ts(offset, ev["mono"]), "corrected"
            else:
                # Until a synchronised event of this boot arrives (maybe never), the
                # arrival time is the best guess; _correct_boot fixes it later.
                ts, source = inc.received_ms, "received"
        day = local_day(ts, self.store._zone(self.db, site))
        officer = ev["officer"]
        officer_source = "event"
        if officer is None:
            officer = self._assigned(site, counter, ts)
            officer_source = "assignment" if officer is not None else None
        kind = ev["type"]
        scale = score = flagged = action = reason = None
        if kind == "rating":
            scale, score, flagged, reason = ev["scale"], ev["score"], int(bool(ev["flags"])), ev["reason"]
        elif kind == "call":
            action = ev["action"]
        self._count(kind, site, counter, officer, day, scale, score, flagged, action, +1)
        return (device, ev["ledger"], ev["seq"], kind, site, counter, boot, ev["mono"], ts, source,
                inc.received_ms, day, officer, officer_source, scale, score, flagged, action, reason,
                payload.decode("utf-8"))

    def _assigned(self, site: str, counter: str, ts: int) -> str | None:
        row = self.db.execute(_ASSIGNED, (site, counter, ts)).fetchone()
        return None if row is None else row[0]

    def _count(self, kind, site, counter, officer, day, scale, score, flagged, action, delta: int) -> None:
        if kind == "rating":
            self.ratings[(site, counter, officer or "", day, scale, score, flagged)] += delta
        elif kind == "call":
            self.calls[(site, counter, officer or "", day, action)] += delta

    def _apply_rollups(self) -> None:
        for kind, days in (("rating", self.ratings), ("call", self.calls)):
            months: Counter[tuple] = Counter()
            for key, n in days.items():
                months[(*key[:3], key[3][:7], *key[4:])] += n
            for period, changes in (("day", days), ("month", months)):
                add, drop = _ROLLUPS[kind, period]
                # A correction that moves an event within a day (or month) nets out to zero.
                self.db.executemany(add, [(*key, n) for key, n in changes.items() if n])
                shrunk = [key for key, n in changes.items() if n < 0]
                if shrunk:
                    self.db.executemany(drop, shrunk)  # no zero rows: a recount never has them


# ----------------------------------------------------------------- helpers


def _path_of(url_or_path: str | Path) -> Path:
    if isinstance(url_or_path, Path):
        return url_or_path
    text = str(url_or_path)
    if text.startswith("sqlite:///"):
        # SQLAlchemy's convention: the path follows the third slash, so an
        # absolute path gives four slashes (sqlite:////var/lib/hailong/store.db).
        text = text[len("sqlite:///"):]
    elif "://" in text:
        raise ValueError(f"unsupported store URL {url_or_path!r}: expected sqlite:///path or a file path")
    if not text or text == ":memory:" or text.startswith("file:"):
        raise ValueError(f"the store needs a database file, got {url_or_path!r}")
    return Path(text)


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
    # synchronous is per connection: FULL fsyncs the WAL at every commit, which is
    # what "stored before acked" means across a power cut.
    db.execute("PRAGMA synchronous=FULL")
    db.execute("PRAGMA cache_size=-65536")  # 64 MiB: the hot end of the indexes stays in memory
    db.execute("PRAGMA temp_store=MEMORY")
    return db


def _migrate(db: sqlite3.Connection, path: Path) -> None:
    for target in range(1, len(MIGRATIONS) + 1):
        # One transaction per step, holding the write lock, so two processes
        # opening the same new database cannot both apply a step.
        db.execute("BEGIN IMMEDIATE")
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > len(MIGRATIONS):
                raise StoreError(f"store {path} has schema version {version}, newer than this program's "
                                 f"{len(MIGRATIONS)}: refusing to use it")
            if version < target:
                MIGRATIONS[target - 1](db)
                db.execute(f"PRAGMA user_version = {target}")  # part of the transaction
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _salvage(payload: bytes) -> tuple[str | None, int | None]:
    """Ledger and seq of an invalid event, if readable, so its device can be told to drop it."""
    try:
        obj = decode(payload)  # refuses oversized and malformed payloads outright
    except ProtocolError:
        return None, None
    ledger, seq = obj.get("ledger"), obj.get("seq")
    if not (isinstance(ledger, str) and LEDGER_ID_RE.match(ledger)):
        ledger = None
    if not (isinstance(seq, int) and not isinstance(seq, bool) and 1 <= seq <= MAX_INT):
        seq = None
    return ledger, seq


def _register(db: sqlite3.Connection, device: str, site: str, counter: str) -> None:
    db.execute(
        "INSERT INTO devices (id, registered, site, counter) VALUES (?, 1, ?, ?)"
        " ON CONFLICT (id) DO UPDATE SET registered = 1, site = excluded.site, counter = excluded.counter",
        (device, site, counter),
    )
    # One device per counter and one counter per device.
    db.execute("UPDATE counters SET device = NULL WHERE device = ?", (device,))
    db.execute(
        "INSERT INTO counters (site, counter, name, device) VALUES (?, ?, '', ?)"
        " ON CONFLICT DO UPDATE SET device = excluded.device",
        (site, counter, device),
    )


def _names(db: sqlite3.Connection, group: str) -> dict[tuple, str]:
    """Registry names keyed like satisfaction's groups; an empty name counts as none."""
    sql = {"officer": "SELECT id, name FROM officers", "counter": "SELECT site, counter, name FROM counters",
           "site": "SELECT id, name FROM sites"}[group]
    return {row[:-1]: row[-1] for row in db.execute(sql)}


def _badge(uid: str | None) -> str | None:
    # Readers disagree on hex case; the contract allows either.
    return None if uid is None else uid.strip().upper()


def _officer(row: tuple) -> dict:
    return dict(zip(("id", "name", "code", "unit", "badge"), row))


def _device(row: tuple) -> dict:
    id_, registered, site, counter, first, last, online, fw, ledger, backlog, clock_ok, telemetry = row
    return {"device": id_, "registered": bool(registered), "site": site, "counter": counter,
            "first_seen_ms": first, "last_seen_ms": last, "online": None if online is None else bool(online),
            "fw": fw, "ledger": ledger, "backlog": backlog, "clock_ok": None if clock_ok is None else bool(clock_ok),
            "last_telemetry": None if telemetry is None else json.loads(telemetry)}


def _check_ms(value: object, name: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_INT:
        raise ValueError(f"{name} must be an integer of milliseconds since the epoch, got {value!r}")


def _count(value: object, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return value
