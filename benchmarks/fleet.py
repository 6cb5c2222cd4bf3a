"""A fleet of simulated counters against one Mosquitto and the real service.

Thousands of lightweight counters in this one asyncio process (benchmarks/_fleet_counter.py,
protocol v1 over benchmarks/_mqttlite.py), a real Mosquitto configured as deploy/mosquitto.conf
(passwords and ACL as provisioned, or anonymous with --anonymous) and `hailong broker run` as a
separate process on the store given by --store-url (SQLite in a temporary directory by default;
a postgresql:// URL where the store supports it). Every simulated device is registered in the
store first, so its events count (docs/store.md, "Only known devices count").

Phases: connect N counters; idle (status and telemetry only); presses at a province's peak rate
and at multiples of it (press -> the service's ack for that seq, p50/p99); a broker restart with a
backlog on every counter (all reconnect at once with the counters' jittered backoff; time until
every event is acked); then the store's counts (each press stored exactly once) and growth.

    python benchmarks/fleet.py --counters 10000          # the full run (docs/performance.md)
    python benchmarks/fleet.py --counters 30 --phase-s 3 --idle-s 1 --outage-s 1   # a smoke run
    python benchmarks/fleet.py --counters 10000 --postgres --instances 2  # two instances, one PostgreSQL

--postgres starts a throw-away PostgreSQL (tests/postgres.py) with its default durability; --instances N
runs N services as docs/instances.md sets them up (one shared group, a client id each, one session
secret) and reports each one's CPU, RSS and share of the events (its /metrics).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import secrets
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks._common import (  # noqa: E402
    bench_dir, machine_info, percentile, print_machine, proc_cpu_s, proc_status)
from benchmarks._fleet_counter import Fleet, FleetOptions, SimCounter  # noqa: E402
from benchmarks._fleet_report import report  # noqa: E402
from benchmarks._fleet_service import (  # noqa: E402
    ServiceProcess, instance_configs, metrics_of, postmaster_pid, service_config, throwaway_postgres, viewer_token)
from tests.mosquitto import Mosquitto, free_port  # noqa: E402

# The figures: ~16,000 counters in ~3,300 commune centres; a province runs ~100 centres.
COUNTRY_COUNTERS, COUNTRY_CENTRES, PROVINCE_CENTRES = 16_000, 3_300, 100
COUNTERS_PER_CENTRE = COUNTRY_COUNTERS / COUNTRY_CENTRES  # ~4.85
# Peak hour at a busy counter: one citizen a minute, each a NEXT and a rating, one in ten ratings
# pressed twice (a "repeat"): 2.1 events a minute.
PEAK_EVENTS_PER_COUNTER_MIN = 2.1
PROVINCE_COUNTERS = round(PROVINCE_CENTRES * COUNTERS_PER_CENTRE)  # ~485
PROVINCE_PEAK_EPS = PROVINCE_COUNTERS * PEAK_EVENTS_PER_COUNTER_MIN / 60  # ~17 events/s
SERVICE_USER = "hailong-service"


# ----- the machine's limits ----------------------------------------------------------


def raise_nofile(need: int) -> dict:
    """Raise RLIMIT_NOFILE to `need` (the hard limit too, as root); Mosquitto and the service inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = max(soft, need)
    if target > hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, target))
        except (ValueError, PermissionError):
            target = hard  # not root: as far as the hard limit allows
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    else:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    now = resource.getrlimit(resource.RLIMIT_NOFILE)
    return {"before": [soft, hard], "after": list(now), "needed": need, "enough": now[0] >= need}


def nofile_of(pid: int) -> str:
    try:
        for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
            if line.startswith("Max open files"):
                return line.split()[3]
    except OSError:
        pass
    return "?"


def cpu_jiffies_total() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, from /proc/stat: the other developers' load."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


# ----- broker, credentials, registry ---------------------------------------------------


