"""The chaos harness: the real service, a real Mosquitto and real counter processes, with faults on cue.

    rig = Rig(tmp_path, counters=3, power=True).start()   # everything up, counters registered, on powerfs
    rig.press_forever(seed=7, rate=100)                          # simulated citizens, one thread per counter
    run_schedule(rig, Random(7), {"counter_kill": 2, "net_stall": 1})   # a seeded fault schedule
    figures = rig.finish()    # quiesce, stop, compare what counters reported `stored` with what was counted

Counters reach the broker through one FaultProxy each, the service through its own (`rig.svc_link`).
With `power=True` each counter's data dir is a powerfs (tests/powerfs.py), whose SD card can lose
power (`power_cut`) and fill up (`disk_full`). Fault kinds live in FAULTS (name -> function(rig, rng));
a new kind registers itself with `@fault("name")` and the schedule picks it up by name.
Each fault injects, waits for its effect to show (never a bare sleep), heals, and waits until every
counter has caught up again, so the schedule is a reproducible sequence for a given seed.
"""
from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter as Multiset
from collections.abc import Callable
from pathlib import Path

from common.clock import SHIFT_ENV, shift_s
from tests.faultproxy import FaultProxy
from tests.mosquitto import Mosquitto, free_port
from tests.powerfs import PowerDisk, cut_power
from tests.support import ROOT, DeviceProcess, Waiter, write_config

SITE = "kien-thuy"
DEVICE_MQTT = "keepalive_s = 5\n"  # the lowest allowed: a half-open link is noticed in ~10 s
DEVICE_EXTRA = ("[ledger]\nack_timeout_s = 3\n"
                "[rating]\nrepeat_gap_s = 0.5\nreason_window_s = 1.0\n")


class Broker(Mosquitto):
    """Mosquitto whose persistence can be switched between restarts (off: sessions and queues die)."""

    def __init__(self, workdir: Path, persistence: bool = True):
        super().__init__(workdir)
        self.persistence = persistence

    def write_config(self) -> None:
        super().write_config()
        if not self.persistence:
            self.conf.write_text(self.conf.read_text().replace("persistence true", "persistence false"))
            (self.workdir / "mosquitto.db").unlink(missing_ok=True)


class ServiceProcess:
    """`hailong broker run` on a store on disk, connecting to MQTT at `mqtt_port`; SIGKILL and restart."""

    def __init__(self, workdir: Path, mqtt_port: int):
        self.db = workdir / "service" / "hailong.db"
        self.http_port = free_port()
        self.cfg = workdir / "broker.toml"
        self.cfg.write_text(
            "[mqtt]\nembedded = false\n"
            f'host = "127.0.0.1"\nport = {mqtt_port}\nbatch_wait_ms = 5\nkeepalive_s = 5\n'
            f'[store]\nurl = "sqlite:///{self.db}"\n'
            f"[http]\nport = {self.http_port}\n"
        )
        self.log = workdir / "service.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> "ServiceProcess":
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "hailong.cli", "broker", "run", "--config", str(self.cfg)],
                cwd=ROOT, stdout=log, stderr=log)
        self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float = 60.0) -> None:
        """Until /healthz says store and ingest are up (the service gives no other signal)."""
        import httpx

        proc, ok = self.proc, Waiter(dead=lambda items: self.proc.poll() is not None)

        def probe():
            while proc.poll() is None and not ok.items:
                try:
                    if httpx.get(f"http://127.0.0.1:{self.http_port}/healthz", timeout=1).status_code == 200:
                        ok.append(True)
                except httpx.HTTPError:
                    pass
                threading.Event().wait(0.05)

        threading.Thread(target=probe, daemon=True).start()
        try:
            ok.wait_for(lambda items: items, timeout=timeout, what="service /healthz")
        except AssertionError as e:
            raise AssertionError(f"{e}\n--- service log ---\n{self.log.read_text()[-3000:]}") from None

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return 0
        self.proc.terminate()
        return self.proc.wait(30)


