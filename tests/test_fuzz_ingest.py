"""The payload fuzzing run: the real service (broker/service.py: ingest, store on disk, API) against a
real Mosquitto, fed seeded random and mutated payloads on the event, status and telemetry topics of
registered and unregistered devices, interleaved with valid events.

It must stay up (ingest worker alive, /healthz ok), refuse each bad payload with a reason (dead
letters, bounded; a logged warning for status and telemetry) and still count the valid events
exactly. `make test` runs a short variant; `HAILONG_FUZZ_PAYLOADS=50000` (make soak) the long one,
and `HAILONG_FUZZ_SEED` picks another seed. The figures go to stdout (pytest -s) and, with
`HAILONG_FUZZ_REPORT=<file>`, to a JSON file. It runs on a SQLite store and on a PostgreSQL one (store_url).
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import Counter

import httpx
import paho.mqtt.client as mqtt
import pytest

from broker.config import config_from_dict
from broker.service import Service
from broker.store.deadletters import MAX_ROWS
from common import clock
from tests.fuzz_payloads import PayloadFuzzer, valid_counted_check
from tests.mosquitto import free_port

PAYLOADS = int(os.environ.get("HAILONG_FUZZ_PAYLOADS", "3000"))
SEED = int(os.environ.get("HAILONG_FUZZ_SEED", "20261118"))
REGISTERED = {"dev-1": ("s1", "1"), "dev-2": ("s1", "2"), "dev-3": ("s2", "1")}
# Topic levels MQTT allows but no device id is: only a broker without an ACL lets them through.
UNREGISTERED = ["ghost-1", "ghost-2", "not a device id", "<script>x", "..", "x" * 100]
HEALTH_EVERY = 500  # payloads between two /healthz probes


class Refusals(logging.Handler):
    """Tallies the ingest's warnings: every refused event by reason, refused status/telemetry by kind."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.events: Counter = Counter()
        self.health: Counter = Counter()

    def emit(self, record):
        if record.msg.startswith("ignoring malformed"):
            kind, device, reason = record.args
            assert str(reason), "a refusal without a reason"
            self.health[kind] += 1
        elif record.msg.startswith("rejected event"):
            device, reason = record.args
            assert reason, "a refusal without a reason"
            self.events[reason_class(reason)] += 1


@pytest.fixture
def service(tmp_path, mosquitto, store_url):
    cfg = config_from_dict({
        "service": {"data_dir": str(tmp_path / "state")},
        "mqtt": {"embedded": False, "host": mosquitto.host, "port": mosquitto.port, "batch_wait_ms": 5},
        "store": {"url": store_url if store_url.startswith("postgresql") else f"sqlite:///{store_url}"},
        "http": {"port": free_port()},
    })
    svc = Service.assemble(cfg)
    for device, (site, counter) in REGISTERED.items():
        svc.store.register_device(device, site, counter)
    svc.api.start()
    svc.ingest.start()
    assert svc.ingest.connected.wait(10)
    try:
        yield svc
    finally:
        svc.close()


def healthy(svc) -> bool:
    r = httpx.get(svc.api.url + "/healthz", timeout=10)
    return r.status_code == 200 and r.json()["ok"] is True and svc.ingest._worker.is_alive()


def processed(svc) -> int:
    m = svc.ingest.metrics
    return m.ingested + m.duplicates + m.conflicts + m.rejected