class FleetMosquitto(Mosquitto):
    """tests/mosquitto.py's broker with deploy/mosquitto.conf's settings for a fleet.

    As deployed, the service has a listener of its own (there: loopback 1883, counters on 8883), so
    after a broker restart it does not queue behind 10,000 counters for the accept backlog (100).
    """

    def __init__(self, workdir: Path, counters: int, auth: tuple[Path, Path] | None):
        self.service_port = free_port()
        extra = (f"max_connections {counters + 100}\n"
                 "set_tcp_nodelay true\n"
                 "persistent_client_expiration 14d\n"
                 "max_packet_size 66560\n"
                 f"listener {self.service_port} 127.0.0.1\n")
        if auth is not None:
            extra += f"password_file {auth[0]}\nacl_file {auth[1]}\n"
        super().__init__(workdir, extra=extra, anonymous=auth is None)


def write_credentials(work: Path, devices: list[str], service_password: str) -> tuple[dict, Path, Path, float]:
    """One password per device and the service's, hashed as `hailong provision` does; ACL as provisioned."""
    from provisioning.mosquitto_files import write_local_site

    t0 = time.monotonic()
    passwords = {d: secrets.token_hex(8) for d in devices}
    passwd, acl = write_local_site(work / "mosquitto-auth", {**passwords, SERVICE_USER: service_password})
    return passwords, passwd, acl, time.monotonic() - t0


def fleet_layout(n: int) -> list[tuple[str, str, str]]:
    """(device, site, counter) for n counters, ~4.85 to a centre as in the country."""
    per = max(1, round(COUNTERS_PER_CENTRE))
    return [(f"fleet-{i:05d}", f"centre-{i // per:04d}", str(i % per + 1)) for i in range(n)]


def register(store_url: str, layout: list[tuple[str, str, str]]) -> float:
    """Sites and counters in the store, each device registered at its counter (so its events count)."""
    from broker.store import Store

    t0 = time.monotonic()
    with Store.open(store_url) as store:
        for site in sorted({s for _, s, _ in layout}):
            store.upsert_site(site, f"Trung tâm {site}")
        for device, site, counter in layout:
            store.upsert_counter(site, counter, f"Quầy {counter}", device=device)
    return time.monotonic() - t0


def store_counts(store_url: str) -> dict:
    from broker.store import Store

    with Store.open(store_url) as store:
        return store.counts()


def sqlite_bytes(store_url: str) -> int | None:
    """The SQLite store's size on disk (database and WAL); None for another engine."""
    if not store_url.startswith("sqlite:"):
        return None
    from broker.store.connection import path_of

    path = path_of(store_url)
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())


def store_tables(store_url: str) -> dict[str, int] | None:
    """Bytes on disk per table, its indexes included (SQLite's dbstat, PostgreSQL's pg_total_relation_size)."""
    if store_url.startswith(("postgresql://", "postgres://")):
        import psycopg

        with psycopg.connect(store_url) as db:
            return dict(db.execute("SELECT tablename, pg_total_relation_size(quote_ident(tablename)) "
                                   "FROM pg_tables WHERE schemaname = 'public'").fetchall())
    if not store_url.startswith("sqlite:"):
        return None
    import sqlite3

    from broker.store.connection import path_of

    with sqlite3.connect(path_of(store_url)) as db:
        rows = db.execute("SELECT coalesce(m.tbl_name, d.name), sum(d.pgsize) FROM dbstat d "
                          "LEFT JOIN sqlite_schema m ON m.name = d.name GROUP BY 1").fetchall()
    return {name: size for name, size in rows}


def sqlite_backup_check(store_url: str, work: Path) -> dict | None:
    """Back the store up with SQLite's online backup (as `sqlite3 DB .backup FILE` does) and open the copy."""
    if not store_url.startswith("sqlite:"):
        return None
    import sqlite3

    from broker.store import Store
    from broker.store.connection import path_of

    copy = work / "backup" / "hailong.db"
    copy.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    with sqlite3.connect(path_of(store_url)) as src, sqlite3.connect(copy) as dst:
        src.backup(dst)
    seconds = time.monotonic() - t0
    with Store.open(copy) as restored:
        counts = restored.counts()
    return {"seconds": seconds, "bytes": copy.stat().st_size, "counts_equal": counts == store_counts(store_url)}


# ----- sampling --------------------------------------------------------------------------


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of a server and every process under it, live or exited (PostgreSQL: one per connection)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return 0.0
    own = sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")  # utime stime cutime cstime
    return own + sum(tree_cpu_s(int(c)) for c in children)


