"""The demo itself: start the service and the counters, let the citizens in, stop it all cleanly."""
from __future__ import annotations

import json
import random
import shutil
import sys
import threading
import time
import urllib.request
from collections import deque
from pathlib import Path

from common.clock import Clock, now
from hailong.demo.citizens import keyboard, serve_citizens
from hailong.demo.config import (
    COMMUNE_NAME, COMMUNE_SITE, KIOSK, KIOSK_PRINTER, QUEUES, REASON_WINDOW_S, SITE, SITE_NAME, STORE_FILE, TZ,
    device_config, device_id, free_port, kiosk_config, local_time, port_free, provision_mqtt, queues_of,
    service_config, site_of, today,
)
from hailong.demo.counter import Counter
from hailong.demo.kiosk import Kiosk, take_tickets
from hailong.demo.login import demo_login
from hailong.demo.outage import stage_outage
from hailong.demo.output import Output
from hailong.demo.view import LiveView
from hailong.sample_data import OFFICERS


class DemoError(Exception):
    """The demo cannot start; the message says why and which option to change."""


class Demo:
    def __init__(self, args, clock: Clock = now):
        self.args = args
        self.clock = clock  # what "today" means for the figures shown; the service has its own
        self.data = Path(args.data).resolve()
        self.out = Output(args.headless)
        self.stop = threading.Event()
        self.recent: deque[dict] = deque(maxlen=50)
        self.counters: list[Counter] = []
        self.officer_of: dict[int, dict] = {}
        self.store = self.ingest = self.api = self.broker = self.auth = self.service = None
        self.mqtt_port = args.mqtt_port
        self.url = ""
        self.hall_url = ""
        self.kiosk: Kiosk | None = None
        self.login: dict = {}
        self.existing: dict = {}  # the store's counts before this run

    def safe(self, fn, default):
        try:
            return fn()
        except Exception:  # noqa: BLE001 - the store may be closing
            return default

    def satisfaction_rows(self) -> list[dict]:
        day = today(self.clock)
        return self.safe(lambda: self.store.satisfaction("officer", day, day)["rows"], [])  # both centres

    # ----- events from counters -------------------------------------------------------------

    def on_event(self, counter: Counter, kind: str, ev: dict) -> None:
        if kind == "updated":
            for r in self.recent:
                if r["counter"] == counter.n and r["seq"] == ev["seq"]:
                    r["reason"] = ev.get("reason")
            self.out.emit({"event": "reason", "counter": counter.n, "device": counter.device,
                           "seq": ev["seq"], "reason": ev.get("reason")})
            return
        officer = ev.get("officer") or counter.officer["id"]  # unset: the service attributes by assignment
        rec = {"event": "stored", "counter": counter.n, "device": counter.device, "seq": ev["seq"],
               "type": ev["type"], "ticket": ev.get("ticket"), "officer": officer}
        if ev["type"] == "rating":
            rec.update(score=ev["score"], scale=ev["scale"], flags=list(ev["flags"]),
                       counted=not ev["flags"], held=bool(ev.get("held")))
            # The time the counter stamped on the press, at the demo site.
            self.recent.append({"time": local_time(ev.get("ts") or int(self.clock() * 1000)), "counter": counter.n,
                                "seq": ev["seq"], "score": ev["score"], "scale": ev["scale"], "flags": ev["flags"],
                                "reason": None})
        elif ev["type"] == "call":
            rec["action"] = ev["action"]
        self.out.emit(rec)

    def on_ticket(self, ticket: dict) -> None:
        """The kiosk printed a ticket (or could not: its printer's state says why)."""
        self.out.emit({"event": "ticket" if ticket["printed"] else "not_printed", "device": KIOSK, **ticket})

    def queue_counters(self) -> list[Counter]:
        """The counters that call the kiosk's tickets: those of the kiosk's centre."""
        return [c for c in self.counters if site_of(c.n, self.args.counters) == SITE]

    # ----- set-up ---------------------------------------------------------------------------

    def register(self, n: int) -> dict:
        oid, name, code = OFFICERS[(n - 1) % len(OFFICERS)]
        site = site_of(n, self.args.counters)
        self.store.upsert_officer(oid, name, code=code, unit="Bộ phận Một cửa")
        self.store.upsert_counter(site, str(n), f"Quầy {n}", device=device_id(n))
        self.store.register_device(device_id(n), site, str(n))
        return {"id": oid, "name": name, "code": code}

    def assign(self, n: int, officer: dict) -> None:
        """Through the API, as a manager would: recorded, then published to the device (retained)."""
        site = site_of(n, self.args.counters)
        body = json.dumps({"site": site, "counter": str(n), "officer": officer["id"]}).encode()
        req = urllib.request.Request(f"{self.url}/api/v1/assignments", data=body, method="POST", headers={
            "Authorization": f"Bearer {self.login['api_token']}", "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            r.read()

    def start(self) -> int:
        """Everything up and the "started" record out: 0; or the reason on stderr and 1."""
        try:
            self._check_ports()
            reused = self._prepare_data()
            self._start_service()
            self._start_counters()
        except DemoError as e:
            print(f"hailong demo: {e}", file=sys.stderr)
            return 1
        self.out.emit({
            "event": "started", "url": self.url, "dashboard": self.url + "/",
            "login": {"user": self.login["user"], "password": self.login["password"], "role": "manager"},
            "commune_login": self.login["commune"],
            "sites": {SITE: SITE_NAME, COMMUNE_SITE: COMMUNE_NAME},
            "api_token": self.login["api_token"], "hall": self.hall_url, "kiosk": KIOSK,
            "kiosk_printer": str(self.data / KIOSK_PRINTER),
            "queues": [{"queue": q, "name": name, "prefix": prefix} for q, name, prefix, _ in QUEUES],
            "mqtt_port": self.mqtt_port, "data": str(self.data),
            "reused": reused, "fresh": bool(self.args.fresh), "store_counts": self.existing, "seed": self.args.seed,
            "rate": self.args.rate, "counters": [{"counter": c.n, "device": c.device, "officer": c.officer,
                                                  "online": c.online, "queues": queues_of(c.n)}
                                                 for c in self.counters],
        })
        return 0

    def _check_ports(self) -> None:
        args = self.args
        if not port_free(args.port):
            raise DemoError(f"port {args.port} is already in use (is another demo or service running?); "
                            f"choose another with --port")
        if args.mqtt_port and not port_free(args.mqtt_port):
            raise DemoError(f"MQTT port {args.mqtt_port} is already in use; choose another with --mqtt-port "
                            "(or 0 for any free port)")

    def _prepare_data(self) -> bool:
        """The data folder, wiped first with --fresh; True when an earlier run's store is reused."""
        reused = (self.data / STORE_FILE).exists()
        if self.args.fresh and self.data.exists():
            shutil.rmtree(self.data)
            reused = False
        self.data.mkdir(parents=True, exist_ok=True)
        return reused

    def _start_service(self) -> None:
        from broker.api import ApiServerError
        from broker.embedded import EmbeddedBroker, EmbeddedBrokerError
        from broker.service import Service

        provision_mqtt(self.data, self.args.counters)
        self.mqtt_port = self.args.mqtt_port or free_port()
        cfg = service_config(self.data, self.args.port, self.mqtt_port)
        try:
            self.broker = EmbeddedBroker.from_config(cfg.mqtt).start()
        except EmbeddedBrokerError as e:
            raise DemoError(f"{e}; choose another with --mqtt-port") from None
        self.service = Service.assemble(cfg)
        # The same service `hailong broker run` runs.
        self.store, self.auth, self.ingest, self.api = (
            self.service.store, self.service.auth, self.service.ingest, self.service.api)
        try:
            self.api.bind()
        except ApiServerError as e:
            raise DemoError(f"{e}; choose another with --port") from None
        self.ingest.start()
        if self.service.alerts is not None:
            self.service.alerts.start()
        self.api.start()
        self.url = self.api.url
        if not self.ingest.connected.wait(10):
            raise DemoError("the service could not connect to the embedded broker")

    def _start_counters(self) -> None:
        self.login = demo_login(self.data, self.auth)
        self.existing = self.store.counts()
        self.store.upsert_site(SITE, SITE_NAME, TZ)
        self.store.upsert_site(COMMUNE_SITE, COMMUNE_NAME, TZ)
        n_counters = self.args.counters
        for n in range(1, n_counters + 1):
            self.officer_of[n] = self.register(n)
            self.assign(n, self.officer_of[n])
        for n in range(1, n_counters + 1):
            cfg = device_config(self.data, n, self.mqtt_port, site_of(n, n_counters))
            self.counters.append(Counter(n, cfg, self.officer_of[n], self.on_event))
        for c in self.counters:
            c.connected.wait(20)
        self._start_queue()

    def _start_queue(self) -> None:
        """The queues, the counters' share of them, the kiosk, and the hall display's address."""
        from broker.auth import DISPLAY, AuthError

        for queue_id, name, prefix, _ in QUEUES:
            self.store.upsert_queue(SITE, queue_id, name, prefix)
        for c in self.queue_counters():
            self.store.set_counter_queues(SITE, str(c.n), queues_of(c.n))
        self.store.register_device(KIOSK, SITE, "kiosk")  # before it connects: its first take is its site's
        try:
            self.auth.revoke_token("demo-hall")  # the last run's: one display token at a time
        except AuthError:
            pass
        self.hall_url = f"{self.url}/hall/{SITE}?key={self.auth.create_token(DISPLAY, 'demo-hall', site=SITE)}"
        self.kiosk = Kiosk(kiosk_config(self.data, self.mqtt_port), self.on_ticket)
        if not self.kiosk.connected.wait(20):
            raise DemoError("the kiosk could not connect to the embedded broker")

    # ----- running --------------------------------------------------------------------------

    def _threads(self, view_stop: threading.Event) -> list[threading.Thread]:
        args, threads = self.args, []
        for c in self.counters:
            if args.interactive and c.n == 1:
                threads.append(threading.Thread(target=keyboard, args=(c, self.stop), daemon=True, name="keyboard"))
            elif args.rate > 0:
                seed = None if args.seed is None else args.seed * 1000 + c.n
                threads.append(threading.Thread(
                    target=serve_citizens, args=(c, random.Random(seed), args.rate, self.stop, self.out.emit),
                    daemon=True, name=f"citizens-{c.n}"))
        if args.rate > 0 and self.kiosk is not None:
            # Citizens arrive a little slower than the kiosk's centre's counters serve them: the queue stays short.
            rng = random.Random(None if args.seed is None else args.seed * 1000)
            per_minute = args.rate * len(self.queue_counters()) * 0.9
            threads.append(threading.Thread(
                target=take_tickets, args=(self.kiosk, rng, per_minute, self.stop, self.out.emit),
                daemon=True, name="citizens-kiosk"))
        if args.outage_after > 0 and not (args.interactive and len(self.counters) == 1):
            threads.append(threading.Thread(target=stage_outage, daemon=True, name="outage", args=(
                self, self.counters[-1], args.outage_after, args.outage_s, self.stop)))
        if not args.headless:
            threads.append(threading.Thread(target=LiveView(self).run, args=(view_stop,), daemon=True, name="view"))
        return threads

    def run(self) -> None:
        deadline = time.monotonic() + self.args.duration if self.args.duration else None
        view_stop = threading.Event()
        threads = self._threads(view_stop)
        for t in threads:
            t.start()
        while not self.stop.wait(0.2):
            if deadline and time.monotonic() >= deadline:
                self.stop.set()
            if self.ingest.failed.is_set() or self.api.failed:
                self.out.emit({"event": "error", "error": "the service stopped unexpectedly"})
                self.stop.set()
        for t in threads:
            if t.name.startswith("citizens"):
                t.join(5)
        view_stop.set()

    def drain(self, timeout: float) -> bool:
        """Wait until every stored event is acked (a held low rating waits for its reason window)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if all(d.unacked() == 0 or d.proc.poll() is not None for d in self.devices()):
                return True
            time.sleep(0.1)  # noqa: polling the counters' ack lines
        return False

    def shutdown(self) -> None:
        self.out.emit({"event": "stopping"})
        drained = self.drain(REASON_WINDOW_S + 8) if self.counters else True
        for d in self.devices():
            d.send("quit")
        kiosk_code = self.kiosk.quit() if self.kiosk is not None else None
        codes = {c.n: c.quit() for c in self.counters}
        offline = self.wait_offline(5)
        self.out.emit({"event": "counters_stopped", "exit_codes": codes, "kiosk_exit_code": kiosk_code,
                       "offline": offline})
        # Let the last acks and statuses be committed before the summary is read.
        time.sleep(0.3)  # noqa: a short settle for the ingest worker's last group
        self.out.emit({"event": "summary", "day": today(self.clock), "drained": drained,
                       "officers": self.satisfaction_rows(), "store_counts": self.safe(self.store.counts, {})})

    def wait_offline(self, timeout: float) -> list[int]:
        end = time.monotonic() + timeout
        want = {c.device: c.n for c in self.counters}
        kiosk = [KIOSK] if self.kiosk is not None else []
        while True:
            devices = {d["device"]: d for d in self.safe(self.store.devices, [])}
            offline = sorted(n for dev, n in want.items() if devices.get(dev, {}).get("online") is False)
            gone = all(devices.get(dev, {}).get("online") is False for dev in kiosk)
            if (len(offline) == len(want) and gone) or time.monotonic() >= end:
                return offline
            time.sleep(0.1)  # noqa: polling the store for the counters' last will

    def devices(self) -> list:
        """Every firmware process the demo started: the counters and the kiosk."""
        return self.counters + ([self.kiosk] if self.kiosk is not None else [])

    def close(self) -> None:
        for d in self.devices():
            if d.proc.poll() is None:
                d.quit(5)
        if self.service is not None:
            self.service.close()
        if self.broker is not None:
            self.broker.stop()
