"""`hailong demo`: the whole system on one machine in one command.

In one process tree: the real central service in-process (embedded MQTT broker, SQLite
store, ingest, HTTP API and dashboard), N counters running the real firmware as child
processes (`hailong device run --simulate`), an officer assigned to each counter, a demo
login, and simulated citizens who wait, get called with NEXT and press rating buttons
(mostly good, some low ratings with a reason, some misuse: repeats and chords).

Output: a live terminal view on a TTY, JSON lines with --headless (or when stdout is not a
terminal). Ctrl-C stops everything cleanly: counters publish offline, the service flushes.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import deque
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from common.periods import DEFAULT_TZ
from hailong.sample_data import OFFICERS, REASONS

SITE = "demo"
SITE_NAME = "Trung tâm Phục vụ hành chính công (demo)"
TZ = DEFAULT_TZ
LOGIN_FILE = "demo-login.json"
STORE_FILE = "hailong.db"
LABELS = {1: "Không hài lòng", 2: "Bình thường", 3: "Hài lòng", 4: "Rất hài lòng"}
KEYS = {"1": "press 1", "2": "press 2", "3": "press 3", "4": "press 4", "n": "press next", "r": "press recall"}
REASON_WINDOW_S = 2.0


def device_id(n: int) -> str:
    return f"demo-c{n}"


def today() -> str:
    return datetime.now(ZoneInfo(TZ)).date().isoformat()


# ----- configuration --------------------------------------------------------------------------

def service_config(data: Path, http_port: int, mqtt_port: int):
    from broker.config import config_from_dict

    return config_from_dict({
        "service": {"name": SITE_NAME, "data_dir": str(data), "timezone": TZ},
        "mqtt": {"embedded": True, "port": mqtt_port, "protocol": "3.1.1", "client_id": "hailong-demo-service",
                 "batch_wait_ms": 5},
        "store": {"url": "sqlite:///" + str(data / STORE_FILE)},
        "http": {"host": "127.0.0.1", "port": http_port},
    })


def device_config(data: Path, n: int, mqtt_port: int) -> Path:
    folder = data / f"counter-{n}"
    folder.mkdir(parents=True, exist_ok=True)
    reasons = ", ".join(json.dumps(r, ensure_ascii=False) for r in REASONS)
    cfg = data / f"counter-{n}.toml"
    cfg.write_text(
        "[device]\n"
        f'id = "{device_id(n)}"\nsite = "{SITE}"\ncounter = "{n}"\ndata_dir = "{folder / "data"}"\n'
        "[mqtt]\n"
        f'host = "127.0.0.1"\nport = {mqtt_port}\nprotocol = "3.1.1"\n'
        "backoff_min_s = 0.2\nbackoff_max_s = 2\n"
        '[clock]\ntrust = "always"\n'
        "[telemetry]\ninterval_s = 2\n"
        # Demo time runs fast: a citizen is served in seconds, not minutes.
        "[rating]\ngrace_s = 0.5\nrepeat_gap_s = 2\nfeedback_s = 0.3\n"
        f"reasons = [{reasons}]\nask_reason_max_score = 1\nreason_window_s = {REASON_WINDOW_S}\n",
        encoding="utf-8",
    )
    return cfg


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            s.listen()
        except OSError:
            return False
    return True


# ----- the simulated counter ------------------------------------------------------------------

class Counter:
    """One counter's firmware as a child process, its JSON lines turned into demo events."""

    def __init__(self, n: int, config: Path, officer: dict, on_event):
        self.n = n
        self.device = device_id(n)
        self.officer = officer
        self.display = ""
        self.online = False
        self.ready = threading.Event()
        self.connected = threading.Event()
        self.stored_seqs: set[int] = set()
        self.acked_seqs: set[int] = set()
        self.ledger: str | None = None
        self._lock = threading.Lock()
        self._on_event = on_event
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hailong.cli", "device", "run", "--simulate", "--config", str(config)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1,
            start_new_session=True,  # Ctrl-C reaches the demo only; it stops the counters itself
        )
        self._reader = threading.Thread(target=self._read, name=f"counter-{n}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if "display" in rec:
                self.display = rec["display"]
            elif "stored" in rec:
                ev = rec["stored"]
                with self._lock:  # a held low rating is sent (and acked) once its reason is settled
                    self.ledger = ev["ledger"]
                    self.stored_seqs.add(ev["seq"])
                self._on_event(self, "stored", ev)
            elif "updated" in rec:
                self._on_event(self, "updated", rec["updated"])
            elif "acked" in rec:
                with self._lock:
                    self.acked_seqs.update(rec["acked"])
            elif "online" in rec:
                self.online = bool(rec["online"])
                if self.online:
                    self.connected.set()
            elif "ready" in rec:
                self.ready.set()

    def send(self, command: str) -> bool:
        try:
            self.proc.stdin.write(command + "\n")
            self.proc.stdin.flush()
            return True
        except (BrokenPipeError, ValueError, OSError):
            return False

    def unacked(self) -> int:
        with self._lock:
            return len(self.stored_seqs - self.acked_seqs)

    def quit(self, timeout: float = 15) -> int | None:
        self.send("quit")
        try:
            self.proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait(5)
        finally:
            self._reader.join(5)


def citizen_script(rng: random.Random, rate: float):
    """Endless (command, pause after it): staff calls the next citizen, who is served, then rates."""
    per_citizen = 60.0 / rate
    while True:
        yield "press next", per_citizen * rng.uniform(0.45, 0.75)
        score = rng.choices([1, 2, 3, 4], weights=[1, 2, 5, 8])[0]
        if score == 1:
            yield "press 1", 0.4
            if rng.random() < 0.75:  # most unhappy citizens say why (a rating button picks the reason)
                yield f"press {rng.randint(1, len(REASONS))}", per_citizen * 0.15
            else:
                yield "wait 0", REASON_WINDOW_S + 0.2  # the question times out
            continue
        r = rng.random()
        if r < 0.10:  # impatient: presses again, recorded and flagged "repeat", never counted
            yield f"press {score}", 0.3
            yield f"press {rng.randint(2, 4)}", per_citizen * 0.15
        elif r < 0.16:  # two buttons at once: the second is flagged "chord"
            other = rng.choice([s for s in (2, 3, 4) if s != score])
            yield f"chord {score} {other}", per_citizen * 0.2
        else:
            yield f"press {score}", per_citizen * 0.25


# ----- output ---------------------------------------------------------------------------------

class Output:
    def __init__(self, headless: bool):
        self.headless = headless
        self._lock = threading.Lock()

    def emit(self, record: dict) -> None:
        if not self.headless:
            return
        with self._lock:
            try:
                sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
                sys.stdout.flush()
            except (BrokenPipeError, ValueError):
                pass


class LiveView:
    """Clear + redraw with plain ANSI, about once a second."""

    def __init__(self, demo: "Demo"):
        self.demo = demo

    def render(self) -> str:
        d = self.demo
        lines = [
            "\x1b[1mhailong demo\x1b[0m — toàn bộ hệ thống trên một máy",
            f"Dashboard: {d.url}    login: {d.login['user']} / {d.login['password']}  (role manager)",
            f"Data: {d.data}    MQTT broker 127.0.0.1:{d.mqtt_port} (embedded, 3.1.1)    Ctrl-C to stop"
            + ("    keys for counter 1: 1-4 rate, n next, r recall, q quit" if d.args.interactive else ""),
            "",
        ]
        ingest = d.ingest
        m = ingest.metrics
        lines.append(f"Service: MQTT {'connected' if ingest.connected.is_set() else 'DISCONNECTED'}"
                     f"   events stored {m.ingested}   duplicates {m.duplicates}   rejected {m.rejected}"
                     f"   lag {m.last_lag_ms} ms   tickets {m.tickets}")
        devices = {x["device"]: x for x in d.safe(d.store.devices, [])}
        lines.append("")
        lines.append(f"{'counter':<9}{'display':<10}{'officer':<24}{'online':<8}{'backlog':<8}{'unacked':<8}")
        for c in d.counters:
            info = devices.get(c.device, {})
            online = "yes" if c.online else "no"
            backlog = info.get("backlog")
            lines.append(f"{'Quầy ' + str(c.n):<9}[{c.display:>6}]  {c.officer['name'][:22]:<24}{online:<8}"
                         f"{'-' if backlog is None else backlog!s:<8}{c.unacked():<8}")
        lines += ["", "Latest ratings:"]
        for r in list(d.recent)[-8:][::-1]:
            note = f"  [{', '.join(r['flags'])}: not counted]" if r["flags"] else ""
            reason = f"  ({r['reason']})" if r.get("reason") else ""
            lines.append(f"  {r['time']}  Quầy {r['counter']}  {r['score']}/{r['scale']} "
                         f"{LABELS.get(r['score'], '')}{reason}{note}")
        lines += ["", f"Satisfaction today ({today()}), per officer:",
                  f"  {'officer':<24}{'ratings':>8}{'satisfied':>11}{'index':>8}{'flagged':>9}{'served':>8}"]
        for row in d.satisfaction_rows():
            rate = "-" if row.get("rate") is None else f"{row['rate'] * 100:.0f}%"
            index = "-" if row.get("index") is None else f"{row['index']:.1f}"
            lines.append(f"  {str(row['name'])[:22]:<24}{row['ratings']:>8}{rate:>11}{index:>8}"
                         f"{row.get('flagged', 0):>9}{row.get('served', 0):>8}")
        return "\n".join(lines)

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                text = self.render()
            except Exception as e:  # noqa: BLE001 - a view glitch must not stop the demo
                text = f"(view error: {e})"
            sys.stdout.write("\x1b[H\x1b[2J" + text + "\n")
            sys.stdout.flush()
            stop.wait(1.0)


# ----- the demo -------------------------------------------------------------------------------

class Demo:
    def __init__(self, args):
        self.args = args
        self.data = Path(args.data).resolve()
        self.out = Output(args.headless)
        self.stop = threading.Event()
        self.recent: deque[dict] = deque(maxlen=50)
        self.counters: list[Counter] = []
        self.officer_of: dict[int, dict] = {}
        self.store = self.ingest = self.api = self.broker = self.auth = self.service = None
        self.mqtt_port = args.mqtt_port
        self.url = ""
        self.login: dict = {}

    def safe(self, fn, default):
        try:
            return fn()
        except Exception:  # noqa: BLE001 - the store may be closing
            return default

    def satisfaction_rows(self) -> list[dict]:
        day = today()
        return self.safe(lambda: self.store.satisfaction("officer", day, day, site=SITE)["rows"], [])

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
            self.recent.append({"time": time.strftime("%H:%M:%S"), "counter": counter.n, "seq": ev["seq"],
                                "score": ev["score"], "scale": ev["scale"], "flags": ev["flags"], "reason": None})
        elif ev["type"] == "call":
            rec["action"] = ev["action"]
        self.out.emit(rec)

    # ----- set-up ---------------------------------------------------------------------------

    def demo_login(self) -> dict:
        """User `demo` (manager) and an API token, created once per data folder and kept beside the store."""
        from broker.auth import generate_password

        path = self.data / LOGIN_FILE
        if path.exists():
            try:
                saved = json.loads(path.read_text())
                if self.auth.verify_token(saved.get("api_token", "")) is not None:
                    return saved
            except (ValueError, OSError):
                pass
        password = generate_password()
        users = {u["name"] for u in self.auth.list_users()}
        if "demo" in users:  # the file was lost: pick a fresh name rather than guess the old password
            name = f"demo-{secrets.token_hex(2)}"
        else:
            name = "demo"
        self.auth.add_user(name, "manager", password)
        token = self.auth.create_token("manager", f"demo-{secrets.token_hex(3)}")
        saved = {"user": name, "password": password, "role": "manager", "api_token": token}
        path.write_text(json.dumps(saved, indent=2) + "\n")
        os.chmod(path, 0o600)
        return saved

    def register(self, n: int) -> dict:
        oid, name, code = OFFICERS[(n - 1) % len(OFFICERS)]
        self.store.upsert_officer(oid, name, code=code, unit="Bộ phận Một cửa")
        self.store.upsert_counter(SITE, str(n), f"Quầy {n}", device=device_id(n))
        self.store.register_device(device_id(n), SITE, str(n))
        return {"id": oid, "name": name, "code": code}

    def assign(self, n: int, officer: dict) -> None:
        """Through the API, as a manager would: recorded, then published to the device (retained)."""
        body = json.dumps({"site": SITE, "counter": str(n), "officer": officer["id"]}).encode()
        req = urllib.request.Request(f"{self.url}/api/v1/assignments", data=body, method="POST", headers={
            "Authorization": f"Bearer {self.login['api_token']}", "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            r.read()

    def start(self) -> int:
        from broker.api import ApiServerError
        from broker.embedded import EmbeddedBroker, EmbeddedBrokerError
        from broker.service import Service

        args = self.args
        if not port_free(args.port):
            print(f"hailong demo: port {args.port} is already in use (is another demo or service running?); "
                  f"choose another with --port", file=sys.stderr)
            return 1
        if args.mqtt_port and not port_free(args.mqtt_port):
            print(f"hailong demo: MQTT port {args.mqtt_port} is already in use; choose another with --mqtt-port "
                  "(or 0 for any free port)", file=sys.stderr)
            return 1
        reused = (self.data / STORE_FILE).exists()
        if args.fresh and self.data.exists():
            shutil.rmtree(self.data)
            reused = False
        self.data.mkdir(parents=True, exist_ok=True)
        try:
            self.broker = EmbeddedBroker("127.0.0.1", args.mqtt_port).start()
        except EmbeddedBrokerError as e:
            print(f"hailong demo: {e}; choose another with --mqtt-port", file=sys.stderr)
            return 1
        self.mqtt_port = self.broker.port
        cfg = service_config(self.data, args.port, self.mqtt_port)
        self.service = Service.assemble(cfg)  # the same service `hailong broker run` runs
        self.store, self.auth, self.ingest, self.api = (
            self.service.store, self.service.auth, self.service.ingest, self.service.api)
        try:
            self.api.bind()
        except ApiServerError as e:
            print(f"hailong demo: {e}; choose another with --port", file=sys.stderr)
            return 1
        self.ingest.start()
        self.api.start()
        self.url = self.api.url
        if not self.ingest.connected.wait(10):
            print("hailong demo: the service could not connect to the embedded broker", file=sys.stderr)
            return 1
        self.login = self.demo_login()
        existing = self.store.counts()
        self.store.upsert_site(SITE, SITE_NAME, TZ)
        for n in range(1, args.counters + 1):
            self.officer_of[n] = self.register(n)
            self.assign(n, self.officer_of[n])
        for n in range(1, args.counters + 1):
            self.counters.append(Counter(n, device_config(self.data, n, self.mqtt_port), self.officer_of[n],
                                         self.on_event))
        for c in self.counters:
            c.connected.wait(20)
        self.out.emit({
            "event": "started", "url": self.url, "dashboard": self.url + "/",
            "login": {"user": self.login["user"], "password": self.login["password"], "role": "manager"},
            "api_token": self.login["api_token"], "mqtt_port": self.mqtt_port, "data": str(self.data),
            "reused": reused, "fresh": bool(args.fresh), "store_counts": existing, "seed": args.seed,
            "rate": args.rate, "counters": [{"counter": c.n, "device": c.device, "officer": c.officer,
                                             "online": c.online} for c in self.counters],
        })
        return 0

    # ----- running --------------------------------------------------------------------------

    def citizens(self, counter: Counter, rng: random.Random) -> None:
        stop = self.stop
        stop.wait(rng.uniform(0, 60.0 / self.args.rate / 2))  # counters do not move in lockstep
        for command, pause in citizen_script(rng, self.args.rate):
            if stop.is_set():
                return
            if not command.startswith("wait") and not counter.send(command):
                self.out.emit({"event": "error", "counter": counter.n, "error": "counter process ended"})
                return
            stop.wait(pause)

    def keyboard(self, counter: Counter) -> None:
        """--interactive: keys (or lines, when stdin is not a terminal) drive counter 1."""
        stream = sys.stdin
        if stream.isatty():
            import termios
            import tty

            fd = stream.fileno()
            saved = termios.tcgetattr(fd)
            try:
                tty.setcbreak(fd)
                while not self.stop.is_set():
                    key = os.read(fd, 1).decode(errors="ignore").lower()
                    if key in ("", "q"):
                        self.stop.set()
                        return
                    if key in KEYS:
                        counter.send(KEYS[key])
            finally:
                termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        else:
            for line in stream:
                key = line.strip().lower()
                if key == "q":
                    break
                if key in KEYS:
                    counter.send(KEYS[key])
            self.stop.set()

    def run(self) -> None:
        args = self.args
        deadline = time.monotonic() + args.duration if args.duration else None
        threads = []
        for c in self.counters:
            if args.interactive and c.n == 1:
                threads.append(threading.Thread(target=self.keyboard, args=(c,), daemon=True, name="keyboard"))
            elif args.rate > 0:
                seed = None if args.seed is None else args.seed * 1000 + c.n
                threads.append(threading.Thread(target=self.citizens, args=(c, random.Random(seed)),
                                                daemon=True, name=f"citizens-{c.n}"))
        view_stop = threading.Event()
        if not args.headless:
            threads.append(threading.Thread(target=LiveView(self).run, args=(view_stop,), daemon=True, name="view"))
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
            if all(c.unacked() == 0 or c.proc.poll() is not None for c in self.counters):
                return True
            time.sleep(0.1)  # noqa: polling the counters' ack lines
        return False

    def shutdown(self) -> None:
        self.out.emit({"event": "stopping"})
        drained = self.drain(REASON_WINDOW_S + 8) if self.counters else True
        for c in self.counters:
            c.send("quit")
        codes = {c.n: c.quit() for c in self.counters}
        offline = self.wait_offline(5)
        self.out.emit({"event": "counters_stopped", "exit_codes": codes, "offline": offline})
        # Let the last acks and statuses be committed before the summary is read.
        time.sleep(0.3)  # noqa: a short settle for the ingest worker's last group
        self.out.emit({"event": "summary", "day": today(), "drained": drained,
                       "officers": self.satisfaction_rows(), "store_counts": self.safe(self.store.counts, {})})

    def wait_offline(self, timeout: float) -> list[int]:
        end = time.monotonic() + timeout
        want = {c.device: c.n for c in self.counters}
        while True:
            devices = {d["device"]: d for d in self.safe(self.store.devices, [])}
            offline = sorted(n for dev, n in want.items() if devices.get(dev, {}).get("online") is False)
            if len(offline) == len(want) or time.monotonic() >= end:
                return offline
            time.sleep(0.1)  # noqa: polling the store for the counters' last will

    def close(self) -> None:
        for c in self.counters:
            if c.proc.poll() is None:
                c.quit(5)
        if self.service is not None:
            self.service.close()
        if self.broker is not None:
            self.broker.stop()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hailong demo", description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=8080, help="HTTP port of the API and dashboard (default 8080)")
    p.add_argument("--mqtt-port", type=int, default=0, help="embedded MQTT broker port (default: any free port)")
    p.add_argument("--data", default="demo-data", help="demo data folder, reused between runs (default ./demo-data)")
    p.add_argument("--fresh", action="store_true", help="wipe the data folder first")
    p.add_argument("--counters", type=int, default=4, help="simulated counters (default 4)")
    p.add_argument("--rate", type=float, default=20.0,
                   help="citizens per minute per counter (default 20; 0 = no simulated citizens)")
    p.add_argument("--duration", type=float, default=0, help="stop after this many seconds (0 = until Ctrl-C)")
    p.add_argument("--seed", type=int, default=None, help="make the simulated citizens repeatable")
    p.add_argument("--headless", action="store_true", help="JSON lines on stdout instead of the live view")
    p.add_argument("--interactive", action="store_true",
                   help="drive counter 1 from the keyboard: 1-4 rate, n next, r recall, q quit")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not 1 <= args.counters <= len(OFFICERS):
        print(f"hailong demo: --counters must be 1..{len(OFFICERS)}", file=sys.stderr)
        return 2
    if args.rate < 0 or args.duration < 0:
        print("hailong demo: --rate and --duration cannot be negative", file=sys.stderr)
        return 2
    if not args.headless and not sys.stdout.isatty():
        args.headless = True  # piped: JSON lines, not screen redraws
    import logging

    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    # amqtt logs (and recovers from) races between clients connecting at the same moment;
    # noise for a demo, and it would tear the live view.
    for name in ("asyncio", "amqtt", "transitions"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    demo = Demo(args)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: demo.stop.set())
    code = 0
    if not args.headless:
        print(f"hailong demo: starting the service and {args.counters} counters in {demo.data} ...", flush=True)
    try:
        code = demo.start()
        if code == 0:
            demo.run()
            demo.shutdown()
    finally:
        demo.close()
    if code == 0 and not args.headless:
        print(f"\nhailong demo stopped. Data kept in {demo.data} (dashboard login {demo.login.get('user')} / "
              f"{demo.login.get('password')}); run again to continue, --fresh to start over.")
    return code