def sample(pids: dict[str, int]) -> dict:
    """CPU and RSS of each process; with several instances ("service-1", ...) also their sum as "service".
    "postgres" is the whole server (CPU only: its processes share their buffers)."""
    out = {"t": time.monotonic(), "jiffies": cpu_jiffies_total()}
    for name, pid in pids.items():
        if name == "postgres":
            out[name] = {"cpu_s": tree_cpu_s(pid), "rss_kib": None}
        else:
            out[name] = {"cpu_s": proc_cpu_s(pid), "rss_kib": proc_status(pid).get("VmRSS")}
    instances = [out[n] for n in pids if n.startswith("service-")]
    if instances:
        out["service"] = {"cpu_s": sum(i["cpu_s"] or 0 for i in instances),
                          "rss_kib": sum(i["rss_kib"] or 0 for i in instances)}
    return out


def names(pids: dict[str, int]) -> list[str]:
    """What a phase reports: every process, and "service" (all instances together) when there are several."""
    return list(pids) if "service" in pids else [*pids, "service"]


def usage(a: dict, b: dict, name: str) -> dict:
    """CPU seconds and share of one core a process used between two samples, its RSS at the second."""
    dt = b["t"] - a["t"]
    cpu = (b[name]["cpu_s"] or 0) - (a[name]["cpu_s"] or 0)
    return {"cpu_s": cpu, "cpu_share": cpu / dt if dt > 0 else 0.0, "rss_mib": (b[name]["rss_kib"] or 0) / 1024}


def others_share(a: dict, b: dict, ours: list[str]) -> float:
    """Cores' worth of CPU used by everything but our processes (other developers' tests)."""
    busy = (b["jiffies"][0] - a["jiffies"][0]) / os.sysconf("SC_CLK_TCK")
    mine = sum(usage(a, b, n)["cpu_s"] for n in ours)
    return max(0.0, busy - mine) / (b["t"] - a["t"])


