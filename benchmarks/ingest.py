"""How fast the service ingests compared with a bare paho subscriber, on the same broker.

Both drain the same N QoS 1 events that Mosquitto queued for their persistent session
while they were away (the situation after a service restart):
  A. a plain paho subscriber that only receives (auto-ack);
  B. the real service (`broker.ingest.Ingest` + `broker.store.Store` on disk): validate,
     store with rollups, commit, then MQTT-ack and publish the device acks.
Prints both rates and their ratio (target: B/A >= 0.6). Run: `python benchmarks/ingest.py`.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.packettypes import PacketTypes  # noqa: E402
from paho.mqtt.properties import Properties  # noqa: E402

from benchmarks._common import bench_dir, machine_info, print_machine  # noqa: E402
from protocol.codec import encode  # noqa: E402
from protocol.events import make_event  # noqa: E402
from tests.mosquitto import Mosquitto  # noqa: E402

PREFIX = "hailong/v1"


def persistent_client(client_id: str, broker: Mosquitto, on_message=None) -> mqtt.Client:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    c.max_inflight_messages_set(1000)
    if on_message:
        c.on_message = on_message
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    c.connect(broker.host, broker.port, clean_start=False, properties=props)
    return c


def register_session(client_id: str, broker: Mosquitto) -> None:
    """Create the persistent session and its subscription, then leave: messages queue up."""
    done = threading.Event()
    c = persistent_client(client_id, broker)
    c.on_subscribe = lambda *a: done.set()
    c.loop_start()
    c.subscribe(f"{PREFIX}/+/event", qos=1)
    if not done.wait(10):
        raise RuntimeError("subscribe failed")
    c.disconnect()
    c.loop_stop()


def make_payloads(n: int, devices: int) -> list[tuple[str, bytes]]:
    now = int(time.time() * 1000)
    out = []
    for i in range(n):
        d = i % devices
        out.append((f"{PREFIX}/dev-{d}/event", encode(make_event(
            "rating", device=f"dev-{d}", site="bench", counter=str(d), ledger=f"{d:016x}",
            seq=i // devices + 1, ts=now + i, clock_ok=True, boot="boot", mono=float(i),
            officer=f"o-{d % 50}", ticket=None, score=1 + i % 4, scale=4,
        ))))
    return out


def publish_all(broker: Mosquitto, payloads) -> None:
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-pub", protocol=mqtt.MQTTv5)
    pub.max_inflight_messages_set(1000)
    pub.connect(broker.host, broker.port)
    pub.loop_start()
    infos = [pub.publish(topic, data, qos=1) for topic, data in payloads]
    for info in infos:
        info.wait_for_publish(60)
    pub.disconnect()
    pub.loop_stop()


def drain_plain(broker: Mosquitto, n: int) -> float:
    got = 0
    done = threading.Event()

    def on_message(c, u, m):
        nonlocal got
        got += 1
        if got == n:
            done.set()

    t0 = time.perf_counter()
    c = persistent_client("bench-plain", broker, on_message)
    c.loop_start()
    if not done.wait(300):
        raise RuntimeError(f"plain subscriber got only {got}/{n}")
    elapsed = time.perf_counter() - t0
    c.disconnect()
    c.loop_stop()
    return elapsed


def drain_service(broker: Mosquitto, n: int, devices: int, db: Path, batch_max: int,
                  batch_wait_ms: int) -> tuple[float, dict]:
    from broker.ingest import Ingest, IngestSettings
    from broker.store import Store

    store = Store.open(db)
    for d in range(devices):  # only known devices count: the benchmark measures the counted path
        store.register_device(f"dev-{d}", "bench", str(d))
    ingest = Ingest(store, IngestSettings(host=broker.host, port=broker.port, client_id="hailong-service",
                                          batch_max=batch_max, batch_wait_ms=batch_wait_ms))
    t0 = time.perf_counter()
    ingest.start()
    deadline = time.monotonic() + 600
    while ingest.metrics.ingested + ingest.metrics.duplicates < n:
        if time.monotonic() > deadline or ingest.failed.is_set():
            raise RuntimeError(f"service ingested only {ingest.metrics.ingested}/{n}")
        time.sleep(0.005)  # a benchmark polling its own counter, not a test
    elapsed = time.perf_counter() - t0
    m = ingest.metrics
    stats = {"batches": m.batches, "ingested": m.ingested, "duplicates": m.duplicates,
             "stored": store.counts()["events"]}
    ingest.stop()
    store.close()
    return elapsed, stats


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=20000)
    ap.add_argument("--devices", type=int, default=40)
    ap.add_argument("--batch-max", type=int, default=500)
    ap.add_argument("--batch-wait-ms", type=int, default=20)
    args = ap.parse_args(argv)

    work, fs = bench_dir()
    broker = Mosquitto(work / "mosquitto").start()
    try:
        print_machine(machine_info(), fs, work / "store")
        register_session("bench-plain", broker)
        register_session("hailong-service", broker)
        payloads = make_payloads(args.events, args.devices)
        publish_all(broker, payloads)
        plain = drain_plain(broker, args.events)
        service, stats = drain_service(broker, args.events, args.devices, work / "store" / "hailong.db",
                                       args.batch_max, args.batch_wait_ms)
    finally:
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)
    a, b = args.events / plain, args.events / service
    print(f"\n{args.events} QoS 1 events from {args.devices} devices, queued for each session")
    print(f"A. plain paho subscriber drains      {plain:7.2f} s  {a:9.0f} events/s")
    print(f"B. service ingests (commit + ack)    {service:7.2f} s  {b:9.0f} events/s  "
          f"({stats['batches']} group commits, {stats['stored']} stored)")
    ratio = b / a
    print(f"ingest ratio B/A = {ratio:.2f} (target >= 0.6): {'PASS' if ratio >= 0.6 else 'FAIL'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
