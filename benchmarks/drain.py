"""Drain benchmark: how fast a device empties a backlog built up during a broker outage.

    .venv/bin/python benchmarks/drain.py [--events 10000] [--acker both|batch|per-event]

Scenario (per acker mode):
  1. A stand-in central service with a persistent MQTT session subscribes to the events
     topic, then the broker goes down (the outage begins).
  2. The device's ledger is filled with N rating events through device.ledger.Ledger.append
     (the same code path and body key order as DeviceRuntime._store): citizens kept
     pressing while the broker was down.
  3. `python -m hailong.cli device run --simulate` starts with the broker still down and
     reports ready with backlog N; it sits in its reconnect backoff.
  4. The broker comes back. We time, from the moment we start it:
       online       the device's {"online": true} line
       all acked    the device's {"acked": [...]} lines add up to N (ledger empty)
       all received the service has N distinct events
     and count the duplicates the service received.

Acker modes: "batch" is how the real service acks (group commit: events collected for
15 ms or up to 500, then ONE ack per device+ledger naming every seq); "per-event" sends
one ack message per event (tests.support.FakeService), which shows the device's
ack-handling cost.

Target (host): all N=10,000 delivered <= 10 s after the broker returns.
Exits 0 whatever the numbers; non-zero only if the run itself broke.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from _common import (
    Acker, TimedDeviceProcess, bench_dir, machine_info, prefill_ledger, print_machine, proc_cpu_s, table, verdict,
    write_device_config,
)

from device.ledger import Ledger  # noqa: E402
from tests.mosquitto import Mosquitto  # noqa: E402

TARGET_S = 10.0
DEVICE_ID = "bench-drain"


def run_mode(mode: str, args, work: Path, template: Path) -> dict:
    run = work / mode
    data = run / "data"
    data.mkdir(parents=True)
    for f in template.parent.iterdir():
        if f.name.startswith(template.name):
            shutil.copy2(f, data / f.name)
    broker = Mosquitto(run / "mosquitto", extra="set_tcp_nodelay true\n" if args.broker_nodelay else "").start()
    acker = Acker(broker.host, broker.port, mode=mode, window_s=args.window_ms / 1000, max_batch=args.max_batch,
                  client_id=f"bench-service-{mode}", persistent=True, expect=args.events)
    dev = None
    try:
        if not acker.subscribed.wait(10):
            raise RuntimeError("the service could not subscribe")
        broker.stop()  # the outage begins; the service's session and subscription persist
        cfg = write_device_config(run / "device.toml", device_id=DEVICE_ID, port=broker.port, data_dir=data,
                                  backoff_min_s=args.backoff_min, backoff_max_s=args.backoff_max,
                                  extra=f"[ledger]\nin_flight = {args.in_flight}\n")
        dev = TimedDeviceProcess(cfg)
        ready = dev.first("ready", timeout=30)
        if ready.get("backlog") != args.events:
            raise RuntimeError(f"device reports backlog {ready.get('backlog')}, expected {args.events}")
        time.sleep(args.outage)  # the device keeps trying to reconnect, backing off
        cpu0 = proc_cpu_s(dev.proc.pid)
        t0 = time.monotonic()
        broker.start()
        listening = time.monotonic()
        online = dev.first("online", timeout=args.timeout)["_t"]
        timed_out = False
        try:
            dev.wait_until(lambda: dev.acked_total >= args.events, args.timeout, "all acks")
        except RuntimeError:
            if dev.proc.poll() is not None:
                raise
            timed_out = True
        cpu1, t1 = proc_cpu_s(dev.proc.pid), time.monotonic()
        all_acked = next((t for t, total in dev.acked_progress if total >= args.events), None)
        acker.all_received.wait(0 if timed_out else 5)
        all_received = acker.all_received_at
        time.sleep(0.2)  # let stragglers (duplicates) arrive before we count them
        stats = acker.stats()
        code = dev.quit()
        if code != 0:
            raise RuntimeError(f"device exited {code}: {dev.stderr_lines[-10:]}")
    finally:
        if dev is not None:
            dev.close()
        acker.close()
        broker.stop()
    with Ledger.open(data / "ledger.db") as ledger:
        left = ledger.backlog()

    def since(t):
        return None if t is None else t - t0

    first_event = stats["first_event_at"]
    return {
        "mode": mode,
        "events": args.events,
        "broker_listening_s": listening - t0,
        "online_s": since(online),
        "first_event_s": since(first_event),
        "all_acked_s": since(all_acked),
        "all_received_s": since(all_received),
        "drain_after_online_s": None if all_acked is None else all_acked - online,
        "acked_total": dev.acked_total,
        "ack_lines": len(dev.acked_progress),
        "received": stats["received"],
        "distinct": stats["distinct"],
        "duplicates": stats["duplicates"],
        "acks_sent": stats["acks_sent"],
        "left_in_ledger": left,
        "timed_out": timed_out,
        "device_cpu_s": None if cpu0 is None or cpu1 is None else cpu1 - cpu0,
        "device_cpu_share": None if cpu0 is None or cpu1 is None else (cpu1 - cpu0) / (t1 - t0),
    }


def fmt(x):
    return "-" if x is None else f"{x:.3f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=10_000, help="backlog size (default 10000)")
    ap.add_argument("--acker", choices=("both", "batch", "per-event"), default="both")
    ap.add_argument("--window-ms", type=float, default=15.0, help="group-commit window of the batch acker")
    ap.add_argument("--max-batch", type=int, default=500, help="group-commit size limit of the batch acker")
    ap.add_argument("--outage", type=float, default=1.5, help="seconds the device waits for the broker")
    ap.add_argument("--backoff-min", type=float, default=0.1, help="device mqtt.backoff_min_s (default 0.1)")
    ap.add_argument("--backoff-max", type=float, default=0.5,
                    help="device mqtt.backoff_max_s (default 0.5, as in the tests; production default is 60)")
    ap.add_argument("--in-flight", type=int, default=100, help="device ledger.in_flight (default 100, as shipped)")
    ap.add_argument("--broker-nodelay", action="store_true",
                    help="run Mosquitto with set_tcp_nodelay true (its default is false: Nagle on)")
    ap.add_argument("--timeout", type=float, default=120.0, help="give up waiting after this many seconds")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--dir", help="base directory for the ledger (default: /tmp unless it is tmpfs)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--json", help="also write the raw results to this file")
    args = ap.parse_args(argv)
    if args.events < 1:
        ap.error("--events must be >= 1")

    info = machine_info()
    work, fs = bench_dir(args.dir)
    print("hailong drain benchmark: backlog delivery after a broker outage")
    print_machine(info, fs, work)
    modes = ["batch", "per-event"] if args.acker == "both" else [args.acker]
    results = []
    try:
        template = work / "template" / "ledger.db"
        fill = prefill_ledger(template, args.events, seed=args.seed, device_id=DEVICE_ID)
        print(f"prefill : {fill['backlog']} events appended in {fill['seconds']:.2f} s "
              f"({fill['seconds'] / args.events * 1000:.2f} ms per fsynced append), ledger {fill['ledger']}")
        print(f"broker  : Mosquitto, set_tcp_nodelay {'true' if args.broker_nodelay else 'false (default)'}")
        print(f"device  : in_flight window {args.in_flight}, backoff {args.backoff_min:g}-{args.backoff_max:g} s, "
              f"outage {args.outage:g} s before the broker returns")
        for mode in modes:
            results.append(run_mode(mode, args, work, template))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    print()
    print(f"== seconds after the broker was started (N = {args.events}) ==")
    rows = []
    for r in results:
        rows.append([
            r["mode"], fmt(r["broker_listening_s"]), fmt(r["online_s"]), fmt(r["first_event_s"]),
            fmt(r["all_received_s"]), fmt(r["all_acked_s"]), fmt(r["drain_after_online_s"]),
            f"{r['events'] / r['drain_after_online_s']:.0f}" if r["drain_after_online_s"] else "-",
        ])
    print(table(["acker", "listening", "online", "1st event", "all received", "all acked",
                 "online→acked", "events/s"], rows))
    rows = [[r["mode"], r["received"], r["distinct"], r["duplicates"], r["acks_sent"], r["acked_total"],
             r["ack_lines"], r["left_in_ledger"]] for r in results]
    print(table(["acker", "received", "distinct", "duplicates", "ack msgs", "device acked",
                 "acked lines", "left in ledger"], rows))
    for r in results:
        if r["device_cpu_s"] is not None:
            print(f"device process CPU from broker start to all acked ({r['mode']}): {r['device_cpu_s']:.2f} s "
                  f"= {r['device_cpu_share'] * 100:.0f}% of one core")
    print("all acked = the device's {\"acked\"} lines add up to N (each line is one ledger delete "
          "transaction, not fsynced: a lost delete only means a re-send); times are time.monotonic() across processes.")
    print()
    print("== targets (host machine) ==")
    for r in results:
        label = "group-commit acks" if r["mode"] == "batch" else "one ack per event"
        done = r["all_acked_s"] if r["all_received_s"] is None else max(r["all_acked_s"] or 0, r["all_received_s"])
        if r["timed_out"] or r["all_acked_s"] is None:
            print(f"drain {args.events:,} after outage = not done within {args.timeout:g} s "
                  f"(target ≤ 10 s): FAIL  [{label}: {r['acked_total']} acked]")
        else:
            print(f"drain {args.events:,} after outage = {done:.2f} s (target ≤ 10 s): "
                  f"{verdict(done <= TARGET_S)}  [{label}, {r['duplicates']} duplicates]")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "filesystem": fs, "args": vars(args),
                                               "prefill": fill, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