def lat_summary(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    ms = [v * 1000 for v in values]
    return {"n": len(ms), "p50_ms": percentile(ms, 50), "p99_ms": percentile(ms, 99), "max_ms": max(ms)}


async def wait_for(predicate, timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(step)
    return True


# ----- phases ------------------------------------------------------------------------------


async def resend_timer(counters: list[SimCounter]) -> None:
    while True:
        await asyncio.sleep(1.0)
        now = time.monotonic()
        for c in counters:
            if c.in_flight:
                c.check_timeouts(now)


async def connect_phase(fleet: Fleet, counters: list[SimCounter], pids: dict, timeout: float) -> dict:
    a = sample(pids)
    t0 = time.monotonic()
    tasks = [asyncio.create_task(c.run()) for c in counters]
    ok = await wait_for(lambda: fleet.ready >= len(counters), timeout)
    b = sample(pids)
    return {"seconds": fleet.last_ready_t - t0, "ready": fleet.ready, "all": ok, "refused": fleet.refused,
            "per_s": fleet.ready / max(1e-9, fleet.last_ready_t - t0),
            "service": usage(a, b, "service"), "mosquitto": usage(a, b, "mosquitto"), "tasks": tasks}


async def idle_phase(pids: dict, seconds: float) -> dict:
    """Connected, nobody pressing: keepalives, telemetry and the service's own timers."""
    a = sample(pids)
    await asyncio.sleep(seconds)
    b = sample(pids)
    return {"seconds": seconds, **{n: usage(a, b, n) for n in names(pids)},
            "others_cores": others_share(a, b, list(pids))}


async def press_at(counters: list[SimCounter], rate: float, seconds: float, rng: random.Random) -> None:
    """Poisson presses at `rate` a second on random counters, open loop (late ones catch up)."""
    t_end = time.monotonic() + seconds
    next_t = time.monotonic()
    while True:
        next_t += rng.expovariate(rate)
        if next_t >= t_end:
            return
        delay = next_t - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        rng.choice(counters).press(time.monotonic())


async def rate_phase(fleet: Fleet, counters: list[SimCounter], pids: dict, *, label: str, rate: float,
                     seconds: float, drain_timeout: float, idle: dict, rng: random.Random) -> dict:
    fleet.phase = label
    a = sample(pids)
    await press_at(counters, rate, seconds, rng)
    pressed_until = time.monotonic()
    acked = await wait_for(lambda: fleet.pending == 0, drain_timeout)
    b = sample(pids)
    fleet.phase = "between"
    pressed = fleet.pressed.get(label, 0)
    service = usage(a, b, "service")
    # When the slow acks were pressed (seconds into the phase): periodic stalls show here.
    stalls = sorted({round(t - a["t"]) for ph, t, _ in fleet.slow if ph == label})
    # CPU the service spends on presses alone: its idle share (telemetry, timers) taken off.
    marginal = service["cpu_s"] - idle["service"]["cpu_share"] * (b["t"] - a["t"])
    return {"label": label, "rate": rate, "seconds": seconds, "pressed": pressed,
            "pressed_eps": pressed / seconds, "all_acked": acked,
            "drain_after_s": b["t"] - pressed_until,
            "latency": lat_summary(fleet.latency.get(label, [])),
            "ticket_latency": lat_summary(fleet.ticket_latency.get(label, [])),
            "slow_presses_at_s": stalls,
            **{n: usage(a, b, n) for n in names(pids)},
            "service_cpu_ms_per_event": service["cpu_s"] / max(1, pressed) * 1000,
            "service_marginal_cpu_ms_per_event": max(0.0, marginal) / max(1, pressed) * 1000,
            "others_cores": others_share(a, b, list(pids))}


async def burst_phase(fleet: Fleet, counters: list[SimCounter], pids: dict, *, per_counter: int,
                      timeout: float) -> dict:
    """Every counter presses `per_counter` times at once while connected: the service's sustained rate."""
    fleet.phase = "burst"
    a = sample(pids)
    resends0 = fleet.resends
    t0 = time.monotonic()
    for c in counters:
        for _ in range(per_counter):
            c.press(t0)
    ok = await wait_for(lambda: fleet.pending == 0, timeout)
    b = sample(pids)
    fleet.phase = "between"
    n = fleet.pressed.get("burst", 0)
    took = fleet.last_ack_t - t0
    return {"events": n, "seconds": took, "done": ok, "eps": n / took if took > 0 else None,
            "resends": fleet.resends - resends0, "tickets": len(fleet.ticket_latency.get("burst", [])),
            "latency": lat_summary(fleet.latency.get("burst", [])), **{k: usage(a, b, k) for k in names(pids)},
            "service_cpu_ms_per_event": usage(a, b, "service")["cpu_s"] / max(1, n) * 1000,
            "others_cores": others_share(a, b, list(pids))}


async def restart_phase(fleet: Fleet, counters: list[SimCounter], broker: FleetMosquitto, pids: dict, *,
                        backlog: int, outage_s: float, timeout: float) -> dict:
    """Stop the broker, let every counter store `backlog` presses, start it again: all reconnect at once."""
    fleet.phase = "outage"
    t_stop = time.monotonic()
    await asyncio.to_thread(broker.stop)
    stop_s = time.monotonic() - t_stop
    await wait_for(lambda: fleet.ready == 0, 60)
    now = time.monotonic()
    for c in counters:
        for _ in range(backlog):
            c.press(now)
    await asyncio.sleep(outage_s)
    others = {k: v for k, v in pids.items() if k != "mosquitto"}
    a = sample(others)
    failed0, resends0 = fleet.failed_attempts, fleet.resends
    t0 = time.monotonic()
    await asyncio.to_thread(broker.start)
    pids["mosquitto"] = broker.proc.pid
    listening = time.monotonic() - t0
    ok = await wait_for(lambda: fleet.ready == len(counters) and fleet.pending == 0, timeout)
    b = sample(others)
    back = [t - t0 for t in fleet.ready_log]
    fleet.phase = "after"
    n = fleet.pressed.get("outage", 0)
    first = fleet.first_ack_t.get("outage")
    flowing = fleet.last_ack_t - first if first else None
    return {"backlog_events": n, "outage_s": outage_s, "broker_stop_s": stop_s, "listening_s": listening,
            "all_reconnected_s": fleet.last_ready_t - t0, "first_ack_s": first - t0 if first else None,
            "drained_s": fleet.last_ack_t - t0, "done": ok, "left": fleet.pending,
            "sustained_eps": n / flowing if flowing else None,
            "reconnected": {"n": len(back), **({f"p{q}_s": percentile(back, q) for q in (50, 90, 99)} if back else {})},
            "failed_attempts": fleet.failed_attempts - failed0, "resends": fleet.resends - resends0,
            **{k: usage(a, b, k) for k in names(others)}, "others_cores": others_share(a, b, list(others)),
            "mosquitto_cpu_s": proc_cpu_s(broker.proc.pid),
            "mosquitto_rss_mib": (proc_status(broker.proc.pid).get("VmRSS") or 0) / 1024}


async def run_fleet(args, layout, passwords: dict | None, broker: FleetMosquitto, pids: dict) -> dict:
    rng = random.Random(args.seed)
    opts = FleetOptions(host="127.0.0.1", port=broker.port, v5=args.mqtt == "5",
                        telemetry_s=args.telemetry_s, keepalive_s=args.keepalive_s,
                        backoff_min_s=args.backoff_min, backoff_max_s=args.backoff_max,
                        next_share=args.next_share)
    fleet = Fleet(opts, asyncio.Semaphore(args.connect_concurrency))
    counters = [SimCounter(fleet, d, s, c, passwords.get(d) if passwords else None, random.Random(rng.random()))
                for d, s, c in layout]
    out: dict = {}
    timer = asyncio.create_task(resend_timer(counters))
    out["connect"] = await connect_phase(fleet, counters, pids, args.timeout)
    tasks = out["connect"].pop("tasks")
    out["after_connect"] = sample(pids)
    out["idle"] = await idle_phase(pids, args.idle_s)
    out["rates"] = []
    for mult in args.multipliers:
        out["rates"].append(await rate_phase(
            fleet, counters, pids, label=f"{mult:g}x", rate=args.peak_eps * mult, seconds=args.phase_s,
            drain_timeout=args.timeout, idle=out["idle"], rng=rng))
    # The restart before the burst: a burst can leave re-sent duplicates queued for the service.
    if args.backlog > 0:
        out["restart"] = await restart_phase(fleet, counters, broker, pids, backlog=args.backlog,
                                             outage_s=args.outage_s, timeout=args.timeout)
    if args.burst > 0:
        out["burst"] = await burst_phase(fleet, counters, pids, per_counter=args.burst, timeout=args.timeout)
    out["end"] = sample(pids)
    fleet.stopping = True
    await asyncio.gather(*(c.stop() for c in counters))
    for t in [*tasks, timer]:
        t.cancel()
    await asyncio.gather(*tasks, timer, return_exceptions=True)
    out["fleet"] = {"pressed": sum(fleet.pressed.values()), "kinds": fleet.kinds, "pending": fleet.pending,
                    "connects": fleet.connects, "refused": fleet.refused, "resends": fleet.resends}
    return out


# ----- setup, teardown ---------------------------------------------------------------------


def setup(args, work: Path) -> tuple[list, dict | None, FleetMosquitto, dict]:
    """Credentials, the registry, Mosquitto; returns what run_fleet needs and the setup figures."""
    layout = fleet_layout(args.counters)
    facts: dict = {"sites": len({s for _, s, _ in layout})}
    passwords = auth = None
    service_password = secrets.token_hex(12)
    if not args.anonymous:
        passwords, passwd, acl, facts["hash_s"] = write_credentials(work, [d for d, _, _ in layout],
                                                                    service_password)
        auth = (passwd, acl)
    facts["service_password"] = None if args.anonymous else service_password
    facts["register_s"] = register(args.store_url, layout)
    facts["store_bytes_registered"] = sqlite_bytes(args.store_url)
    facts["store_tables_registered"] = store_tables(args.store_url)
    broker = FleetMosquitto(work / "mosquitto", args.counters, auth).start()
    facts["mosquitto_nofile"] = nofile_of(broker.proc.pid)
    return layout, passwords, broker, facts


def start_services(args, work: Path, broker: FleetMosquitto, password: str | None) -> list[ServiceProcess]:
    """`--instances` service processes (docs/instances.md), started one after the other."""
    ports = [free_port() for _ in range(args.instances)]
    base = service_config(work=work, mqtt_port=broker.service_port, http_port=ports[0], store_url=args.store_url,
                          password=password, overrides=args.service_set)
    started: list[ServiceProcess] = []
    try:
        for i, cfg in enumerate(instance_configs(base, args.instances, work, ports), 1):
            started.append(ServiceProcess(work, cfg, "service" if args.instances == 1 else f"service-{i}").start())
    except BaseException:
        for service in started:
            service.stop()
        raise
    return started


def instance_split(services: list[ServiceProcess], token: str) -> dict[str, dict]:
    """Each instance's own ingest counters (/metrics): how the shared subscription split the stream."""
    keys = ("events_ingested_total", "events_duplicated_total", "ingest_batches_total", "tickets_issued_total")
    out = {}
    for s in services:
        m = metrics_of(s.http_port, token)
        out[s.name] = {k.removesuffix("_total"): int(m.get(f"hailong_{k}", 0)) for k in keys}
    return out


def measure(args, work: Path, postmaster: int | None = None) -> dict:
    layout, passwords, broker, facts = setup(args, work)
    services: list[ServiceProcess] = []
    try:
        token = viewer_token(args.store_url)
        services = start_services(args, work, broker, facts.pop("service_password"))
        pids = {s.name: s.pid for s in services} | {"mosquitto": broker.proc.pid, "simulator": os.getpid()}
        if postmaster is not None:
            pids["postgres"] = postmaster
        facts["baseline"] = sample(pids)
        results = asyncio.run(run_fleet(args, layout, passwords, broker, pids))
        results["instances"] = instance_split(services, token)
        results["group"] = services[0].cfg["mqtt"].get("shared_group")
        facts["service_exit"] = [s.stop() for s in services]
    finally:
        for service in services:
            service.stop()
        broker.stop()
    results["store_counts"] = store_counts(args.store_url)
    results["store_bytes_end"] = sqlite_bytes(args.store_url)
    results["store_tables_registered"] = facts.pop("store_tables_registered")
    results["store_tables_end"] = store_tables(args.store_url)
    results["backup"] = sqlite_backup_check(args.store_url, work)
    return {**facts, **results}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--counters", type=int, default=10_000, help="simulated counters (default 10000)")
    ap.add_argument("--mqtt", choices=("5", "3.1.1"), default="5", help="protocol the counters speak (default 5)")
    ap.add_argument("--anonymous", action="store_true",
                    help="no passwords or ACL (default: one password per counter and the provisioned ACL)")
    ap.add_argument("--store-url", help="the service's [store] url (default: a new SQLite file in the work dir)")
    ap.add_argument("--postgres", action="store_true",
                    help="start a throw-away PostgreSQL cluster (fsync on) for the store; needs Debian's packages")
    ap.add_argument("--instances", type=int, default=1,
                    help="service instances on one shared subscription and the same store (default 1; "
                         "docs/instances.md)")
    ap.add_argument("--service-set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help='extra service config, a TOML value, e.g. mqtt.shared_group=\\"fleet\\" (repeatable)')
    ap.add_argument("--peak-eps", type=float, default=PROVINCE_PEAK_EPS,
                    help=f"a province's peak events/s (default {PROVINCE_PEAK_EPS:.1f}; see docs/scaling.md)")
    ap.add_argument("--multipliers", default="1,10", help="press rates as multiples of the peak (default 1,10)")
    ap.add_argument("--phase-s", type=float, default=60.0, help="seconds of presses per rate (default 60)")
    ap.add_argument("--idle-s", type=float, default=20.0, help="seconds connected without presses (default 20)")
    ap.add_argument("--next-share", type=float, default=0.48, help="share of presses that are NEXT (default 0.48)")
    ap.add_argument("--burst", type=int, default=2,
                    help="presses each connected counter makes at once, for the sustained rate (default 2; 0 skips)")
    ap.add_argument("--backlog", type=int, default=2,
                    help="presses each counter stores while the broker is down (default 2; 0 skips the restart)")
    ap.add_argument("--outage-s", type=float, default=10.0, help="seconds the broker stays down (default 10)")
    ap.add_argument("--backoff-min", type=float, default=1.0, help="counter mqtt.backoff_min_s (default 1, shipped)")
    ap.add_argument("--backoff-max", type=float, default=5.0, help="counter mqtt.backoff_max_s (default 5, shipped)")
    ap.add_argument("--telemetry-s", type=float, default=60.0, help="counter telemetry.interval_s (default 60)")
    ap.add_argument("--keepalive-s", type=int, default=30, help="counter mqtt.keepalive_s (default 30)")
    ap.add_argument("--connect-concurrency", type=int, default=200, help="CONNECTs in progress at once at the start")
    ap.add_argument("--timeout", type=float, default=300.0, help="give up on a phase after this many seconds")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--dir", help="base directory for the work dir (default: /tmp unless it is tmpfs)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (store, logs)")
    ap.add_argument("--json", help="also write the raw results to this file")
    args = ap.parse_args(argv)
    try:
        args.multipliers = [float(x) for x in args.multipliers.split(",") if x.strip()]
    except ValueError:
        ap.error(f"--multipliers wants numbers separated by commas, got {args.multipliers!r}")
    if args.counters < 1:
        ap.error("--counters must be >= 1")
    if args.instances < 1:
        ap.error("--instances must be >= 1")
    if args.postgres and args.store_url:
        ap.error("--postgres starts its own store: leave out --store-url")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    info = machine_info()
    work, fs = bench_dir(args.dir)
    print("hailong fleet benchmark: simulated counters against Mosquitto and the service")
    print_machine(info)
    print(f"load    : {' '.join(Path('/proc/loadavg').read_text().split()[:3])} (1, 5, 15 min) at the start; "
          f"work dir {work} on {fs['fstype']}")
    # Our sockets, Mosquitto's (inherited limit) and some slack for files, pipes and the service.
    limits = raise_nofile(args.counters + 1024)
    if limits["after"] != limits["before"]:
        print(f"limits  : raised RLIMIT_NOFILE from {limits['before'][0]} (hard {limits['before'][1]}) to "
              f"{limits['after'][0]} (hard {limits['after'][1]}) for {args.counters} counters; Mosquitto and the "
              f"service inherit it" + ("" if limits["enough"] else f" — NOT ENOUGH, {limits['needed']} needed"))
    else:
        print(f"limits  : RLIMIT_NOFILE {limits['after'][0]} (hard {limits['after'][1]}) already covers the "
              f"{limits['needed']} files {args.counters} counters need; Mosquitto and the service inherit it")
    print(f"assume  : {COUNTRY_COUNTERS:,} counters in {COUNTRY_CENTRES:,} centres ({COUNTERS_PER_CENTRE:.2f} "
          f"per centre); a province = {PROVINCE_CENTRES} centres = {PROVINCE_COUNTERS} counters; peak hour = "
          f"{PEAK_EVENTS_PER_COUNTER_MIN:g} events a minute per counter -> {args.peak_eps:.1f} events/s")
    print(f"fleet   : MQTT {args.mqtt}, {'anonymous' if args.anonymous else 'a password per counter + ACL'}, "
          f"store {'postgresql' if args.postgres else (args.store_url or 'sqlite:').split(':')[0]}, "
          f"{args.instances} service instance(s)"
          + (" on one shared subscription" if args.instances > 1 else "")
          + (f", service extra config {args.service_set}" if args.service_set else ""))
    cluster = None
    try:
        if args.postgres:
            cluster, args.store_url = throwaway_postgres()
            print(f"postgres: throw-away PostgreSQL {cluster.bin_dir.parent.name} in {cluster.root} on port "
                  f"{cluster.port}, default durability (fsync on, synchronous_commit on)")
        args.store_url = args.store_url or f"sqlite:///{work / 'store' / 'hailong.db'}"
        r = measure(args, work, cluster and postmaster_pid(cluster))
    finally:
        if cluster is not None:
            cluster.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    report(args, r, limits)
    print(f"load    : {' '.join(Path('/proc/loadavg').read_text().split()[:3])} (1, 5, 15 min) at the end")
    if args.json:
        r.pop("baseline", None)
        Path(args.json).write_text(json.dumps({"machine": info, "args": vars(args), "limits": limits, "results": r},
                                              indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
