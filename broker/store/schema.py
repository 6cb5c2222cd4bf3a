"""The store's schema: its migrations, applied in order when a store is opened (docs/store.md).

Append-only: a released migration is never edited, a change is a new function at the end of
MIGRATIONS. The schema version (PRAGMA user_version) says how many have been applied. The
statements are SQLite's, as released; a store on another database gets its own list.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable

import broker.store.alerts_schema as alerts_schema
import broker.store.deadletters as deadletters
import broker.store.dialect as dialect
import broker.store.fleet_schema as fleet_schema
from broker.store.dialect import Connection
from broker.store.errors import StoreError

__all__ = ["MIGRATIONS", "migrate"]


def _v1_initial(db: Connection) -> None:
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


def _v2_flagged_index(db: Connection) -> None:
    # The dashboard's misuse page counts flagged presses by counter and hour. Only flagged rows,
    # so it stays small, and covering (ts, flagged included) so the count never touches the
    # 4 GB events table: 340 ms -> ~80 ms for a month over 10 M ratings.
    db.execute("CREATE INDEX IF NOT EXISTS events_flagged_hours ON events (day, site, counter, ts, flagged)"
               " WHERE flagged = 1")


def _v3_known_devices(db: Connection) -> None:
    # Only known devices count (docs/store.md). held: NULL = counted, else why not; events already
    # stored keep NULL, so history does not change. discarded_ms: when an admin said "never count these".
    db.execute("ALTER TABLE events ADD COLUMN held TEXT")
    db.execute("ALTER TABLE events ADD COLUMN discarded_ms INTEGER")
    db.execute("CREATE INDEX events_held ON events (device, site, counter) WHERE held IS NOT NULL")
    # The misuse page counts counted presses only: its covering index must leave held ones out.
    db.execute("DROP INDEX IF EXISTS events_flagged_hours")
    db.execute("CREATE INDEX events_flagged_hours ON events (day, site, counter, ts, flagged)"
               " WHERE flagged = 1 AND held IS NULL")
    _bound_dead_letters(db)
    # A conflicting duplicate is its own total now; every one was dead-lettered, so they can be told apart.
    (conflicts,) = db.execute(
        "SELECT count(*) FROM dead_letters WHERE reason LIKE 'conflicting duplicate%'").fetchone()
    db.execute("UPDATE totals SET n = n - ? WHERE name = 'duplicates'", (conflicts,))
    db.execute("INSERT INTO totals VALUES ('conflicts', ?), ('dead_letters_dropped', 0), ('held', 0)",
               (conflicts,))
    # Ids whose every message was rejected are not devices: nothing valid was ever heard from them.
    db.execute("DELETE FROM devices WHERE registered = 0 AND site IS NULL AND online IS NULL AND fw IS NULL"
               " AND ledger IS NULL AND telemetry IS NULL")


def _bound_dead_letters(db: Connection) -> None:
    """Dead letters keep a 4 KiB prefix of their payload, with its whole size and SHA-256."""
    db.execute("ALTER TABLE dead_letters ADD COLUMN size INTEGER")
    db.execute("ALTER TABLE dead_letters ADD COLUMN sha256 TEXT")
    for (id_,) in db.execute("SELECT id FROM dead_letters").fetchall():  # one payload in memory at a time
        (payload,) = db.execute("SELECT payload FROM dead_letters WHERE id = ?", (id_,)).fetchone()
        payload = bytes(payload)
        db.execute("UPDATE dead_letters SET payload = ?, size = ?, sha256 = ? WHERE id = ?",
                   (deadletters.prefix(payload, 4096), len(payload), hashlib.sha256(payload).hexdigest(), id_))


def _v4_one_device_per_counter(db: Connection) -> None:
    # Registering a device at a counter used to leave the device registered there before registered
    # too, and both counted. Keep the one the counter names (the latest registered), unregister the
    # others: their later events are held. What they sent stays counted.
    db.execute("UPDATE devices SET registered = 0 WHERE registered = 1 AND EXISTS (SELECT 1 FROM counters AS c"
               " WHERE c.site = devices.site AND c.counter = devices.counter AND c.device IS NOT NULL"
               " AND c.device != devices.id)")


def _v5_queues(db: Connection) -> None:
    # The queue (issue 13, docs/store.md "The queue"). No foreign keys, as in _v1_initial. A prefix is
    # unique in its site: two queues printing "A012" the same day would be one ticket.
    statements = [
        """CREATE TABLE queues (site TEXT NOT NULL, queue TEXT NOT NULL, name TEXT NOT NULL, prefix TEXT NOT NULL,
            PRIMARY KEY (site, queue)) WITHOUT ROWID""",
        "CREATE UNIQUE INDEX queues_prefix ON queues (site, prefix)",
        """CREATE TABLE counter_queues (site TEXT NOT NULL, counter TEXT NOT NULL, queue TEXT NOT NULL,
            PRIMARY KEY (site, counter, queue)) WITHOUT ROWID""",
        # The last number handed out (to a request, a block, or seen in a take) per queue and site-local day.
        """CREATE TABLE queue_numbers (site TEXT NOT NULL, day TEXT NOT NULL, queue TEXT NOT NULL,
            last INTEGER NOT NULL, PRIMARY KEY (site, day, queue)) WITHOUT ROWID""",
        # What each kiosk request was given (a number: first = last; a block: first..last), so a
        # redelivered request gets the same answer instead of more numbers.
        """CREATE TABLE queue_allocations (device TEXT NOT NULL, req TEXT NOT NULL, op TEXT NOT NULL,
            site TEXT NOT NULL, day TEXT NOT NULL, queue TEXT NOT NULL, first INTEGER NOT NULL,
            last INTEGER NOT NULL, at_ms INTEGER NOT NULL, PRIMARY KEY (device, req)) WITHOUT ROWID""",
        "CREATE INDEX queue_blocks ON queue_allocations (site, day, queue) WHERE op = 'block'",
        # One row per stored take event; times are the service's ms (events.ts).
        """CREATE TABLE queue_tickets (id INTEGER PRIMARY KEY, site TEXT NOT NULL, day TEXT NOT NULL,
            queue TEXT NOT NULL, ticket TEXT NOT NULL, number INTEGER NOT NULL, priority INTEGER NOT NULL,
            taken_ts INTEGER NOT NULL, device TEXT NOT NULL, ledger TEXT NOT NULL, seq INTEGER NOT NULL,
            source TEXT NOT NULL, status TEXT NOT NULL, counter TEXT, officer TEXT, called_ts INTEGER,
            recalls INTEGER NOT NULL DEFAULT 0, recalled_ts INTEGER, done_ts INTEGER, rating_event INTEGER)""",
        "CREATE UNIQUE INDEX queue_tickets_number ON queue_tickets (site, day, ticket)",
        "CREATE UNIQUE INDEX queue_tickets_event ON queue_tickets (device, ledger, seq)",
        "CREATE INDEX queue_tickets_waiting ON queue_tickets (site, day, queue, priority, taken_ts)"
        " WHERE status = 'waiting'",
        "CREATE INDEX queue_tickets_called ON queue_tickets (site, counter) WHERE status = 'called'",
        # Every call, in order: the hall display and the dashboard poll it after an id (AUTOINCREMENT:
        # an id is never reused, even after the last row is deleted).
        """CREATE TABLE queue_calls (id INTEGER PRIMARY KEY AUTOINCREMENT, site TEXT NOT NULL, ts INTEGER NOT NULL,
            ticket TEXT NOT NULL, queue TEXT NOT NULL, counter TEXT NOT NULL, officer TEXT, action TEXT NOT NULL,
            recall INTEGER NOT NULL, device TEXT, ledger TEXT, seq INTEGER)""",
        "CREATE INDEX queue_calls_site ON queue_calls (site, id)",
        # The call events already applied, and the ticket each answered with: a call whose event was
        # committed but not applied (the service died in between) is applied when it is sent again.
        """CREATE TABLE queue_applied (device TEXT NOT NULL, ledger TEXT NOT NULL, seq INTEGER NOT NULL,
            ticket TEXT, PRIMARY KEY (device, ledger, seq)) WITHOUT ROWID""",
    ]
    for sql in statements:
        db.execute(sql)
def _v6_alerts(db: Connection) -> None:
    # Opening hours, alerts and their delivery outbox (broker/store/alerts_schema.py, docs/alerts.md).
    alerts_schema.create(db)
def _v7_ratings_by_time(db: Connection) -> None:
    # The overview lists the latest ratings by when they were given, not when they were stored (a
    # counter back from an outage stores its backlog late). Counted ratings only, like the list; the
    # second one walks one site's, for a principal limited to a few sites.
    db.execute("CREATE INDEX events_ratings_by_time ON events (ts) WHERE type = 'rating' AND held IS NULL")
    db.execute("CREATE INDEX events_site_ratings_by_time ON events (site, ts) WHERE type = 'rating' AND held IS NULL")
def _v8_fleet_updates(db: Connection) -> None:
    # Fleet updates: releases, rollouts, each device's part (broker/store/releases.py).
    fleet_schema.create_tables(db)


# Append-only: a release never edits a migration that has shipped.
MIGRATIONS: list[Callable[[Connection], None]] = [_v1_initial, _v2_flagged_index, _v3_known_devices,
                                                  _v4_one_device_per_counter, _v5_queues, _v6_alerts,
                                                  _v7_ratings_by_time, _v8_fleet_updates]


def migrate(db: Connection, path: Path | str, migrations: list | None = None, sql=dialect) -> None:
    """Bring the database up to the last migration; StoreError if it is newer than this program.

    `migrations` and `sql`: another database's list (broker.store.schema_pg) and dialect module.
    """
    migrations = MIGRATIONS if migrations is None else migrations
    for target in range(1, len(migrations) + 1):
        # One transaction per step, holding the write lock, so two processes
        # opening the same new database cannot both apply a step.
        db.execute(sql.BEGIN_WRITE)
        try:
            version = sql.schema_version(db)
            if version > len(migrations):
                raise StoreError(f"store {path} has schema version {version}, newer than this program's "
                                 f"{len(migrations)}: refusing to use it")
            if version < target:
                migrations[target - 1](db)
                sql.set_schema_version(db, target)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
