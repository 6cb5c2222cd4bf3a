"""Technician side of the serial console (see device/agent.py and protocol/serialframe.py).

`SerialClient` talks to a counter's provisioning agent over a serial port (any
pyserial URL, so tests can pass a pty path). `main_serial` and `main_badge` are the
bodies of `hailong provision serial ...` and `hailong provision badge enrol ...`;
`add_serial_arguments` / `add_badge_arguments` fill in their argparse parsers.
"""
from __future__ import annotations

import argparse
import base64
import itertools
import json
import queue
import secrets
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from protocol.serialframe import (
    BUNDLE_FILES, EVENT, REQUEST, REQUIRED_BUNDLE_FILES, RESPONSE, FrameDecoder, encode_frame,
    push_proof,
)

__all__ = [
    "SerialClient", "ConsoleError", "ConsoleTimeout", "RemoteError", "read_bundle",
    "main_serial", "main_badge", "add_serial_arguments", "add_badge_arguments",
    "PASS", "FAIL", "SKIP",
]

PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"
Prompt = Callable[[str, str], str]
ClockSkewLimitS = 60.0


class ConsoleError(Exception):
    """Base class for serial console failures."""


class ConsoleTimeout(ConsoleError, TimeoutError):
    """No answer from the device after every retry."""


class RemoteError(ConsoleError):
    """The device answered with ok=false; str() is its error."""


def read_bundle(bundle_dir: Path) -> dict[str, str]:
    """{name: base64} of the bundle files present in `bundle_dir`."""
    bundle_dir = Path(bundle_dir)
    if not bundle_dir.is_dir():
        raise ConsoleError(f"bundle directory {bundle_dir} does not exist")
    files = {}
    for name in BUNDLE_FILES:
        path = bundle_dir / name
        if path.exists():
            files[name] = base64.b64encode(path.read_bytes()).decode("ascii")
    missing = [n for n in REQUIRED_BUNDLE_FILES if n not in files]
    if missing:
        raise ConsoleError(f"bundle {bundle_dir} lacks {', '.join(missing)}")
    return files


