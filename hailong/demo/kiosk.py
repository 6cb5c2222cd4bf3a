"""The demo's ticket kiosk: simulated citizens take numbers, the way a kiosk asks the service for them.

The kiosk firmware is built on its own branch and not part of this demo yet, so the demo speaks
the kiosk's side of the wire contract itself (docs/protocol.md): a `take` request on the
kiosk's `request` topic, the service's `number` answer on its `cmd` topic, then the `take`
event, which the service acks and records as a waiting ticket. It logs in to the embedded
broker with its own provisioned account, like any device. No printer, no offline block: a
request left unanswered is simply a citizen who gave up.
"""
from __future__ import annotations

import json
import queue
import random
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path

from common.clock import now_ms
from protocol.codec import encode
from protocol.events import make_event
from protocol.messages import make_status
from protocol.tickets import make_request
from hailong.demo.config import KIOSK, MQTT_DIR, SITE

__all__ = ["QUEUES", "Kiosk", "queues_of", "take_tickets"]

# (queue, name, prefix, share of citizens)
QUEUES = [("A", "Đất đai", "A", 0.6), ("B", "Tư pháp – Hộ tịch", "B", 0.4)]
PRIORITY_SHARE = 0.1  # elderly, disabled, pregnant, with small children
ANSWER_S = 3.0  # as [kiosk] number_timeout_s


def queues_of(n: int) -> list[str]:
    """Counter n's queues: odd counters take land files only, even ones both (overlapping, as in a centre)."""
    return ["A"] if n % 2 else ["A", "B"]


class Kiosk:
    def __init__(self, data: Path, mqtt_port: int, prefix: str = "hailong/v1"):
        import paho.mqtt.client as mqtt

        self.base = f"{prefix}/{KIOSK}"
        self.ledger = secrets.token_hex(8)  # a fresh ledger per run: its seqs start again at 1
        self.seq = 0
        self.answers: dict[str, queue.SimpleQueue] = {}
        self.acked: set[int] = set()
        self._lock = threading.Lock()
        self._acked = threading.Condition(self._lock)
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=KIOSK, protocol=mqtt.MQTTv311)
        self.client.username_pw_set(KIOSK, (data / MQTT_DIR / f"{KIOSK}.password").read_text().strip())
        self.client.on_message = self._on_message
        # Online and offline like any device (retained status, the broker's will), for fleet health.
        self.client.will_set(f"{self.base}/status", encode(make_status(False)), qos=1, retain=True)
        self.connected = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.connect("127.0.0.1", mqtt_port)
        self.client.loop_start()

    def _on_connect(self, client, userdata, flags, reason, props) -> None:
        client.subscribe([(f"{self.base}/cmd", 1), (f"{self.base}/ack", 1)])
        client.publish(f"{self.base}/status", encode(make_status(True, "demo-kiosk", self.ledger, now_ms())),
                       qos=1, retain=True)
        self.connected.set()

    def _on_message(self, client, userdata, msg) -> None:
        try:
            body = json.loads(msg.payload)
        except ValueError:
            return
        if msg.topic.endswith("/ack"):
            with self._acked:
                self.acked.update(body.get("seqs", []))
                self._acked.notify_all()
        elif body.get("cmd") == "number" and body.get("req") in self.answers:
            self.answers[body["req"]].put(body)

    def take(self, queue_id: str, priority: bool) -> dict | None:
        """Ask for a number, store the take event, wait for its ack: the printed ticket, or None."""
        req = secrets.token_hex(8)
        box = self.answers[req] = queue.SimpleQueue()
        self.client.publish(f"{self.base}/request", encode(make_request("take", req, queue_id, priority=priority)),
                            qos=1)
        try:
            answer = box.get(timeout=ANSWER_S)
        except queue.Empty:
            return None
        finally:
            self.answers.pop(req, None)
        if "error" in answer:
            return None
        with self._lock:
            self.seq += 1
            seq = self.seq
        ev = make_event("take", device=KIOSK, site=SITE, counter="kiosk", ledger=self.ledger, seq=seq,
                        ts=now_ms(), clock_ok=True, boot=self.ledger, mono=time.monotonic(),
                        ticket=answer["ticket"], queue=queue_id, priority=priority, source="service",
                        date=answer["date"])
        self.client.publish(f"{self.base}/event", encode(ev), qos=1)
        with self._acked:
            if not self._acked.wait_for(lambda: seq in self.acked, timeout=10):
                return None
        return {"ticket": answer["ticket"], "queue": queue_id, "priority": priority, "ahead": answer["ahead"],
                "date": answer["date"]}

    def close(self) -> None:
        self.client.publish(f"{self.base}/status", encode(make_status(False)), qos=1, retain=True).wait_for_publish(5)
        self.client.disconnect()
        self.client.loop_stop()


def take_tickets(kiosk: Kiosk, rng: random.Random, per_minute: float, stop: threading.Event,
                 emit: Callable[[dict], None]) -> None:
    """Citizens arrive at about `per_minute` and each takes a ticket, until `stop`."""
    names, weights = [q[0] for q in QUEUES], [q[3] for q in QUEUES]
    while not stop.wait(rng.expovariate(per_minute / 60.0)):
        got = kiosk.take(rng.choices(names, weights)[0], rng.random() < PRIORITY_SHARE)
        emit({"event": "ticket", **got} if got else {"event": "error", "error": "the kiosk got no number"})