class CounterNode:
    """One counter device across its incarnations (a SIGKILL and restart keeps its data dir and ledger).

    With `power`, the data dir is a powerfs (tests/powerfs.py): its SD card can lose power and fill up."""

    def __init__(self, workdir: Path, n: int, broker_port: int, power: bool = False):
        self.n, self.device = n, f"chaos-{n}"
        self.link = FaultProxy(broker_port).start()
        data = workdir / f"data-{n}"
        self.disk = PowerDisk(workdir / f"sdcard-{n}", data) if power else None
        self.cfg = write_config(workdir, None, device_id=self.device, counter=str(n),
                                data_dir=data, port=self.link.port,
                                mqtt=DEVICE_MQTT, extra=DEVICE_EXTRA)
        self.lives: list[DeviceProcess] = []
        self.lock = threading.Lock()  # a press never goes to a process being replaced

    @property
    def proc(self) -> DeviceProcess:
        return self.lives[-1]

    def start(self, clock_shift_s: float = 0.0) -> None:
        """`clock_shift_s`: this incarnation's wall clock is that far off (the suite's own shift kept)."""
        env = {SHIFT_ENV: str(shift_s() + clock_shift_s)} if clock_shift_s else None
        with self.lock:
            self.lives.append(DeviceProcess(self.cfg, env=env))
            _signalling(self.proc.lines)
        self.proc.wait_ready(timeout=30)

    def kill(self) -> None:
        with self.lock:
            self.proc.kill()

    def send(self, command: str) -> bool:
        with self.lock:
            try:
                self.proc.send(command)
                return True
            except (BrokenPipeError, ValueError, OSError):
                return False  # killed: the citizen finds the counter dark

    def stored(self) -> dict[tuple, dict]:
        """Every event any incarnation reported stored, by (ledger, seq), as last updated."""
        out: dict[tuple, dict] = {}
        for life in self.lives:
            for r in list(life.lines.items):
                ev = r.get("stored") or r.get("updated")
                if ev:
                    out[(ev["ledger"], ev["seq"])] = ev
        return out

    def reports(self) -> list[tuple]:
        """Keys of `stored` reports, one per report: a key twice would be a device bug."""
        return [(r["stored"]["ledger"], r["stored"]["seq"]) for life in self.lives
                for r in list(life.lines.items) if "stored" in r]

    def acked(self) -> set[tuple]:
        out = set()
        for life in self.lives:
            ledger = next((r["ledger"] for r in life.lines.items if "ready" in r), None)
            out.update((ledger, s) for r in list(life.lines.items) if "acked" in r for s in r["acked"])
        return out

    def stored_by_the_dead(self) -> set[tuple]:
        """Keys stored by incarnations since killed: one may have deleted an acked event and died
        before printing `acked`, and no later incarnation will ever ack it again."""
        return {(r["stored"]["ledger"], r["stored"]["seq"]) for life in self.lives[:-1]
                for r in list(life.lines.items) if "stored" in r}

    def unsettled(self, keys: set[tuple], at_service: Callable[[str, set], set]) -> set[tuple]:
        """Of `keys`, those neither acked nor, if an incarnation that died stored them, at the service."""
        missing = keys - self.acked()
        orphans = missing & self.stored_by_the_dead()
        return missing - at_service(self.device, orphans) if orphans else missing

    def online(self) -> bool:
        """Its current process is running (nobody restarts a counter that exits by itself) and online."""
        values = self.proc.of("online")
        return self.proc.proc.poll() is None and bool(values) and values[-1] is True

    def close(self) -> None:
        for life in self.lives:
            life.close()
        self.link.close()
        if self.disk is not None:
            self.disk.close()