class SerialClient:
    """One open console. Requests are retried (same id, so the agent never runs one twice)
    when no answer arrives within `timeout`, e.g. after a garbled frame."""

    def __init__(self, port: str | Any, timeout: float = 2.0, *, retries: int = 2,
                 baudrate: int = 115200) -> None:
        if isinstance(port, str):
            import serial

            try:
                self._port = serial.serial_for_url(port, baudrate=baudrate, timeout=0.1)
            except (serial.SerialException, OSError, ValueError) as e:
                raise ConsoleError(f"cannot open serial port {port}: {e}") from None
        else:
            self._port = port
        self.timeout = timeout
        self.retries = retries
        self.decoder = FrameDecoder()
        self.events: queue.Queue[dict] = queue.Queue()
        self._ids = itertools.count(1)
        self._prefix = secrets.token_hex(3)
        self._waiting: dict[str, queue.Queue[dict]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="serial-client", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
        self._port.close()

    def __enter__(self) -> "SerialClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._port.read(512)
            except Exception:  # noqa: BLE001 - port gone: requests will time out
                if self._stop.is_set():
                    return
                self._stop.wait(0.2)
                continue
            for kind, obj in self.decoder.feed(data or b""):
                if kind == RESPONSE:
                    with self._lock:
                        q = self._waiting.get(obj.get("id"))
                    if q is not None:
                        q.put(obj)
                elif kind == EVENT:
                    self.events.put(obj)

    # -- requests ----------------------------------------------------------------

    def request(self, op: str, *, timeout: float | None = None, **args: Any) -> dict:
        """Send one request; return its `result`, raise RemoteError or ConsoleTimeout."""
        rid = f"{self._prefix}-{next(self._ids)}"
        frame = encode_frame(REQUEST, {"id": rid, "op": op, **args})
        q: queue.Queue[dict] = queue.Queue()
        with self._lock:
            self._waiting[rid] = q
        try:
            for _attempt in range(self.retries + 1):
                self._port.write(frame)
                self._port.flush()
                try:
                    resp = q.get(timeout=timeout or self.timeout)
                except queue.Empty:
                    continue
                if not resp.get("ok"):
                    raise RemoteError(resp.get("error") or "refused")
                return resp.get("result") or {}
        finally:
            with self._lock:
                self._waiting.pop(rid, None)
        raise ConsoleTimeout(f"no answer to {op!r} after {self.retries + 1} tries "
                             f"({timeout or self.timeout:g} s each): is the agent running on this port?")

    def info(self) -> dict:
        return self.request("info")

    def push(self, bundle_dir: Path, key: bytes | None) -> dict:
        """Install the bundle; `key` is the device's current provisioning key (None on a new device)."""
        files = read_bundle(bundle_dir)
        args: dict[str, Any] = {"files": files}
        if key is not None:
            nonce = bytes.fromhex(self.request("challenge")["nonce"])
            args["proof"] = push_proof(key, nonce, files)
        return self.request("push", **args)

    def drain_events(self) -> None:
        while True:
            try:
                self.events.get_nowait()
            except queue.Empty:
                return

    def wait_event(self, match: Callable[[dict], bool], timeout: float,
                   seen: list[dict] | None = None) -> dict | None:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                ev = self.events.get(timeout=left)
            except queue.Empty:
                return None
            if match(ev):
                return ev
            if seen is not None:
                seen.append(ev)

    def read_badge(self, timeout: float = 30.0) -> str | None:
        """UID of the next badge tapped on the device's reader, or None after `timeout`."""
        self.drain_events()
        self.request("badge.read")
        ev = self.wait_event(lambda e: e.get("event") == "badge", timeout)
        return ev.get("uid") if ev else None

    def selftest(self, interactive: bool = True, prompt: Prompt | None = None, *,
                 press_timeout: float = 20.0, badge_timeout: float = 20.0,
                 broker_timeout: float = 20.0) -> list[tuple[str, str, str]]:
        """Run every check; return rows (check, PASS/FAIL/SKIP, detail).

        `prompt(check, message) -> answer` tells the technician what to do; for a
        "display" check an answer starting with "n" means they did not see it. Without
        `interactive`, checks that need a person are SKIPped.
        """
        prompt = prompt or _console_prompt
        rows: list[tuple[str, str, str]] = []
        info = self.info()
        rows.append(("info", PASS, f"device {info.get('device_id')} firmware {info.get('firmware')}"
                     f"{'' if info.get('provisioned') else ' (NOT provisioned)'}"))
        caps = self.request("selftest.begin")
        try:
            self._selftest_buttons(caps, interactive, prompt, press_timeout, rows)
            self._selftest_display(caps, interactive, prompt, rows)
            self._selftest_badge(caps, interactive, prompt, badge_timeout, rows)
            if caps.get("broker_check"):
                r = self.request("selftest.step", step="broker", timeout=broker_timeout)
                rows.append(("broker login", PASS if r.get("login") else FAIL, r.get("detail", "")))
            else:
                rows.append(("broker login", SKIP, "no broker check on the device"))
            r = self.request("selftest.step", step="clock")
            skew = abs(int(r.get("wall_ms", 0)) - time.time() * 1000) / 1000
            ok = r.get("synced") is True and skew <= ClockSkewLimitS
            rows.append(("clock", PASS if ok else FAIL,
                         f"NTP synced: {r.get('synced')}, {skew:.1f} s from this laptop"))
        finally:
            try:
                self.request("selftest.end")
            except ConsoleError:
                pass
        return rows

    def _selftest_buttons(self, caps: dict, interactive: bool, prompt: Prompt, timeout: float,
                          rows: list) -> None:
        for name in caps.get("buttons", []):
            check = f"button {name}"
            if not interactive:
                rows.append((check, SKIP, "needs a technician"))
                continue
            self.drain_events()
            r = self.request("selftest.step", step="button", name=name)
            lit = " (its LED is lit)" if r.get("led") else ""
            prompt(check, f"Press button {name}{lit}")
            seen: list[dict] = []
            ev = self.wait_event(lambda e: e.get("event") == "press" and e.get("button") == name,
                                 timeout, seen)
            if ev is not None:
                rows.append((check, PASS, "pressed" + (", LED lit" if r.get("led") else "")))
            else:
                others = sorted({e.get("button") for e in seen if e.get("event") == "press"})
                rows.append((check, FAIL, f"not pressed within {timeout:g} s"
                             + (f" (saw {', '.join(map(str, others))})" if others else "")))

    def _selftest_display(self, caps: dict, interactive: bool, prompt: Prompt, rows: list) -> None:
        width = caps.get("display_width")
        if not width:
            rows.append(("display", SKIP, "no display"))
            return
        for position in [None, *range(1, width + 1)]:
            check = "display all" if position is None else f"display digit {position}"
            if not interactive:
                rows.append((check, SKIP, "needs a technician"))
                continue
            r = self.request("selftest.step", step="display", position=position)
            shown = r.get("shown", "")
            answer = prompt(check, f"Does the display show {shown!r}? [Y/n]") or ""
            seen = not answer.strip().lower().startswith("n")
            rows.append((check, PASS if seen else FAIL,
                         f"showed {shown!r}" + ("" if seen else ", technician did not see it")))

    def _selftest_badge(self, caps: dict, interactive: bool, prompt: Prompt, timeout: float,
                        rows: list) -> None:
        if not caps.get("badge"):
            rows.append(("badge reader", SKIP, "no reader fitted"))
            return
        if not interactive:
            rows.append(("badge reader", SKIP, "needs a technician"))
            return
        self.drain_events()
        self.request("selftest.step", step="badge")
        prompt("badge reader", "Tap a badge on the reader")
        ev = self.wait_event(lambda e: e.get("event") == "badge", timeout)
        rows.append(("badge reader", PASS, f"read {ev.get('uid')}") if ev
                    else ("badge reader", FAIL, f"no tap read within {timeout:g} s"))


def _console_prompt(check: str, message: str) -> str:
    try:
        return input(f"[{check}] {message} ")
    except EOFError:
        return ""


def format_table(rows: list[tuple[str, str, str]]) -> str:
    width = max((len(r[0]) for r in rows), default=5)
    return "\n".join(f"{check:<{width}}  {result:<4}  {detail}" for check, result, detail in rows)


# --- CLI ------------------------------------------------------------------------------------

def add_serial_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """`hailong provision serial --port P info | push ... | selftest`."""
    p.add_argument("--port", required=True, help="serial port or pyserial URL, e.g. /dev/ttyACM0")
    p.add_argument("--timeout", type=float, default=2.0, help="seconds to wait for each answer (default 2)")
    sub = p.add_subparsers(dest="serial_cmd", required=True)
    sub.add_parser("info", help="what the device says about itself")
    push = sub.add_parser("push", help="install a provisioning bundle")
    push.add_argument("--device", required=True, help="device id the bundle is for")
    push.add_argument("--bundle", type=Path, help="bundle directory (default: bundles/<device>)")
    push.add_argument("--key-file", type=Path,
                      help="the device's CURRENT provisioning key (default: <bundle>/provisioning-key); "
                           "not needed for a device that was never provisioned")
    st = sub.add_parser("selftest", help="check buttons, LEDs, display, badge, broker and clock")
    st.add_argument("--no-interactive", dest="interactive", action="store_false",
                    help="only checks that need nobody at the counter")
    st.add_argument("--press-timeout", type=float, default=20.0)
    return p


def add_badge_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """`hailong provision badge enrol --officer ID --port P --service-url URL --token-file F`."""
    sub = p.add_subparsers(dest="badge_cmd", required=True)
    e = sub.add_parser("enrol", help="read a badge tap and record it as the officer's badge")
    e.add_argument("--officer", required=True)
    e.add_argument("--port", required=True)
    e.add_argument("--service-url", required=True, help="e.g. https://hailong.example.vn")
    e.add_argument("--token-file", type=Path, required=True, help="file holding an admin API token")
    e.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the tap")
    return p


def _parse(args: Any, add: Callable, prog: str) -> argparse.Namespace:
    if isinstance(args, argparse.Namespace):
        return args
    return add(argparse.ArgumentParser(prog=prog)).parse_args(args)


def _err(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 1


def main_serial(args: Any, *, prompt: Prompt | None = None,
                record: Callable[[dict], None] | None = None,
                bundles_dir: Path | None = None,
                client_factory: Callable[..., SerialClient] = SerialClient) -> int:
    """Exit code 0 on success, 1 on a failure/refusal/FAIL row, 2 on bad arguments."""
    ns = _parse(args, add_serial_arguments, "hailong provision serial")
    cmd = ns.serial_cmd
    key: bytes | None = None
    bundle: Path | None = None
    if cmd == "push":
        bundle = ns.bundle or (bundles_dir or Path("bundles")) / ns.device
        if not (bundle / "device.toml").exists():
            print(f"error: no bundle at {bundle} (device.toml missing); build it first or pass --bundle",
                  file=sys.stderr)
            return 2
    try:
        client = client_factory(ns.port, timeout=getattr(ns, "timeout", 2.0))
    except ConsoleError as e:
        return _err(str(e))
    try:
        info = client.info()
        if cmd == "info":
            print(json.dumps(info, indent=2, ensure_ascii=False))
            return 0
        if cmd == "push":
            assert bundle is not None
            current = info.get("device_id")
            if info.get("provisioned") and current not in (None, ns.device):
                return _err(f"the device on {ns.port} is {current!r}, not {ns.device!r}; refusing to push")
            if info.get("provisioned"):
                key_file = ns.key_file or bundle / "provisioning-key"
                try:
                    key = key_file.read_bytes()
                except OSError as e:
                    return _err(f"device is provisioned; need its key: {e} (pass --key-file)")
            result = client.push(bundle, key)
            print(f"pushed {', '.join(result.get('written', []))} to {result.get('device_id')}")
            return 0
        if cmd == "selftest":
            rows = client.selftest(getattr(ns, "interactive", True), prompt,
                                   press_timeout=getattr(ns, "press_timeout", 20.0))
            print(format_table(rows))
            failed = [r for r in rows if r[1] == FAIL]
            if record is not None:
                record({"device_id": info.get("device_id"), "at_ms": int(time.time() * 1000),
                        "passed": not failed, "checks": [list(r) for r in rows]})
            print("selftest FAILED" if failed else "selftest passed")
            return 1 if failed else 0
        return _err(f"unknown command {cmd!r}")
    except RemoteError as e:
        return _err(f"device refused: {e}")
    except ConsoleError as e:
        return _err(str(e))
    finally:
        client.close()


def main_badge(args: Any, *, client_factory: Callable[..., SerialClient] = SerialClient) -> int:
    """Read one badge tap on the device at --port and store its UID on the officer."""
    import urllib.parse

    from provisioning.service_api import ServiceError, call

    ns = _parse(args, add_badge_arguments, "hailong provision badge")
    if getattr(ns, "badge_cmd", "enrol") != "enrol":
        return _err(f"unknown command {ns.badge_cmd!r}")
    try:
        token = Path(ns.token_file).read_text().strip()
    except OSError as e:
        return _err(f"cannot read token file: {e}")
    if not token:
        return _err(f"token file {ns.token_file} is empty")
    path = "/officers/" + urllib.parse.quote(ns.officer, safe="")
    try:
        officer = call("GET", ns.service_url, path, token)  # PUT replaces the officer: keep name, code and unit
    except ServiceError as e:
        return _err(f"cannot read officer {ns.officer!r}: {e}")
    try:
        client = client_factory(ns.port, timeout=2.0)
    except ConsoleError as e:
        return _err(str(e))
    try:
        print(f"Tap {officer.get('name', ns.officer)}'s badge on the reader ({ns.timeout:g} s)...", file=sys.stderr)
        uid = client.read_badge(ns.timeout)
    except RemoteError as e:
        return _err(f"device refused: {e}")
    except ConsoleError as e:
        return _err(str(e))
    finally:
        client.close()
    if uid is None:
        return _err(f"no badge read within {ns.timeout:g} s")
    body = {"name": officer.get("name", ""), "code": officer.get("code", ""),
            "unit": officer.get("unit") or "", "badge": uid}
    try:
        call("PUT", ns.service_url, path, token, body)
    except ServiceError as e:
        return _err(f"could not record the badge: {e}")
    print(f"badge {uid} recorded for officer {ns.officer}")
    return 0
