"""The store on SQLite and on PostgreSQL, side by side: ingest, bytes per rating, a month's query.

Feeds the same N rating events (a month of them, from 40 counters) to `Store.ingest` in batches of
500, durable commits on both (SQLite synchronous=FULL; PostgreSQL fsync and synchronous_commit on),
then measures what the stored data takes on disk and the month's satisfaction query. No MQTT: this
is the store alone (benchmarks/ingest.py measures the service with its broker).

PostgreSQL: a throw-away durable cluster from Debian's packages (tests/postgres.py), or an existing
database with --url postgresql://user@host/db (its tables are created there: use an empty database).
Run: `python benchmarks/store_backends.py [--events 100000] [--url ...]`.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._common import bench_dir, machine_info, print_machine  # noqa: E402
from broker.store import Incoming, Store  # noqa: E402
from protocol.codec import encode  # noqa: E402
from protocol.events import make_event  # noqa: E402

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
DEVICES, BATCH = 40, 500
MONTH_START_MS = int(datetime(2026, 3, 1, tzinfo=TZ).timestamp() * 1000)
MONTH_MS = 31 * 86_400_000


def batches(n: int) -> list[list[Incoming]]:
    events = []
    for i in range(n):
        d = i % DEVICES
        ts = MONTH_START_MS + i * (MONTH_MS // n)  # spread over March, in arrival order
        events.append(Incoming(f"dev-{d}", encode(make_event(
            "rating", device=f"dev-{d}", site=f"site-{d % 5}", counter=str(d), ledger=f"{d:016x}",
            seq=i // DEVICES + 1, ts=ts, clock_ok=True, boot="boot", mono=float(i), officer=f"o-{d % 50:03d}",
            ticket=None, score=1 + i % 4, scale=4)), ts + 300))
    return [events[i:i + BATCH] for i in range(0, n, BATCH)]


def run(where: str, n: int, repeats: int) -> dict:
    store = Store.open(where)
    try:
        for d in range(DEVICES):
            store.register_device(f"dev-{d}", f"site-{d % 5}", str(d))
        work = batches(n)
        t0 = time.perf_counter()
        for batch in work:
            store.ingest(batch)
        ingest_s = time.perf_counter() - t0
        assert store.counts()["events"] == n
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            rows = store.satisfaction("officer", "2026-03-01", "2026-03-31")["rows"]
            times.append((time.perf_counter() - t0) * 1000)
        assert sum(r["ratings"] for r in rows) == n
        return {"events_s": n / ingest_s, "bytes": size_of(store), "month_ms": statistics.median(times)}
    finally:
        store.close()


def size_of(store: Store) -> int:
    if store.path is not None:
        store._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return store.path.stat().st_size
    tables = store._db.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    return sum(store._db.execute("SELECT pg_total_relation_size(?)", (t,)).fetchone()[0] for (t,) in tables)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--url", help="an empty PostgreSQL database; default: a throw-away cluster")
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args(argv)

    work, fs = bench_dir()
    print_machine(machine_info(), fs, work)
    cluster = None
    url = args.url
    if url is None:
        from tests.postgres import PostgresCluster, find_bin_dir

        bin_dir = find_bin_dir()
        if bin_dir is None:
            print("PostgreSQL not installed (/usr/lib/postgresql/*/bin): give --url", file=sys.stderr)
            return 2
        cluster = PostgresCluster(bin_dir, durable=True).start()
        url = cluster.create_database(migrated=False)
        print(f"PostgreSQL: throw-away cluster ({bin_dir.parent.name}), fsync on, in {cluster.root}")
    try:
        results = {"SQLite": run(str(work / "hailong.db"), args.events, args.repeats),
                   "PostgreSQL": run(url, args.events, args.repeats)}
    finally:
        if cluster is not None:
            cluster.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{args.events:,} ratings from {DEVICES} counters over one month, ingested in batches of {BATCH}")
    print(f"{'store':12} {'events/s':>10} {'bytes/rating':>13} {'month query ms (officer)':>26}")
    for name, r in results.items():
        print(f"{name:12} {r['events_s']:10,.0f} {r['bytes'] / args.events:13,.0f} {r['month_ms']:26.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