class Rig:
    def __init__(self, workdir: Path, counters: int = 3, persistence: bool = True, power: bool = False):
        self.workdir = Path(workdir)
        self.power = power
        self.broker = Broker(self.workdir / "mosquitto", persistence)
        self.svc_link: FaultProxy | None = None
        self.service: ServiceProcess | None = None
        self.n_counters = counters
        self.counters: list[CounterNode] = []
        self.stop_pressing = threading.Event()
        self.citizens: list[threading.Thread] = []
        self.faults: Multiset = Multiset()
        self.fault_seconds: dict[str, list[float]] = {}
        self.details: Multiset = Multiset()  # what the faults did: ops dropped at cuts, presses refused...
        self.started = time.monotonic()

    def start(self) -> "Rig":
        self.broker.start()
        self.svc_link = FaultProxy(self.broker.port).start()
        self.service = ServiceProcess(self.workdir, self.svc_link.port)
        self.counters = [CounterNode(self.workdir, n, self.broker.port, self.power)
                         for n in range(1, self.n_counters + 1)]
        for c in self.counters:
            if c.disk is not None:
                c.disk.mount()
        self._register()
        self.service.start()
        for c in self.counters:
            c.start()
        self.wait_caught_up()
        return self

    def _register(self) -> None:
        """Only registered devices bound to their counter count (docs/store.md)."""
        from broker.store import Store

        with Store.open(self.service.db) as store:
            store.upsert_site(SITE, "Kiến Thụy", "Asia/Ho_Chi_Minh")
            for c in self.counters:
                store.upsert_counter(SITE, str(c.n), f"Quầy {c.n}", device=c.device)
                store.register_device(c.device, SITE, str(c.n))

    # ----- load ------------------------------------------------------------------------

    def press_forever(self, seed: int, rate: float = 100.0) -> None:
        """Simulated citizens (hailong.demo.citizens' script) at every counter until finish()."""
        from hailong.demo.citizens import citizen_script

        def citizens(c: CounterNode, rng: random.Random):
            for command, pause in citizen_script(rng, rate):
                if self.stop_pressing.is_set():
                    return
                if not command.startswith("wait"):
                    c.send(command)
                self.stop_pressing.wait(pause)  # the citizens' pace, not a test waiting

        for c in self.counters:
            t = threading.Thread(target=citizens, args=(c, random.Random(seed * 1000 + c.n)), daemon=True)
            t.start()
            self.citizens.append(t)

    def events_stored(self) -> int:
        return sum(len(c.stored()) for c in self.counters)

    def wait_for_more_events(self, n: int, timeout: float = 60.0) -> None:
        """Until counters have stored `n` more events (presses keep coming while a fault lasts)."""
        target = self.events_stored() + n
        wait_until(lambda: self.events_stored() >= target, timeout, f"{n} more stored events")

    def wait_caught_up(self, timeout: float = 120.0) -> None:
        """Until every counter is online and has an ack for everything it stored so far."""
        marks = {c.n: set(c.stored()) for c in self.counters}
        wait_until(lambda: all(c.online() and not c.unsettled(marks[c.n], self.at_service) for c in self.counters),
                   timeout, "every counter online with its events acked", self.describe)

    def at_service(self, device: str, keys: set[tuple]) -> set[tuple]:
        """Which of a device's (ledger, seq) keys the service has stored."""
        db = sqlite3.connect(f"file:{self.service.db}?mode=ro", uri=True)
        try:
            return {k for k in keys if db.execute("SELECT 1 FROM events WHERE device = ? AND ledger = ? AND seq = ?",
                                                  (device, *k)).fetchone()}
        finally:
            db.close()

    def describe(self) -> str:
        """Each counter's state and, for one stuck, what the service holds of it and the counter's last words."""
        out = []
        for c in self.counters:
            unacked = sorted(c.unsettled(set(c.stored()), self.at_service))[:5]
            out.append(f"{c.device}: exit={c.proc.proc.poll()} online={c.online()} stored={len(c.stored())} acked={len(c.acked())} "
                       f"unacked={unacked}")
            if unacked:
                out.append(f"  at the service: {self._service_rows(c.device, unacked)}; incarnations "
                           f"{len(c.lives)}; last lines {c.proc.lines.items[-6:]}; "
                           f"stderr {c.proc.stderr_lines[-6:]}")
        return "\n".join(out)

    def _service_rows(self, device: str, keys: list[tuple]) -> list:
        db = sqlite3.connect(f"file:{self.service.db}?mode=ro", uri=True)
        try:
            return [db.execute("SELECT ledger, seq, ts, received_ms, held FROM events"
                               " WHERE device = ? AND ledger = ? AND seq = ?", (device, *k)).fetchall() for k in keys]
        finally:
            db.close()

    # ----- the end ---------------------------------------------------------------------

    def finish(self, timeout: float = 180.0) -> dict:
        """Stop pressing, let everything drain, stop it all, and compare. Returns the figures."""
        self.stop_pressing.set()
        for t in self.citizens:
            t.join(10)
        wait_until(lambda: all(c.online() and not c.unsettled(set(c.stored()), self.at_service)
                               for c in self.counters), timeout, "every stored event acked", self.describe)
        for c in self.counters:
            assert c.proc.quit() == 0
        assert self.service.stop() == 0, self.service.log.read_text()[-3000:]
        figures = tally(self.counters, self.service.db)
        figures["faults"] = dict(self.faults)
        figures["fault_seconds"] = {k: {"total": round(sum(v), 1), "max": round(max(v), 1)}
                                    for k, v in self.fault_seconds.items()}
        figures["details"] = dict(self.details)
        figures["seconds"] = round(time.monotonic() - self.started, 1)
        return figures

    def close(self) -> None:
        self.stop_pressing.set()
        for c in self.counters:
            c.close()
        if self.service and self.service.proc and self.service.proc.poll() is None:
            self.service.kill()
        if self.svc_link:
            self.svc_link.close()
        self.broker.stop()


