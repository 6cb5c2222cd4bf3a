"""Device benchmark: press→stored and press→feedback latency, memory, start-up time.

    .venv/bin/python benchmarks/device_latency.py [--presses 1000] [--starts 7] [--acker per-event|batch]

1. Latency, in this process: the real DeviceRuntime with its real ledger (on disk, never
   tmpfs), mock GPIO pins and a text display, connected to a real Mosquitto with a
   stand-in central service (in its own process) acking every event and answering NEXT
   with a ticket number. Presses are driven through the mock pins on an open-loop schedule
   (the next press comes at its time whether or not the device has caught up), 5-20 ms
   apart, scores 1-4 mixed with NEXT presses.
     press→stored   : pin driven -> the runtime emits {"stored": ...} (ledger commit, fsync included)
     press→feedback : pin driven -> the first LED switched on or display show() in the same
                       batch of effects as that store (what the citizen sees)
   For NEXT the store happens on release, so its clock starts at the release edge.
2. Memory: VmRSS/VmHWM of a real `hailong device run --simulate` process fed the same presses.
3. Start-up: spawn of `python -m hailong.cli device run --simulate` -> its {"ready": ...} line.

Targets (host): press→feedback p99 <= 10 ms, RSS <= 45 MiB, start-up <= 1.5 s.
Exits 0 whatever the numbers; non-zero only if the run itself broke.
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from _common import (
    ROOT, AckerProcess, TimedDeviceProcess, bench_dir, machine_info, prefill_ledger, print_machine,
    proc_status, summary, table, verdict, write_device_config,
)

from device.config import load_config  # noqa: E402
from device.display import TextDisplay  # noqa: E402
from device.panel import Panel  # noqa: E402
from device.runtime import DeviceRuntime  # noqa: E402
from tests.mosquitto import Mosquitto  # noqa: E402

TARGET_P99_MS = 10.0
TARGET_RSS_MIB = 45.0
TARGET_START_S = 1.5
SCALE = 4


def ns_ms(ns: int | float) -> float:
    return ns / 1e6


# ----- instrumentation --------------------------------------------------------------


class Recorder:
    """Timestamps (time.perf_counter_ns) of everything the loop does that we measure.

    Written from the device loop thread only, except `edges` (the driver thread).
    """

    def __init__(self, backlog: int = 0):
        self.backlog = backlog                          # seqs 1..backlog were there before start
        self.backlog_acked = 0
        self.drain_done: int | None = None              # t the last of them was acked
        self.edges: list[tuple[int, str, bool]] = []   # (t, button, pressed) as driven
        self.handled: list[int] = []                    # t the loop started handling input item k
        self.stores: list[dict] = []
        self.shows: list[tuple[int, str]] = []
        self.appends: list[int] = []                    # ledger.append durations
        self.acks: list[tuple[int, int]] = []           # (ledger.acknowledge duration, seqs)
        self.pumps: list[tuple[int, int]] = []          # (outbox.pump duration, events sent)
        self.acked = 0
        self.order_violations = 0                       # feedback before the store, same batch
        self.online = threading.Event()
        self.ready = threading.Event()
        self.current_edge: int | None = None
        self._open: dict | None = None                  # store of the current batch, awaiting feedback
        self._in_batch = False
        self._feedback_in_batch = False
        self.all_acked = threading.Condition()

    # emit() from the runtime
    def emit(self, record: dict) -> None:
        t = time.perf_counter_ns()
        if "stored" in record:
            if self._feedback_in_batch:
                self.order_violations += 1
            s = {"edge": self.current_edge, "t_stored": t, "event": record["stored"],
                 "t_feedback": None, "feedback": None}
            self.stores.append(s)
            self._open = s
        elif "acked" in record:
            with self.all_acked:
                self.acked += len(record["acked"])
                if self.backlog:
                    self.backlog_acked += sum(1 for seq in record["acked"] if seq <= self.backlog)
                    if self.drain_done is None and self.backlog_acked >= self.backlog:
                        self.drain_done = t
                self.all_acked.notify_all()
        elif "online" in record:
            if record["online"]:
                self.online.set()
        elif "ready" in record:
            self.ready.set()

    def feedback(self, kind: str) -> None:
        t = time.perf_counter_ns()
        if self._open is not None:
            if self._open["t_feedback"] is None:
                self._open["t_feedback"] = t
                self._open["feedback"] = kind
        elif self._in_batch:
            self._feedback_in_batch = True

    def wrap_apply(self, apply):
        def _apply(effects):
            self._in_batch, self._feedback_in_batch, self._open = True, False, None
            try:
                apply(effects)
            finally:
                self._in_batch, self._feedback_in_batch, self._open = False, False, None
        return _apply

    def wrap_handle(self, handle):
        def _handle(item):
            if item.kind in ("press", "release"):
                self.current_edge = len(self.handled)
                self.handled.append(time.perf_counter_ns())
            try:
                handle(item)
            finally:
                self.current_edge = None
        return _handle

    def timed(self, fn, sink, count=None):
        def wrapper(*a, **kw):
            t0 = time.perf_counter_ns()
            result = fn(*a, **kw)
            dt = time.perf_counter_ns() - t0
            sink.append(dt if count is None else (dt, count(a, kw, result)))
            return result
        return wrapper


class TimedPanel(Panel):
    """The real Panel; LED switch-ons are reported as feedback once they reached the pin."""

    def __init__(self, rec: Recorder, **kw):
        self._rec = rec
        super().__init__(**kw)

    def set_led(self, index: int, on: bool) -> None:
        super().set_led(index, on)
        if on:
            self._rec.feedback("led")

    def set_all_leds(self, on: bool) -> None:
        super().set_all_leds(on)
        if on:
            self._rec.feedback("led")


class TimedDisplay(TextDisplay):
    def __init__(self, width: int, rec: Recorder):
        super().__init__(width)
        self._rec = rec

    def show(self, text: str) -> None:
        super().show(text)
        self._rec.shows.append((time.perf_counter_ns(), text))
        self._rec.feedback("display")


# ----- 1. latency ----------------------------------------------------------------------


def make_plan(n: int, seed: int, gap_ms: tuple[float, float], next_every: int) -> list[tuple[str, float]]:
    rng = random.Random(seed)
    plan = []
    last = None
    for i in range(n):
        if next_every and i % next_every == next_every - 1:
            button = "next"
        else:
            button = str(rng.choice([s for s in range(1, SCALE + 1) if str(s) != last]))  # alternate scores
            last = button
        plan.append((button, rng.uniform(*gap_ms) / 1000))
    return plan


def sleep_until(t: float) -> None:
    left = t - time.perf_counter()
    if left > 0:
        time.sleep(left)


def run_latency(args, work: Path, broker: Mosquitto) -> dict:
    cfg_path = write_device_config(work / "lat.toml", device_id="bench-lat", port=broker.port,
                                   data_dir=work / "lat-data", buzzer=not args.no_buzzer)
    cfg = load_config(cfg_path)
    if args.backlog:  # events left from an outage: the presses below overlap their delivery
        prefill_ledger(cfg.ledger_path, args.backlog, device_id=cfg.device.id, seed=args.seed)
    rec = Recorder(args.backlog)
    from gpiozero.pins.mock import MockFactory

    p = cfg.pins

    def panel_factory(on_input):  # as device/cli.py builds it
        return TimedPanel(
            rec, rating_pins=list(p.rating_buttons[:cfg.rating.scale]),
            led_pins=list(p.rating_leds[:cfg.rating.scale]),
            next_pin=p.next_button, recall_pin=p.recall_button,
            buzzer_pin=cfg.buzzer.pin if cfg.buzzer.enabled else None,
            pull_up=p.pull_up, bounce_s=p.bounce_s, pin_factory=MockFactory(), on_input=on_input,
        )

    runtime = DeviceRuntime(cfg, panel_factory=panel_factory, display=TimedDisplay(cfg.display_width, rec),
                            emit=rec.emit)
    runtime._apply = rec.wrap_apply(runtime._apply)
    runtime._handle = rec.wrap_handle(runtime._handle)
    runtime.ledger.append = rec.timed(runtime.ledger.append, rec.appends)
    runtime.ledger.acknowledge = rec.timed(runtime.ledger.acknowledge, rec.acks,
                                           count=lambda a, kw, r: len(r))
    runtime.outbox.pump = rec.timed(runtime.outbox.pump, rec.pumps, count=lambda a, kw, r: r)

    loop = threading.Thread(target=runtime.run, name="device-loop", daemon=True)
    loop.start()
    if not rec.online.wait(15):
        runtime.stop()
        raise RuntimeError("the device did not connect to the broker")
    if not args.backlog:
        time.sleep(0.2)  # let the connect-time status and telemetry go out

    plan = make_plan(args.presses, args.seed, (args.gap_min_ms, args.gap_max_ms), args.next_every)
    panel = runtime.panel

    def drive(button: str, pressed: bool) -> None:
        t = time.perf_counter_ns()
        (panel.press if pressed else panel.release)(button)
        rec.edges.append((t, button, pressed))

    started = time.perf_counter()
    t_next = started + 0.01
    for button, gap in plan:
        sleep_until(t_next)
        drive(button, True)
        sleep_until(t_next + gap / 2)  # held for half the gap
        drive(button, False)
        t_next += gap
    drive_s = time.perf_counter() - started

    deadline = time.monotonic() + 30
    while len(rec.stores) < len(plan) and time.monotonic() < deadline:
        time.sleep(0.01)
    with rec.all_acked:
        rec.all_acked.wait_for(lambda: rec.acked >= len(rec.stores) + args.backlog, timeout=60)
    time.sleep(0.1)
    runtime.stop()
    loop.join(15)
    if loop.is_alive():
        raise RuntimeError("the device loop did not stop")
    if len(rec.handled) != len(rec.edges):
        raise RuntimeError(f"{len(rec.edges)} edges driven but {len(rec.handled)} handled")
    if len(rec.stores) != len(plan):
        raise RuntimeError(f"{len(plan)} presses but {len(rec.stores)} events stored")
    return analyse(rec, plan, drive_s)


def analyse(rec: Recorder, plan, drive_s: float) -> dict:
    rows: dict[str, list[float]] = {k: [] for k in (
        "rating_stored", "rating_feedback", "next_stored", "next_feedback", "all_stored", "all_feedback",
        "queue", "handle_to_stored", "stored_to_feedback", "next_ticket", "drain_feedback",
        "post_drain_feedback")}
    no_feedback = 0
    kinds = {"led": 0, "display": 0}
    next_k = 0
    show_i = 0
    for s in rec.stores:
        t_edge, button, _ = rec.edges[s["edge"]]
        ev = s["event"]
        is_next = ev["type"] == "call"
        stored = ns_ms(s["t_stored"] - t_edge)
        rows["all_stored"].append(stored)
        rows["next_stored" if is_next else "rating_stored"].append(stored)
        rows["queue"].append(ns_ms(rec.handled[s["edge"]] - t_edge))
        rows["handle_to_stored"].append(ns_ms(s["t_stored"] - rec.handled[s["edge"]]))
        if s["t_feedback"] is None:
            no_feedback += 1
        else:
            kinds[s["feedback"]] += 1
            fb = ns_ms(s["t_feedback"] - t_edge)
            rows["all_feedback"].append(fb)
            rows["next_feedback" if is_next else "rating_feedback"].append(fb)
            rows["stored_to_feedback"].append(ns_ms(s["t_feedback"] - s["t_stored"]))
            if rec.backlog:
                during = rec.drain_done is None or t_edge < rec.drain_done
                rows["drain_feedback" if during else "post_drain_feedback"].append(fb)
        if is_next:
            next_k += 1
            want = f"A{next_k % 1000:03d}"
            while show_i < len(rec.shows) and rec.shows[show_i][0] < s["t_stored"]:
                show_i += 1
            hit = next((t for t, text in rec.shows[show_i:] if text == want), None)
            if hit is not None:
                rows["next_ticket"].append(ns_ms(hit - t_edge))
    return {
        "presses": len(plan),
        "ratings": sum(1 for b, _ in plan if b != "next"),
        "nexts": sum(1 for b, _ in plan if b == "next"),
        "drive_s": drive_s,
        "rate_per_s": len(plan) / drive_s,
        "no_feedback": no_feedback,
        "feedback_kinds": kinds,
        "order_violations": rec.order_violations,
        "acked": rec.acked,
        "backlog": rec.backlog,
        "backlog_acked": rec.backlog_acked,
        "drain_s": None if rec.drain_done is None or not rec.edges else ns_ms(rec.drain_done - rec.edges[0][0]) / 1000,
        "stats": {k: summary(v) for k, v in rows.items() if v},
        "append": summary([ns_ms(d) for d in rec.appends]),
        "acknowledge": summary([ns_ms(d) for d, _ in rec.acks]) if rec.acks else None,
        "ack_flushes": len(rec.acks),
        "ack_seqs_per_flush": statistics.fmean(n for _, n in rec.acks) if rec.acks else 0,
        "pump_sending": summary([ns_ms(d) for d, n in rec.pumps if n]) if any(n for _, n in rec.pumps) else None,
        "pump_idle": summary([ns_ms(d) for d, n in rec.pumps if not n]) if any(not n for _, n in rec.pumps) else None,
    }


# ----- 2. memory -----------------------------------------------------------------------


def run_memory(args, work: Path, broker: Mosquitto) -> dict:
    cfg = write_device_config(work / "rss.toml", device_id="bench-rss", port=broker.port,
                              data_dir=work / "rss-data", buzzer=not args.no_buzzer)
    dev = TimedDeviceProcess(cfg)
    try:
        dev.first("ready")
        dev.first("online")
        time.sleep(0.3)
        at_ready = proc_status(dev.proc.pid)
        plan = make_plan(args.presses, args.seed, (args.gap_min_ms, args.gap_max_ms), args.next_every)
        script = []
        for button, gap in plan:
            script += [f"press {button}", f"wait {gap:.4f}"]
        dev.send(*script)
        dev.wait_until(lambda: dev.counts.get("stored", 0) >= len(plan), 60 + len(plan) * 0.05, "stored events")
        dev.wait_until(lambda: dev.acked_total >= len(plan), 30, "acks")
        time.sleep(0.3)
        after = proc_status(dev.proc.pid)
        code = dev.quit()
        if code != 0:
            raise RuntimeError(f"device exited {code}: {dev.stderr_lines[-10:]}")
    finally:
        dev.close()
    return {"at_ready": at_ready, "after": after, "presses": len(plan), "hardware_libs": hardware_import_cost()}


_IMPORT_PROBE = r"""
import json, sys
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
import device.runtime, device.panel, device.display, device.config, gpiozero.pins.mock
before = rss()
missing = []
for mod in ("PIL.Image", "luma.core.interface.serial", "luma.core.virtual", "luma.core.render",
            "luma.core.legacy", "luma.led_matrix.device", "luma.led_matrix.segment_mapper", "spidev", "lgpio"):
    try:
        __import__(mod)
    except ImportError:
        missing.append(mod)
