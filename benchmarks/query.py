"""The satisfaction query for one month over 10 million stored ratings (>= 200 officers).

Builds (or reuses, with --db) a store holding N rating events spread over a year, 250
officers at 125 counters of 5 sites, with the rollups the store keeps; then times
`Store.satisfaction` for one month, grouped by officer, counter and site (target: p50
<= 50 ms for the officer query). Generation writes rows straight into the store's tables
in big transactions (ingesting 10 million events through MQTT would take the better
part of an hour and measure something else); the rollups are then built from the events
with one GROUP BY, so they are exactly what ingest would have produced.
Run: `python benchmarks/query.py` (first run generates ~3 GB; --db keeps it for reuse).
On PostgreSQL: `--url postgresql://user@host/db`, an empty database (generated there on the first
run, reused after) or one it filled before.
"""
from __future__ import annotations

import argparse
import json
import random
import sqlite3
import statistics
import sys
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._common import bench_dir, machine_info, print_machine  # noqa: E402
from broker.store import Store  # noqa: E402

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
SITES, COUNTERS_PER_SITE, OFFICERS = 5, 25, 250
YEAR_START = date(2026, 1, 1)


def is_postgres(where) -> bool:
    return str(where).startswith(("postgresql://", "postgres://"))


def open_raw(where):
    """A connection to the store's database outside the store: sqlite3's, or the PostgreSQL store's own
    (the same execute/executemany with "?" statements; autocommit, so transactions are explicit)."""
    if is_postgres(where):
        from broker.store import dialect_pg

        return dialect_pg.connect(str(where))
    return sqlite3.connect(where, timeout=30)


def shown(where) -> str:
    """The store's path, or its URL without the password."""
    if not is_postgres(where):
        return str(where)
    from broker.store import dialect_pg

    return dialect_pg.redacted(str(where))


def store_bytes(where) -> int:
    if not is_postgres(where):
        return Path(where).stat().st_size
    db = open_raw(where)
    try:
        return db.execute("SELECT pg_database_size(current_database())").fetchone()[0]
    finally:
        db.close()