def wait_until(predicate: Callable[[], object], timeout: float, what: str,
               describe: Callable[[], str] = lambda: "") -> None:
    """For conditions spread over several processes' outputs: re-checks each time any of them changes."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}: {describe()}")
        _CHANGED.wait(0.2)
        _CHANGED.clear()


_CHANGED = threading.Event()


def _signalling(waiter: Waiter) -> None:
    """Every line a device prints also wakes wait_until."""
    append = waiter.append

    def append_and_signal(item) -> None:
        append(item)
        _CHANGED.set()

    waiter.append = append_and_signal


def tally(counters: list[CounterNode], db_path: Path) -> dict:
    """What the counters reported stored against what the service stored and counted."""
    reported: dict[tuple, dict] = {}
    reports = Multiset()
    for c in counters:
        reports.update((c.device, *k) for k in c.reports())
        reported.update({(c.device, *k): ev for k, ev in c.stored().items()})
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        rows = {(d, ledger, seq): (flagged, held) for d, ledger, seq, flagged, held in db.execute(
            "SELECT device, ledger, seq, flagged, held FROM events")}
        from_events = Multiset(dict(db.execute(
            "SELECT site || '/' || counter || '/' || scale || '/' || score || '/' || flagged, count(*)"
            " FROM events WHERE type = 'rating' AND held IS NULL GROUP BY 1")))
        from_events.update(dict(db.execute(
            "SELECT site || '/' || counter || '/' || action, count(*) FROM events"
            " WHERE type = 'call' AND held IS NULL GROUP BY 1")))
        counted = Multiset(dict(db.execute(
            "SELECT site || '/' || counter || '/' || scale || '/' || score || '/' || flagged, sum(n)"
            " FROM rating_days GROUP BY 1")))
        counted.update(dict(db.execute(
            "SELECT site || '/' || counter || '/' || action, sum(n) FROM call_days GROUP BY 1")))
    finally:
        db.close()
    quarantined = sum(len(life.of("quarantined")) for c in counters for life in c.lives)
    lost = [k for k in reported if k not in rows]
    misflagged = [k for k, ev in reported.items() if k in rows and ev["type"] == "rating"
                  and bool(rows[k][0]) != bool(ev["flags"])]
    held = [k for k in reported if k in rows and rows[k][1] is not None]
    return {
        "events": len(reported), "reported_twice": sum(n - 1 for n in reports.values() if n > 1),
        "flagged": sum(1 for ev in reported.values() if ev.get("flags")),
        "stored_by_service": len(rows), "lost": len(lost), "lost_keys": lost[:10],
        "doubled": sum((counted - from_events).values()), "undercounted": sum((from_events - counted).values()),
        "misflagged": len(misflagged), "held": len(held),
        "unreported": len(set(rows) - set(reported)),  # committed by a counter killed before it said so
        "quarantined": quarantined,  # ledgers a fault made unusable: no power cut or kill may do that
    }


def assert_exact(figures: dict) -> None:
    bad = {k: figures[k] for k in ("lost", "doubled", "undercounted", "misflagged", "held", "reported_twice",
                                   "quarantined") if figures[k]}
    assert not bad, f"the service's count differs from the counters' reports: {bad}; figures {figures}"
    assert figures["events"] > 0


# ----- faults ----------------------------------------------------------------------------------

FAULTS: dict[str, Callable[["Rig", random.Random], None]] = {}


def fault(name: str):
    """Register a fault kind: fn(rig, rng) injects it, waits for its effect, heals and returns."""

    def register(fn):
        FAULTS[name] = fn
        return fn

    return register


def _offline(c: CounterNode) -> Callable[[], bool]:
    return lambda: c.proc.of("online") and c.proc.of("online")[-1] is False


@fault("counter_kill")
def counter_kill(rig: Rig, rng: random.Random) -> None:
    c = rng.choice(rig.counters)
    rig.wait_for_more_events(rng.randint(1, 8))  # at a random point in the stream, often mid-press
    c.kill()
    c.start()


@fault("service_kill")
def service_kill(rig: Rig, rng: random.Random) -> None:
    rig.service.kill()
    rig.wait_for_more_events(rng.randint(5, 20))  # presses go on while the service is dead
    rig.service.start()


@fault("broker_restart")
def broker_restart(rig: Rig, rng: random.Random) -> None:
    """Alternates: with persistence (sessions and queues survive) and without (everything in flight dies)."""
    rig.broker.persistence = rig.faults["broker_restart"] % 2 == 0
    rig.broker.stop()
    for c in rig.counters:
        wait_until(_offline(c), 30, f"{c.device} offline")
    rig.wait_for_more_events(rng.randint(3, 10))
    rig.broker.start()


@fault("broker_kill")
def broker_kill(rig: Rig, rng: random.Random) -> None:
    """SIGKILL: even with persistence, whatever Mosquitto had not yet saved (sessions, queues) is gone."""
    rig.broker.proc.kill()
    rig.broker.proc.wait(10)
    rig.broker.proc = None
    for c in rig.counters:
        wait_until(_offline(c), 30, f"{c.device} offline")
    rig.wait_for_more_events(rng.randint(3, 10))
    rig.broker.start()


def _link(rig: Rig, rng: random.Random) -> tuple[FaultProxy, Callable[[], bool]]:
    """A random link, and a check that its client noticed the fault (it went offline or reconnected)."""
    if rng.random() < 0.3:
        link = rig.svc_link
        accepted = link.stats.accepted
        return link, lambda: link.stats.accepted > accepted
    c = rng.choice(rig.counters)
    return c.link, _offline(c)


@fault("net_cut")
def net_cut(rig: Rig, rng: random.Random) -> None:
    link, noticed = _link(rig, rng)
    link.refuse()
    link.drop()
    wait_until(noticed, 30, "the cut noticed")
    rig.wait_for_more_events(rng.randint(1, 10))
    link.heal()


@fault("net_stall")
def net_stall(rig: Rig, rng: random.Random) -> None:
    """Half-open: nothing flows and nothing closes; only the keepalive can tell."""
    link, noticed = _link(rig, rng)
    link.stall(rng.choice(["both", "up", "down"]))
    wait_until(noticed, 60, "the stall noticed by the keepalive")
    link.heal()


@fault("net_slow")
def net_slow(rig: Rig, rng: random.Random) -> None:
    link, _ = _link(rig, rng)
    link.slow(latency_s=rng.uniform(0.02, 0.3), bytes_per_s=rng.choice([2_000, 20_000, None]))
    rig.wait_for_more_events(rng.randint(10, 30))
    link.heal()


@fault("power_cut")
def power_cut(rig: Rig, rng: random.Random) -> None:
    """The counter's power fails: unsynced writes are dropped or torn, the process dies, it boots again.

    Half the time the counter's link is down first (the commune's router lost power too), so the
    last presses exist only on its SD card when the power goes."""
    c = rng.choice(rig.counters)
    offline = rng.random() < 0.5
    if offline:
        c.link.refuse()
        c.link.drop()
        wait_until(_offline(c), 30, f"{c.device} offline")
    target = len(c.stored()) + rng.randint(1, 6)
    wait_until(lambda: len(c.stored()) >= target, 120, f"{c.device} storing before the cut", rig.describe)
    with c.lock:
        cut = cut_power(c.disk, c.proc, rng)
    rig.details.update(power_cut_ops_dropped=cut["lost_ops"], power_cut_ops_landed=cut["landed_ops"],
                       power_cuts_torn=int(cut["torn"]), power_cuts_offline=int(offline))
    c.start()
    c.link.heal()


def _refused(c: CounterNode, before: int) -> int:
    """Presses refused for a full disk since the current incarnation's `before`-th error."""
    return sum(1 for e in c.proc.of("error")[before:] if e.startswith("ledger:") and "full" in e)


