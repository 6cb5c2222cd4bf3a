"""Server time of every dashboard page over 10 million stored ratings (target: <= 300 ms each).

Stands the central service up in-process the way `hailong broker run` does (embedded MQTT
broker, Store, Auth, Ingest, the FastAPI app with the dashboard mounted, uvicorn on a
loopback port), logs in through the real login form with httpx, then times each page:
one warm-up request, then --repeats measured ones. Each time is `time.perf_counter()`
around the whole httpx request on a kept-alive loopback connection: the server's work
(session check, queries, template rendering or the XLSX build) plus one loopback round
trip and reading the body.

The store is `benchmarks/query.py`'s: 250 officers, 125 counters at 5 sites, ratings
spread over 2026. `--db PATH` reuses that file if it exists (else generates it there);
without --db a fresh store is generated in a temporary directory. `--url postgresql://...` runs the
service on that PostgreSQL database instead (query.py's data, generated there if it is empty).
Run: `python benchmarks/pages.py --db /var/tmp/hl-query/hailong.db`
"""
from __future__ import annotations

import argparse
import json
import re
import secrets
import shutil
import sqlite3
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from benchmarks._common import bench_dir, machine_info, percentile, print_machine  # noqa: E402
from benchmarks.query import (COUNTERS_PER_SITE, OFFICERS, SITES, exists, generate, open_raw,  # noqa: E402
                              shown, store_bytes)

TARGET_MS = 300.0
USER = "bench-pages"
CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')

# (label, path, kind, minimum body size in bytes)
PAGES = [
    ("overview", "/", "html", 2000),
    ("officers (March)", "/officers?period=2026-03", "html", 20000),
    ("officer o-010 (March)", "/officers/o-010?period=2026-03", "html", 2000),
    ("devices", "/devices", "html", 10000),
    ("misuse (March)", "/misuse?period=2026-03", "html", 2000),
    ("reports", "/reports", "html", 1000),
    ("API satisfaction officer, March", "/api/v1/satisfaction?group=officer&from=2026-03-01&to=2026-03-31",
     "json", 10000),
    ("API report XLSX officer, March", "/api/v1/reports/satisfaction.xlsx?group=officer&month=2026-03",
     "xlsx", 5000),
]


def check(label: str, kind: str, min_bytes: int, r: httpx.Response) -> None:
    """The response must be a 200 with a real body, not an error page or a login redirect."""
    if r.status_code != 200:
        raise RuntimeError(f"{label}: HTTP {r.status_code} {r.text[:300]!r}")
    body = r.content
    if len(body) < min_bytes:
        raise RuntimeError(f"{label}: body only {len(body)} bytes (expected >= {min_bytes})")
    ctype = r.headers.get("content-type", "")
    if kind == "html":
        if "text/html" not in ctype or b"</html>" not in body or b'action="/login"' in body:
            raise RuntimeError(f"{label}: not a dashboard page ({ctype})")
    elif kind == "json":
        rows = r.json().get("rows")
        if not rows or len(rows) < OFFICERS * 0.9:
            raise RuntimeError(f"{label}: only {len(rows or [])} rows in the answer")
    elif kind == "xlsx":
        if not body.startswith(b"PK"):
            raise RuntimeError(f"{label}: not an XLSX file ({ctype})")


def drop_user(db_path) -> None:
    """Remove the benchmark's dashboard user (left over from an earlier, interrupted run)."""
    db = open_raw(db_path)
    try:
        db.execute("DELETE FROM auth_users WHERE name = ?", (USER,))
        if isinstance(db, sqlite3.Connection):
            db.commit()
    finally:
        db.close()


def login(base_url: str, password: str) -> httpx.Client:
    c = httpx.Client(base_url=base_url, timeout=60)
    page = c.get("/login")
    m = CSRF_RE.search(page.text)
    if page.status_code != 200 or not m:
        raise RuntimeError(f"login form: HTTP {page.status_code}, CSRF field {'found' if m else 'missing'}")
    r = c.post("/login", data={"csrf": m.group(1), "user": USER, "password": password, "next": "/"})
    if r.status_code != 303:
        raise RuntimeError(f"login failed: HTTP {r.status_code}")
    return c