print(json.dumps({"before": before, "after": rss(), "missing": missing}))
"""


def hardware_import_cost() -> dict | None:
    """Extra RSS for the display/GPIO libraries a Pi loads and --simulate does not."""
    try:
        out = subprocess.run([sys.executable, "-c", _IMPORT_PROBE], capture_output=True, text=True,
                             cwd=ROOT, timeout=60, check=True).stdout
        return json.loads(out.strip().splitlines()[-1])
    except (subprocess.SubprocessError, ValueError, IndexError):
        return None


# ----- 3. start-up -----------------------------------------------------------------------


def run_startup(args, work: Path, broker: Mosquitto) -> dict:
    cfg = write_device_config(work / "start.toml", device_id="bench-start", port=broker.port,
                              data_dir=work / "start-data", buzzer=not args.no_buzzer)
    ready, online = [], []
    for _ in range(args.starts):
        dev = TimedDeviceProcess(cfg)
        try:
            ready.append(dev.first("ready")["_t"] - dev.spawned_at)
            online.append(dev.first("online")["_t"] - dev.spawned_at)
            code = dev.quit()
            if code != 0:
                raise RuntimeError(f"device exited {code}: {dev.stderr_lines[-10:]}")
        finally:
            dev.close()
    bare = []
    for _ in range(max(3, min(args.starts, 5))):
        t0 = time.monotonic()
        subprocess.run([sys.executable, "-c", "pass"], check=True, cwd=ROOT)
        bare.append(time.monotonic() - t0)
    return {"ready": ready, "online": online, "bare_python": statistics.median(bare)}


# ----- report --------------------------------------------------------------------------


def fmt_row(name: str, s: dict) -> list:
    return [name, s["n"], f"{s['p50']:.2f}", f"{s['p90']:.2f}", f"{s['p99']:.2f}", f"{s['max']:.2f}"]


def report(info, fs, work, args, lat, mem, start) -> list[str]:
    verdicts = []
    print()
    print(f"== 1. latency: {lat['presses']} presses ({lat['ratings']} ratings, {lat['nexts']} NEXT), "
          f"{args.gap_min_ms:g}-{args.gap_max_ms:g} ms apart, {lat['rate_per_s']:.0f}/s, "
          f"acker {args.acker}, buzzer {'off' if args.no_buzzer else 'on'}"
          + (f", backlog {lat['backlog']} at start" if lat["backlog"] else "") + " ==")
    st = lat["stats"]
    names = [
        ("all_stored", "press→stored (all)"),
        ("all_feedback", "press→feedback (all)"),
        ("rating_stored", "  rating press→stored"),
        ("rating_feedback", "  rating press→feedback"),
        ("next_stored", "  NEXT release→stored"),
        ("next_feedback", "  NEXT release→feedback"),
        ("queue", "breakdown: edge→loop picks it up"),
        ("handle_to_stored", "breakdown: pick-up→stored"),
        ("stored_to_feedback", "breakdown: stored→feedback"),
        ("next_ticket", "NEXT release→service's ticket shown"),
        ("drain_feedback", f"press→feedback while draining {lat['backlog']}"),
        ("post_drain_feedback", "press→feedback after the drain"),
    ]
    rows = [fmt_row(label, st[key]) for key, label in names if key in st]
    rows.append(fmt_row("ledger.append (commit+fsync)", lat["append"]))
    if lat["acknowledge"]:
        rows.append(fmt_row("ledger.acknowledge (per flush)", lat["acknowledge"]))
    if lat["pump_sending"]:
        rows.append(fmt_row("outbox.pump (when sending)", lat["pump_sending"]))
    if lat["pump_idle"]:
        rows.append(fmt_row("outbox.pump (nothing to send)", lat["pump_idle"]))
    print(table(["ms", "n", "p50", "p90", "p99", "max"], rows))
    print(f"feedback effect first seen: LED {lat['feedback_kinds']['led']}, display {lat['feedback_kinds']['display']}, "
          f"none {lat['no_feedback']}; feedback before its store: {lat['order_violations']}; "
          f"acked {lat['acked']}/{lat['presses']} in {lat['ack_flushes']} ack flushes "
          f"({lat['ack_seqs_per_flush']:.1f} seqs each)")
    if lat["backlog"]:
        drained = "not within the run" if lat["drain_s"] is None else f"{lat['drain_s']:.2f} s after the first press"
        print(f"backlog of {lat['backlog']} events at start: delivered {drained}")

    print()
    a, b = mem["at_ready"], mem["after"]
    print(f"== 2. memory: `hailong device run --simulate` process, after {mem['presses']} presses ==")
    print(table(["KiB", "VmRSS", "VmHWM", "threads"], [
        ["online, before presses", a.get("VmRSS"), a.get("VmHWM"), a.get("Threads")],
        ["after presses + acks", b.get("VmRSS"), b.get("VmHWM"), b.get("Threads")],
    ]))
    hw = mem["hardware_libs"]
    if hw:
        extra = (hw["after"] - hw["before"]) / 1024
        missing = f" (not installed here: {', '.join(hw['missing'])})" if hw["missing"] else ""
        print(f"not in --simulate: the display/GPIO libraries a Pi loads (luma, PIL, spidev, lgpio) "
              f"add about {extra:.1f} MiB RSS{missing}")

    print()
    r = start["ready"]
    print(f"== 3. start-up: {len(r)} starts of `python -m hailong.cli device run --simulate` ==")
    print(table(["s", "median", "min", "max"], [
        ["spawn → {\"ready\"} line", f"{statistics.median(r):.3f}", f"{min(r):.3f}", f"{max(r):.3f}"],
        ["spawn → {\"online\"} line", f"{statistics.median(start['online']):.3f}",
         f"{min(start['online']):.3f}", f"{max(start['online']):.3f}"],
        ["bare `python -c pass`", f"{start['bare_python']:.3f}", "", ""],
    ]))
    print("ready includes: interpreter start, imports (device, gpiozero, paho, protocol), config load, "
          "ledger open (quick_check, WAL, schema check; created on the first start only), mock pins, "
          "display, uplink thread start. It excludes the MQTT connection (\"online\"). "
          "Page cache warm: these are warm-cache process starts, not a cold boot.")

    print()
    print("== targets (host machine) ==")
    p99 = st["all_feedback"]["p99"]
    hwm_mib = b["VmHWM"] / 1024
    rss_mib = b["VmRSS"] / 1024
    med = statistics.median(r)
    verdicts = [
        f"press→feedback p99 = {p99:.2f} ms (target ≤ 10 ms): {verdict(p99 <= TARGET_P99_MS)}",
        f"process RSS = {rss_mib:.1f} MiB, peak (VmHWM) = {hwm_mib:.1f} MiB (target ≤ 45 MiB): "
        f"{verdict(hwm_mib <= TARGET_RSS_MIB)}",
        f"start-up to ready (median of {len(r)}) = {med:.3f} s (target ≤ 1.5 s): {verdict(med <= TARGET_START_S)}",
    ]
    if "drain_feedback" in st:
        d99 = st["drain_feedback"]["p99"]
        verdicts.append(f"press→feedback p99 while draining a backlog of {lat['backlog']} = {d99:.2f} ms "
                        f"(target ≤ 10 ms): {verdict(d99 <= TARGET_P99_MS)}")
    for v in verdicts:
        print(v)
    return verdicts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presses", type=int, default=1000, help="scripted presses (default 1000)")
    ap.add_argument("--starts", type=int, default=7, help="process starts to time (default 7)")
    ap.add_argument("--gap-min-ms", type=float, default=5.0)
    ap.add_argument("--gap-max-ms", type=float, default=20.0)
    ap.add_argument("--next-every", type=int, default=10, help="every Nth press is NEXT (0: none)")
    ap.add_argument("--acker", choices=("per-event", "batch"), default="per-event",
                    help="per-event: one ack per event (tests.support.FakeService's way); "
                         "batch: group commit, one ack per 15 ms")
    ap.add_argument("--backlog", type=int, default=0,
                    help="events already in the ledger at start (left from an outage), so the presses "
                         "overlap their delivery (default 0)")
    ap.add_argument("--no-buzzer", action="store_true", help="config without the buzzer")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--dir", help="base directory for the ledger (default: /tmp unless it is tmpfs)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--json", help="also write the raw results to this file")
    args = ap.parse_args(argv)
    if args.presses < 1 or args.starts < 1 or args.backlog < 0 or not 0 < args.gap_min_ms <= args.gap_max_ms:
        ap.error("need --presses >= 1, --starts >= 1 and 0 < --gap-min-ms <= --gap-max-ms")

    info = machine_info()
    work, fs = bench_dir(args.dir)
    print("hailong device benchmark: latency, memory, start-up")
    print_machine(info, fs, work)
    broker = Mosquitto(work / "mosquitto").start()
    acker = None
    try:
        acker = AckerProcess(broker.port, mode=args.acker, answer_next=True)
        lat = run_latency(args, work, broker)
        mem = run_memory(args, work, broker)
        start = run_startup(args, work, broker)
        acker_stats = acker.close()
        acker = None
    finally:
        if acker is not None:
            acker.close()
        broker.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    verdicts = report(info, fs, work, args, lat, mem, start)
    print(f"(service: {acker_stats.get('received')} events received, {acker_stats.get('duplicates')} duplicates, "
          f"{acker_stats.get('acks_sent')} ack messages)")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "machine": info, "filesystem": fs, "args": vars(args), "latency": lat, "memory": mem,
            "startup": start, "service": acker_stats, "verdicts": verdicts,
        }, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