@fault("disk_full")
def disk_full(rig: Rig, rng: random.Random) -> None:
    """The counter's SD card is full: presses are refused with "Err" until space returns, by itself.

    Full as a log-structured filesystem (f2fs) is: not even a rewrite in place succeeds. (On ext4
    SQLite would go on committing into the room its WAL already has; tests/test_device_disk_full.py
    fills a real tmpfs.) The fault lasts until the counter refused a press and the others stored more."""
    c = rng.choice(rig.counters)
    before = len(c.proc.of("error"))
    c.disk.fill()
    wait_until(lambda: _refused(c, before) > 0, 120, f"{c.device} refusing a press on a full disk", rig.describe)
    rig.wait_for_more_events(rng.randint(3, 10))  # the other counters go on
    assert c.proc.proc.poll() is None, "a full disk ended the counter"
    c.disk.quota(None)
    rig.details.update(disk_full_presses_refused=_refused(c, before))


@fault("clock_jump")
def clock_jump(rig: Rig, rng: random.Random) -> None:
    """The counter reboots with its wall clock wrong (a Pi has no RTC), stamps presses with it, then
    reboots with the right time: one jump backwards or forwards by up to three days, and one back.
    Jumps inside a running process are tests/test_device_clock_jumps.py's (an injected wall clock)."""
    c = rng.choice(rig.counters)
    rig.wait_for_more_events(rng.randint(1, 8))
    c.kill()
    c.start(clock_shift_s=rng.choice([-1, 1]) * rng.uniform(60, 3 * 86_400))
    target = len(c.stored()) + rng.randint(2, 6)
    wait_until(lambda: len(c.stored()) >= target, 120, f"{c.device} storing with a wrong clock", rig.describe)
    c.kill()
    c.start()
    rig.details["clock_jumps"] += 2


def schedule(rng: random.Random, counts: dict[str, int]) -> list[str]:
    kinds = [k for k, n in counts.items() for _ in range(n)]
    unknown = set(kinds) - set(FAULTS)
    assert not unknown, f"no such fault kind: {unknown}; known: {sorted(FAULTS)}"
    rng.shuffle(kinds)
    return kinds


def run_schedule(rig: Rig, rng: random.Random, counts: dict[str, int], log=print, spread_over: int = 0) -> None:
    """`spread_over` events: the faults are spaced out evenly over that many presses, not bunched at the start."""
    kinds = schedule(rng, counts)
    for i, kind in enumerate(kinds):
        due = spread_over * i // len(kinds)
        wait_until(lambda: rig.events_stored() >= due, 600, f"{due} events before fault {i + 1}", rig.describe)
        began = time.monotonic()
        FAULTS[kind](rig, rng)
        rig.faults[kind] += 1
        rig.wait_caught_up()
        rig.fault_seconds.setdefault(kind, []).append(time.monotonic() - began)
        log(f"chaos: fault {i + 1} {kind} done; {rig.events_stored()} events so far")


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))