def wait_until(probe, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not probe():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        pause.wait(0.05)


def publisher(mosquitto) -> mqtt.Client:
    # One client for everything: the broker keeps one client's messages in order, so an altered
    # resend always arrives after the event it alters, as it would from a real device.
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="fuzzer", protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect(mosquitto.host, mosquitto.port)
    client.loop_start()
    return client


@pytest.mark.slow
def test_payload_fuzzing_leaves_the_service_up_and_the_counts_exact(service, mosquitto, capsys):
    svc = service
    warnings = Refusals()
    logging.getLogger("hailong.ingest").addHandler(warnings)
    fuzzer = PayloadFuzzer(SEED, REGISTERED, UNREGISTERED, clock.now_ms())
    client = publisher(mosquitto)
    started = time.monotonic()
    categories: Counter = Counter()
    events = 0
    try:
        last = None
        for i, sent in enumerate(fuzzer.payloads(PAYLOADS), start=1):
            last = client.publish(sent.topic, sent.payload, qos=1)
            categories[sent.category] += 1
            events += sent.kind == "event"
            if i % HEALTH_EVERY == 0:
                assert healthy(svc), f"unhealthy after {i} payloads"
        last.wait_for_publish(60)
        wait_until(lambda: processed(svc) >= events or svc.ingest.failed.is_set(), 60 + PAYLOADS / 100,
                   f"the service to take all {events} events (has {processed(svc)}: {svc.ingest.metrics}, "
                   f"queued {svc.ingest._q.qsize()}, worker alive {svc.ingest._worker.is_alive()})")
    finally:
        client.loop_stop()
        client.disconnect()
        logging.getLogger("hailong.ingest").removeHandler(warnings)
    elapsed = time.monotonic() - started

    assert not svc.ingest.failed.is_set(), f"ingest stopped: {svc.ingest.failure!r}"
    assert healthy(svc)
    figures = report(svc, fuzzer, categories, warnings, elapsed)
    with capsys.disabled():
        print("\npayload fuzzing:", json.dumps(figures, indent=1, ensure_ascii=False))
    if os.environ.get("HAILONG_FUZZ_REPORT"):
        with open(os.environ["HAILONG_FUZZ_REPORT"], "w", encoding="utf-8") as f:
            json.dump(figures, f, indent=1, ensure_ascii=False)

    exp, m = fuzzer.expected, svc.ingest.metrics
    outcome = {"stored": m.ingested - m.held, "held": m.held, "duplicate": m.duplicates,
               "conflict": m.conflicts, "rejected": m.rejected}
    assert outcome == {k: exp.events[k] for k in outcome}, (outcome, dict(exp.events))
    assert figures["miscounted"] == [], figures["miscounted"]
    totals = svc.store.counts()
    # Every refusal and every conflict is a dead letter with a reason, and the table stays bounded.
    assert totals["dead_letters"] + totals["dead_letters_dropped"] == m.rejected + m.conflicts
    assert totals["dead_letters"] <= MAX_ROWS
    assert all(d["reason"] for d in svc.store.dead_letters(MAX_ROWS))
    assert dict(warnings.health) == dict(exp.health_rejected)
    assert sum(warnings.events.values()) == m.rejected


def report(svc, fuzzer: PayloadFuzzer, categories: Counter, warnings: Refusals, elapsed: float) -> dict:
    m, exp = svc.ingest.metrics, fuzzer.expected
    rows = svc.store.satisfaction("counter", "1970-01-01", "9999-12-30")["rows"]
    return {
        "payloads": sum(categories.values()), "seed": SEED, "seconds": round(elapsed, 1),
        "sent_by_category": dict(sorted(categories.items())),
        "valid_events_sent": exp.valid_sent,
        "events": {"stored_counted": m.ingested - m.held, "held": m.held, "duplicates": m.duplicates,
                   "conflicts": m.conflicts, "rejected": m.rejected},
        "events_rejected_by_reason": dict(warnings.events.most_common()),
        "status_telemetry_refused": dict(warnings.health),
        "dead_letters": {k: v for k, v in svc.store.counts().items() if k.startswith("dead_letters")},
        "crashes": int(svc.ingest.failed.is_set()),
        "miscounted": valid_counted_check(exp, rows),
    }


REASON_CLASSES = [  # (what the reason says, how the report tallies it), first match wins
    ("spoofing", "spoofed device (payload device is not the topic's)"),
    ("conflicting duplicate", "duplicate with another body"),
    ("end of the calendar", "ts beyond the calendar"),
    ("bytes, over the", "oversized"),
    ("not valid UTF-8", "invalid UTF-8"),
    ("nested too deeply", "nested too deeply"),
    ("is not allowed in JSON", "NaN or Infinity"),
    ("out of range", "number out of range"),
    ("duplicate key", "duplicate key"),
    ("must be a JSON object", "not a JSON object"),
    ("empty payload", "empty payload"),
    ("invalid JSON", "invalid JSON"),
]


def reason_class(reason: str) -> str:
    """A dead letter's reason without its particulars (values, offsets), to tally them."""
    for words, name in REASON_CLASSES:
        if words in reason:
            return name
    field, sep, _ = reason.partition(": ")
    if sep and " " not in field:
        return f"bad field: {field.split('.')[0].split('[')[0]}"
    return reason