def time_pages(c: httpx.Client, repeats: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {}
    for label, path, kind, min_bytes in PAGES:
        check(label, kind, min_bytes, c.get(path))  # warm-up: page cache, SQLite cache, templates
        ms = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            r = c.get(path)
            ms.append((time.perf_counter() - t0) * 1000)
            check(label, kind, min_bytes, r)
        times[label] = ms
    return times


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", help="reuse (or create) this store file instead of a temporary one")
    ap.add_argument("--url", help="a PostgreSQL database instead of a SQLite file (empty: generated there)")
    ap.add_argument("--ratings", type=int, default=10_000_000, help="ratings to generate when the store is new")
    ap.add_argument("--repeats", type=int, default=10, help="measured requests per page (after one warm-up)")
    ap.add_argument("--json", metavar="FILE", help="save the raw times (ms) here")
    args = ap.parse_args(argv)
    if args.repeats < 1:
        ap.error("--repeats must be at least 1")

    from broker.config import config_from_dict
    from broker.embedded import EmbeddedBroker
    from broker.service import Service
    from provisioning.mosquitto_files import write_local_site
    from tests.mosquitto import free_port

    work, fs = bench_dir()
    try:
        db_path = args.url or (Path(args.db) if args.db else work / "hailong.db").resolve()
        print_machine(machine_info(), fs, None if args.url else db_path.parent)
        if not exists(db_path):
            print(f"generating {args.ratings:,} ratings into {shown(db_path)} ...", flush=True)
            print(f"generated in {generate(db_path, args.ratings):.0f} s")
        state = work / "state"
        state.mkdir()
        passwd, acl = write_local_site(work / "mosquitto", {"hailong-service": "bench-only"})
        cfg = config_from_dict({
            "service": {"data_dir": str(state)},
            "mqtt": {"embedded": True, "port": free_port(), "password": "bench-only",
                     "passwd_file": str(passwd), "acl_file": str(acl)},
            "store": {"url": args.url or f"sqlite:///{db_path}"},  # an absolute path: sqlite:////abs/path
            "http": {"port": free_port()},
        })

        # The first open of a store made before migration 2 builds its partial index: do
        # that here, outside the timed part, and say how long it took.
        t0 = time.perf_counter()
        service = Service.assemble(cfg)  # the service as `hailong broker run` builds it
        open_s = time.perf_counter() - t0
        embedded = client = None
        try:
            total = service.store.counts()["events"]
            print(f"\nstore: {total:,} events, {store_bytes(db_path) / 2**30:.2f} GiB; "
                  f"{OFFICERS} officers, {SITES * COUNTERS_PER_SITE} counters, {SITES} sites; "
                  f"service assembled (store migrations included) in {open_s:.1f} s")
            embedded = EmbeddedBroker.from_config(cfg.mqtt).start()
            service.ingest.start()
            if not service.ingest.connected.wait(15):
                raise RuntimeError("ingest did not connect to the embedded MQTT broker")
            server = service.api.start()
            drop_user(db_path)
            password = secrets.token_urlsafe(18)
            service.auth.add_user(USER, "admin", password)
            client = login(server.url, password)

            times = time_pages(client, args.repeats)
        finally:
            if client is not None:
                client.close()
            service.close()
            if embedded is not None:
                embedded.stop()
            try:
                drop_user(db_path)
            except Exception as e:  # noqa: BLE001  pragma: no cover - reported, not fatal
                print(f"warning: could not remove user {USER!r}: {e}", file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # the state dir; and the generated store without --db

    print(f"\nserver time per request over loopback HTTP (session check, queries, rendering, "
          f"one round trip), {args.repeats} requests each after one warm-up")
    width = max(len(p[0]) for p in PAGES)
    print(f"{'page':{width}}  {'p50 ms':>8} {'p90 ms':>8} {'max ms':>8}  path")
    p50s, p90s = {}, {}
    for label, path, _, _ in PAGES:
        ms = times[label]
        p50s[label], p90s[label] = statistics.median(ms), percentile(ms, 90)
        print(f"{label:{width}}  {p50s[label]:8.1f} {p90s[label]:8.1f} {max(ms):8.1f}  {path}")
    worst = max(p50s, key=p50s.get)
    worst90 = max(p90s, key=p90s.get)
    over = [label for label in p50s if p50s[label] > TARGET_MS]
    print(f"\nslowest p50: {worst} {p50s[worst]:.1f} ms; max p90: {worst90} {p90s[worst90]:.1f} ms")
    if over:
        print("over the target: " + ", ".join(over))
    print(f"every page p50 <= {TARGET_MS:.0f} ms with {total:,} ratings: {'FAIL' if over else 'PASS'}")
    if args.json:
        Path(args.json).write_text(json.dumps({"ratings": total, "store_open_s": open_s, "times_ms": times},
                                              indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