def generate(db_path, n: int, seed: int = 1) -> float:
    """Fill the store at `db_path` (a SQLite file, or a PostgreSQL URL) with n ratings."""
    store = Store.open(db_path)  # creates the schema through the real migrations
    for s in range(SITES):
        store.upsert_site(f"site-{s}", f"Xã {s}")
        for c in range(COUNTERS_PER_SITE):
            store.upsert_counter(f"site-{s}", str(c + 1), f"Quầy {c + 1}", device=f"dev-{s}-{c}")
    for o in range(OFFICERS):
        store.upsert_officer(f"o-{o:03d}", f"Cán bộ {o:03d}", code=f"{o:03d}")
    store.close()

    t0 = time.perf_counter()
    postgres = is_postgres(db_path)
    db = open_raw(db_path)
    # Bulk load of benchmark data, not votes.
    db.execute("SET synchronous_commit = off" if postgres else "PRAGMA synchronous=OFF")
    rng = random.Random(seed)
    base_ms = int(datetime(2026, 1, 1, tzinfo=TZ).timestamp() * 1000)
    year_ms = 365 * 86_400_000
    counters = [(s, c) for s in range(SITES) for c in range(COUNTERS_PER_SITE)]
    seqs = {k: 0 for k in counters}
    chunk = 200_000
    for start in range(0, n, chunk):
        rows = []
        for i in range(start, min(n, start + chunk)):
            s, c = counters[rng.randrange(len(counters))]
            seqs[(s, c)] += 1
            seq = seqs[(s, c)]
            ts = base_ms + rng.randrange(year_ms)
            day = datetime.fromtimestamp(ts / 1000, TZ).date().isoformat()
            officer = f"o-{(s * COUNTERS_PER_SITE + c) * 2 + rng.randrange(2):03d}"
            score = rng.choices((1, 2, 3, 4), weights=(1, 2, 5, 8))[0]
            flagged = 1 if rng.random() < 0.03 else 0
            device, site = f"dev-{s}-{c}", f"site-{s}"
            body = json.dumps({
                "v": 1, "type": "rating", "device": device, "site": site, "counter": str(c + 1),
                "ledger": f"{s:08x}{c:08x}", "seq": seq, "ts": ts, "clock_ok": True, "boot": "b",
                "mono": 1.0, "officer": officer, "ticket": None, "score": score, "scale": 4,
                "flags": ["repeat"] if flagged else [], "reason": None,
            }, separators=(",", ":"))
            rows.append((device, f"{s:08x}{c:08x}", seq, "rating", site, str(c + 1), "b", 1.0, ts, "device",
                         ts, day, officer, "event", 4, score, flagged, None, None, body))
        if postgres:
            db.execute("BEGIN")
        db.executemany(
            "INSERT INTO events (device, ledger, seq, type, site, counter, boot, mono, ts, ts_source,"
            " received_ms, day, officer, officer_source, scale, score, flagged, action, reason, body)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
        db.execute("COMMIT") if postgres else db.commit()
        print(f"  {min(n, start + chunk):>10,} events", flush=True)
    if postgres:
        db.execute("BEGIN")
    db.execute("""INSERT INTO rating_days (day, site, counter, officer, scale, score, flagged, n)
                  SELECT day, site, counter, coalesce(officer, ''), scale, score, flagged, count(*)
                  FROM events WHERE type = 'rating' GROUP BY 1, 2, 3, 4, 5, 6, 7""")
    db.execute("""INSERT INTO rating_months (month, site, counter, officer, scale, score, flagged, n)
                  SELECT substr(day, 1, 7), site, counter, officer, scale, score, flagged, sum(n)
                  FROM rating_days GROUP BY 1, 2, 3, 4, 5, 6, 7""")
    db.execute("UPDATE totals SET n = ? WHERE name = 'events'", (n,))
    if postgres:
        db.execute("COMMIT")
        db.execute("ANALYZE")  # the planner's statistics, as autovacuum would gather them soon after
    else:
        db.commit()
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return time.perf_counter() - t0


def exists(where) -> bool:
    """Whether the store holds generated data already (a SQLite file that exists; a filled database)."""
    if not is_postgres(where):
        return Path(where).exists()
    with Store.open(where) as store:
        return store.counts()["events"] > 0


def time_query(store: Store, group: str, month: date, repeats: int) -> list[float]:
    first = month.replace(day=1)
    last = (first + timedelta(days=32)).replace(day=1) - timedelta(days=1)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = store.satisfaction(group, first.isoformat(), last.isoformat())
        times.append((time.perf_counter() - t0) * 1000)
    assert result["rows"], "no rows: the generated data does not cover this month"
    return times


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ratings", type=int, default=10_000_000)
    ap.add_argument("--db", help="reuse (or create) this store file instead of a temporary one")
    ap.add_argument("--url", help="a PostgreSQL database instead of a SQLite file (empty: generated there)")
    ap.add_argument("--repeats", type=int, default=30)
    args = ap.parse_args(argv)

    work, fs = bench_dir()
    db_path = args.url or (Path(args.db) if args.db else work / "hailong.db")
    print_machine(machine_info(), fs, None if args.url else db_path.parent)
    if not exists(db_path):
        print(f"generating {args.ratings:,} ratings into {shown(db_path)} ...", flush=True)
        print(f"generated in {generate(db_path, args.ratings):.0f} s")
    store = Store.open(db_path)
    try:
        total = store.counts()["events"]
        print(f"\nstore: {total:,} ratings, {store_bytes(db_path) / 2**30:.2f} GiB; "
              f"{OFFICERS} officers, {SITES * COUNTERS_PER_SITE} counters, {SITES} sites")
        print(f"{'query (one month, March 2026)':34} {'p50 ms':>8} {'p90 ms':>8} {'max ms':>8}")
        results = {}
        for group in ("officer", "counter", "site"):
            times = time_query(store, group, date(2026, 3, 1), args.repeats)
            q = statistics.quantiles(times, n=10, method="inclusive")
            results[group] = statistics.median(times)
            print(f"satisfaction group={group:8}          {results[group]:8.2f} {q[8]:8.2f} {max(times):8.2f}")
        # A period that is not whole months reads the day rollups.
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            store.satisfaction("officer", "2026-03-10", "2026-04-09")
            times.append((time.perf_counter() - t0) * 1000)
        print(f"satisfaction group=officer, 10 Mar–9 Apr {statistics.median(times):8.2f}")
    finally:
        store.close()
    ok = results["officer"] <= 50
    print(f"\nmonthly officer query p50 = {results['officer']:.2f} ms over {total:,} ratings "
          f"(target <= 50 ms): {'PASS' if ok else 'FAIL'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
