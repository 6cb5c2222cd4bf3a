"""`hailong demo`: one simulated counter, the real firmware, an embedded broker.

The counter runs `hailong device run --simulate` (MockFactory pins, a text display) as
a child process. A small stand-in for the central service commits nothing to disk yet:
it answers NEXT with ticket numbers, assigns an officer and acks every event, so the
whole round trip (press -> ledger -> MQTT -> ack -> ledger cleared) is visible.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

PREFIX = "hailong/v1"
DEVICE_ID = "demo-counter-1"
OFFICER = {"id": "can-bo-07", "name": "Nguyễn Thị Lan", "code": "07"}
LABELS = ["Không hài lòng", "Bình thường", "Hài lòng", "Rất hài lòng"]


class DemoService:
    """Answers the counter the way the central service will: tickets, acks, an officer."""

    def __init__(self, host: str, port: int, say):
        import paho.mqtt.client as mqtt

        self.say = say
        self.next_ticket = 1001
        self.committed = 0
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id="demo-service", protocol=mqtt.MQTTv311,
        )
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self._ready = threading.Event()
        self.client.on_subscribe = lambda *a: self._ready.set()
        self.client.connect(host, port)
        self.client.loop_start()
        if not self._ready.wait(10):
            raise RuntimeError("demo service could not subscribe to the embedded broker")
        self.client.publish(f"{PREFIX}/{DEVICE_ID}/assignment", json.dumps({"officer": OFFICER}), qos=1, retain=True)

    def _on_connect(self, client, userdata, flags, rc, props):
        client.subscribe([(f"{PREFIX}/+/event", 1), (f"{PREFIX}/+/status", 1)])

    def _on_message(self, client, userdata, msg):
        from protocol import ProtocolError
        from protocol.events import decode_event
        from protocol.messages import make_ack

        device, kind = msg.topic.split("/")[-2:]
        if kind == "status":
            state = json.loads(msg.payload or b"{}").get("online")
            self.say(f"service: {device} is {'online' if state else 'offline'}")
            return
        try:
            ev = decode_event(msg.payload)
        except ProtocolError as e:
            self.say(f"service: rejected a malformed event from {device}: {e}")
            return
        if ev["type"] == "call" and ev["action"] == "next":
            ticket = str(self.next_ticket)
            self.next_ticket += 1
            cmd = {"cmd": "ticket", "ticket": ticket, "seq": ev["seq"]}
            client.publish(f"{PREFIX}/{device}/cmd", json.dumps(cmd), qos=1)
        client.publish(f"{PREFIX}/{device}/ack", json.dumps(make_ack(ev["ledger"], [ev["seq"]])), qos=1)
        self.committed += 1
        self.say(f"service: committed {describe(ev)}")

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()


def describe(ev: dict) -> str:
    what = ev["type"]
    if what == "rating":
        label = LABELS[ev["score"] - 1] if ev["scale"] == 4 else str(ev["score"])
        flags = f" [{', '.join(ev['flags'])}: not counted]" if ev["flags"] else ""
        what = f"rating {ev['score']}/{ev['scale']} {label}{flags}"
    elif what == "call":
        what = f"call {ev['action']}"
    return f"#{ev['seq']} {what} ticket={ev['ticket']} officer={ev['officer']}"


def citizen_script(rng: random.Random):
    """Endless: staff calls the next ticket, the citizen is served, then rates (sometimes badly)."""
    while True:
        yield "press next", rng.uniform(1.5, 3.0)
        score = rng.choices([1, 2, 3, 4], weights=[1, 2, 5, 8])[0]
        yield f"press {score}", rng.uniform(0.3, 1.0)
        if rng.random() < 0.15:  # an impatient citizen presses again: recorded, flagged, not counted
            yield f"press {rng.randint(1, 4)}", 0.3


def write_config(data: Path, port: int) -> Path:
    cfg = data / "device.toml"
    cfg.write_text(
        "[device]\n"
        f'id = "{DEVICE_ID}"\nsite = "demo-centre"\ncounter = "1"\ndata_dir = "{data / "counter-1"}"\n'
        "[mqtt]\n"
        f'host = "127.0.0.1"\nport = {port}\nprotocol = "3.1.1"\n'
        "backoff_min_s = 0.2\nbackoff_max_s = 2\n"
        "[clock]\ntrust = \"always\"\n"
        # Demo time runs fast: a citizen is served in seconds, not minutes.
        "[rating]\ngrace_s = 1.0\nrepeat_gap_s = 3\nfeedback_s = 0.6\n"
    )
    return cfg


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hailong demo", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=18830, help="embedded MQTT broker port (default 18830)")
    parser.add_argument("--data", default="demo-data", help="demo data folder (default ./demo-data)")
    parser.add_argument("--duration", type=float, default=0, help="stop after this many seconds (0 = until Ctrl-C)")
    parser.add_argument("--seed", type=int, default=None, help="make the simulated citizens repeatable")
    args = parser.parse_args(argv)

    from broker.embedded import EmbeddedBroker, EmbeddedBrokerError

    lock = threading.Lock()

    def say(text: str) -> None:
        with lock:
            print(f"{time.strftime('%H:%M:%S')}  {text}", flush=True)

    data = Path(args.data).resolve()
    data.mkdir(parents=True, exist_ok=True)
    try:
        broker = EmbeddedBroker("127.0.0.1", args.port).start()
    except EmbeddedBrokerError as e:
        print(f"hailong demo: {e}; choose another with --port", file=sys.stderr)
        return 1
    say(f"embedded MQTT broker on 127.0.0.1:{broker.port}")
    service = DemoService("127.0.0.1", broker.port, say)
    device = subprocess.Popen(
        [sys.executable, "-m", "hailong.cli", "device", "run", "--simulate",
         "--config", str(write_config(data, broker.port))],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1,
        start_new_session=True,  # Ctrl-C reaches us; we stop the counter ourselves, cleanly
    )
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def read_device():
        for line in device.stdout:
            rec = json.loads(line)
            if "display" in rec:
                say(f"counter 1 display [{rec['display']}]")
            elif "stored" in rec:
                say(f"counter 1 stored  {describe(rec['stored'])}")
            elif "acked" in rec:
                say(f"counter 1 ledger cleared {rec['acked']}")
            elif rec.get("online") is True:
                online.set()
            elif "ready" in rec:
                say(f"counter 1 ready, ledger {rec['ledger']}, {rec['backlog']} events waiting")

    online = threading.Event()
    reader = threading.Thread(target=read_device, daemon=True)
    reader.start()
    waited = 0.0
    while not online.wait(0.2) and not stop.is_set() and waited < 15:
        waited += 0.2
    if not online.is_set() and not stop.is_set():
        say("the counter has not reached the broker yet; it keeps trying while citizens press")
    rng = random.Random(args.seed)
    deadline = time.monotonic() + args.duration if args.duration else None
    try:
        for command, pause in citizen_script(rng):
            if stop.is_set() or (deadline and time.monotonic() >= deadline):
                break
            device.stdin.write(command + "\n")
            device.stdin.flush()
            stop.wait(pause)
    except BrokenPipeError:
        say("the counter process ended unexpectedly")
    finally:
        try:
            device.stdin.write("quit\n")
            device.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass
        try:
            device.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(device.pid, signal.SIGKILL)
        reader.join(5)
        service.close()
        broker.stop()
    say(f"demo stopped: {service.committed} events committed")
    return 0
