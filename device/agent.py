"""Provisioning agent: answers the technician's laptop on a serial console.

The laptop (`hailong provision serial ...`, provisioning/serial_client.py) sends
framed JSON requests (protocol/serialframe.py); this agent answers them:

* `info`       device id, firmware version, provisioned?, ledger backlog, clock sync;
* `challenge`  a fresh random nonce (single use, valid `NONCE_TTL_S` seconds);
* `push`       install a new bundle (device.toml, mqtt-password, provisioning-key,
               optional ca.crt). Once the device holds a provisioning key, a push must
               carry `proof = HMAC-SHA256(key, nonce || sha256(canonical bundle))`.
               An unprovisioned device accepts its first push without proof: whoever
               reaches its serial port first owns it, which is why the technician
               provisions on the bench, before the device is mounted at a counter;
* `selftest.*` LEDs, buttons (presses reported as EVENT frames), display, badge,
               broker login and clock, one step at a time as the client asks;
* `badge.read` report the next badge tap as an EVENT.

Button presses and badge taps reach the agent through `on_input` / `on_badge`: wire
the panel's and badge reader's callbacks to them.

pyserial is imported only when the agent is given a port name.
"""
from __future__ import annotations

import base64
import binascii
import hmac
import logging
import os
import secrets
import tempfile
import threading
import time
import tomllib
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

from common.fsutil import atomic_write
from protocol.serialframe import (
    BUNDLE_FILES, EVENT, NONCE_TTL_S, REQUEST, REQUIRED_BUNDLE_FILES, RESPONSE, FrameDecoder,
    FrameError, MessageError, check_message, encode_frame, push_proof,
)

__all__ = ["Agent", "AgentError", "PushRefused", "FdStream"]

log = logging.getLogger(__name__)

_READ_SIZE = 512
_READ_TIMEOUT_S = 0.1
_CACHE = 32  # responses remembered by request id, so a retried request is not run twice


class AgentError(Exception):
    """A request the agent refuses; its text goes back to the client as `error`."""


class PushRefused(AgentError):
    """A push without valid proof, or with an invalid bundle: nothing was written."""


class FdStream:
    """read(n)/write(b) over a raw file descriptor (e.g. a pty master), with a read timeout."""

    def __init__(self, fd: int, timeout: float = _READ_TIMEOUT_S) -> None:
        self.fd = fd
        self.timeout = timeout

    def read(self, n: int) -> bytes:
        import select

        ready, _, _ = select.select([self.fd], [], [], self.timeout)
        if not ready:
            return b""
        try:
            return os.read(self.fd, n)
        except OSError:  # EIO on a pty master while no one holds the slave
            return b""

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]
        return len(data)

    def close(self) -> None:
        pass


def _open_port(port: str, baudrate: int) -> Any:
    import serial  # late: pyserial is only needed when the agent owns a real port

    return serial.serial_for_url(port, baudrate=baudrate, timeout=_READ_TIMEOUT_S)


def _remap_paths(obj: Any, mapping: dict[str, str]) -> Any:
    if isinstance(obj, dict):
        return {k: _remap_paths(v, mapping) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_remap_paths(v, mapping) for v in obj]
    if isinstance(obj, str) and obj in mapping:
        return mapping[obj]
    return obj


class Agent:
    """Serves one serial console. `start()` runs the reader thread; `stop()` ends it."""

    def __init__(self, port_or_stream: str | Any, *, bundle_dir: Path, key_file: Path,
                 panel: Any = None, display: Any = None, badge_reader: Any = None,
                 broker_check: Callable[[], tuple[bool, str]] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 clock_synced: Callable[[], bool | None] | None = None,
                 backlog: Callable[[], int] | None = None,
                 baudrate: int = 115200) -> None:
        self._own_port = isinstance(port_or_stream, str)
        self._port = _open_port(port_or_stream, baudrate) if self._own_port else port_or_stream
        self.bundle_dir = Path(bundle_dir)
        self.key_file = Path(key_file)
        self.panel = panel
        self.display = display
        self.badge_reader = badge_reader
        self.broker_check = broker_check
        self.clock = clock
        if clock_synced is None:
            from device.clock import kernel_clock_synced
            clock_synced = kernel_clock_synced
        self.clock_synced = clock_synced
        self.backlog = backlog
        self.decoder = FrameDecoder()
        self._write_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._nonce: tuple[bytes, float] | None = None
        self._responses: OrderedDict[str, dict] = OrderedDict()
        self._selftest = False
        self._want_badge = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> "Agent":
        self._thread = threading.Thread(target=self._run, name="provisioning-agent", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._own_port:
            self._port.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._port.read(_READ_SIZE)
            except Exception:  # noqa: BLE001 - a USB gadget can vanish; keep trying
                log.exception("serial read failed")
                self._stop.wait(0.5)
                continue
            if not data:
                continue
            for kind, obj in self.decoder.feed(data):
                if kind == REQUEST:
                    try:
                        self._handle(obj)
                    except Exception:  # noqa: BLE001 - e.g. an answer too large to frame: drop it, keep the console
                        log.exception("cannot answer a request")

    # -- input from the hardware ---------------------------------------------------

    def on_input(self, name: str, pressed: bool, t: float | None = None) -> None:
        """Panel edge callback: during a selftest every press becomes an EVENT."""
        if pressed and self._selftest:
            self._event({"event": "press", "button": name})

    def on_badge(self, uid: str) -> None:
        """Badge reader callback: reported when a selftest or `badge.read` asked for it."""
        with self._state_lock:
            wanted = self._want_badge or self._selftest
            self._want_badge = False
        if wanted:
            self._event({"event": "badge", "uid": uid})

    # -- framing -------------------------------------------------------------------

    def _send(self, kind: int, obj: dict) -> None:
        frame = encode_frame(kind, obj)
        with self._write_lock:
            self._port.write(frame)
            flush = getattr(self._port, "flush", None)
            if flush is not None:
                flush()

    def _event(self, obj: dict) -> None:
        try:
            self._send(EVENT, obj)
        except Exception:  # noqa: BLE001 - called from hardware threads
            log.exception("cannot send event %r", obj)

    def _handle(self, req: dict) -> None:
        rid = req.get("id")
        try:
            check_message(REQUEST, req)
        except MessageError as e:
            if isinstance(rid, str):
                self._send(RESPONSE, {"id": rid, "ok": False, "error": str(e)})
            return
        cached = self._responses.get(rid)
        if cached is not None:  # a retry: the first answer was lost, do not act twice
            self._send(RESPONSE, cached)
            return
        handler = self._OPS.get(req["op"])
        try:
            if handler is None:
                raise AgentError(f"unknown op {req['op']!r}")
            resp = {"id": rid, "ok": True, "result": handler(self, req)}
        except AgentError as e:
            resp = {"id": rid, "ok": False, "error": str(e)}
        except Exception as e:  # noqa: BLE001 - never kill the console over one request
            log.exception("op %s failed", req["op"])
            resp = {"id": rid, "ok": False, "error": f"{type(e).__name__}: {e}"}
        self._responses[rid] = resp
        while len(self._responses) > _CACHE:
            self._responses.popitem(last=False)
        try:
            self._send(RESPONSE, resp)
        except FrameError as e:
            self._send(RESPONSE, {"id": rid, "ok": False, "error": f"response too large: {e}"})

    # -- ops -----------------------------------------------------------------------

    def provisioned(self) -> bool:
        return self.key_file.exists()

    def _current_device_id(self) -> str | None:
        try:
            data = tomllib.loads((self.bundle_dir / "device.toml").read_text("utf-8"))
            return data.get("device", {}).get("id")
        except (OSError, ValueError):
            return None

    def op_info(self, req: dict) -> dict:
        from device import __version__

        backlog = None
        if self.backlog is not None:
            try:
                backlog = self.backlog()
            except Exception:  # noqa: BLE001
                log.exception("backlog unavailable")
        return {
            "device_id": self._current_device_id(),
            "firmware": __version__,
            "provisioned": self.provisioned(),
            "backlog": backlog,
            "clock_synced": self.clock_synced(),
            "wall_ms": int(time.time() * 1000),
        }

    def op_challenge(self, req: dict) -> dict:
        nonce = secrets.token_bytes(32)
        with self._state_lock:
            self._nonce = (nonce, self.clock() + NONCE_TTL_S)
        return {"nonce": nonce.hex(), "expires_s": NONCE_TTL_S}

    def _take_nonce(self) -> bytes | None:
        """The outstanding nonce if still valid; it is consumed either way (single use)."""
        with self._state_lock:
            held, self._nonce = self._nonce, None
        if held is None or self.clock() > held[1]:
            return None
        return held[0]

    def op_push(self, req: dict) -> dict:
        files = req.get("files")
        if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
            raise PushRefused("push needs 'files': {name: base64}")
        if self.provisioned():
            nonce = self._take_nonce()  # consumed before checking: one guess per challenge
            proof = req.get("proof")
            if not isinstance(proof, str) or not proof:
                raise PushRefused("refused: this device is provisioned; a push needs a proof "
                                  "(ask for a challenge and sign it with the device's provisioning key)")
            if nonce is None:
                raise PushRefused("refused: no valid challenge (expired, already used, or never asked)")
            try:
                key = self.key_file.read_bytes()
                expected = push_proof(key, nonce, files)
            except (OSError, ValueError) as e:
                raise PushRefused(f"refused: cannot check the proof: {e}") from None
            if not hmac.compare_digest(expected, proof.lower()):
                raise PushRefused("refused: wrong proof (is this the device's provisioning key?)")
        blobs = self._decode_bundle(files)
        self._validate(blobs)
        written = self._install(blobs)
        log.info("provisioning bundle installed: %s", ", ".join(written))
        return {"written": written, "device_id": self._current_device_id()}

    def _decode_bundle(self, files: dict[str, str]) -> dict[str, bytes]:
        unknown = sorted(set(files) - set(BUNDLE_FILES))
        if unknown:
            raise PushRefused(f"refused: unknown bundle files {unknown}; allowed: {list(BUNDLE_FILES)}")
        missing = [n for n in REQUIRED_BUNDLE_FILES if n not in files]
        if missing:
            raise PushRefused(f"refused: bundle lacks {missing}")
        blobs = {}
        for name, b64 in files.items():
            try:
                blobs[name] = base64.b64decode(b64, validate=True)
            except (binascii.Error, ValueError) as e:
                raise PushRefused(f"refused: {name} is not valid base64: {e}") from None
            if not blobs[name].strip():
                raise PushRefused(f"refused: {name} is empty")
        return blobs

    def _validate(self, blobs: dict[str, bytes]) -> None:
        """device.toml must pass device.config before anything is written.

        Paths in it that point at bundle files (by name, or inside bundle_dir) are
        checked against the new contents, staged in a private temporary directory.
        """
        from device.config import config_from_dict

        try:
            data = tomllib.loads(blobs["device.toml"].decode("utf-8"))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
            raise PushRefused(f"refused: device.toml is not valid TOML: {e}") from None
        with tempfile.TemporaryDirectory(prefix="hailong-push-") as stage:
            mapping = {}
            for name, raw in blobs.items():
                staged = Path(stage) / name
                staged.write_bytes(raw)
                os.chmod(staged, 0o600)
                mapping[name] = str(staged)
                mapping[str(self.bundle_dir / name)] = str(staged)
                if name == "provisioning-key":
                    mapping[str(self.key_file)] = str(staged)
            try:
                config_from_dict(_remap_paths(data, mapping), base_dir=Path(stage))
            except ValueError as e:
                raise PushRefused(f"refused: device.toml is invalid: {e}") from None

    def _install(self, blobs: dict[str, bytes]) -> list[str]:
        # The key goes last: if power fails half-way, the old key still guards the device.
        order = [n for n in ("ca.crt", "mqtt-password", "device.toml", "provisioning-key") if n in blobs]
        for name in order:
            target = self.key_file if name == "provisioning-key" else self.bundle_dir / name
            atomic_write(target, blobs[name], mode=0o600)
        return order

    # selftest ---------------------------------------------------------------------

    def op_selftest_begin(self, req: dict) -> dict:
        self._selftest = True
        buttons = list(self.panel.button_names) if self.panel is not None else []
        leds = bool(self.panel is not None and self.panel.leds_state())
        if self.panel is not None:
            self.panel.set_all_leds(False)
        return {
            "buttons": buttons,
            "leds": leds,
            "display_width": getattr(self.display, "width", None) if self.display is not None else None,
            "badge": self.badge_reader is not None,
            "broker_check": self.broker_check is not None,
        }

    def op_selftest_step(self, req: dict) -> dict:
        if not self._selftest:
            raise AgentError("no selftest running; send selftest.begin first")
        step = req.get("step")
        if step == "button":
            return self._step_button(req.get("name"))
        if step == "display":
            return self._step_display(req.get("position"))
        if step == "badge":
            if self.badge_reader is None:
                raise AgentError("no badge reader fitted")
            with self._state_lock:
                self._want_badge = True
            return {"armed": True}
        if step == "broker":
            return self._step_broker()
        if step == "clock":
            return {"synced": self.clock_synced(), "wall_ms": int(time.time() * 1000)}
        raise AgentError(f"unknown selftest step {step!r}")

    def _step_button(self, name: Any) -> dict:
        if self.panel is None:
            raise AgentError("no panel")
        if name not in self.panel.button_names:
            raise AgentError(f"no button {name!r}; buttons are {list(self.panel.button_names)}")
        self.panel.set_all_leds(False)
        lit = False
        if str(name).isdigit() and self.panel.leds_state():
            self.panel.set_led(int(name), True)
            lit = True
        return {"armed": name, "led": lit}

    def _step_display(self, position: Any) -> dict:
        if self.display is None:
            raise AgentError("no display")
        width = self.display.width
        if position is None:
            text = "8" * width
        elif isinstance(position, int) and 1 <= position <= width:
            text = " " * (position - 1) + "8" + " " * (width - position)
        else:
            raise AgentError(f"display position must be 1..{width}")
        self.display.show(text)
        shown = getattr(self.display, "text", text)
        return {"shown": shown}

    def _step_broker(self) -> dict:
        if self.broker_check is None:
            raise AgentError("no broker check available on this device")
        try:
            ok, detail = self.broker_check()
        except Exception as e:  # noqa: BLE001
            ok, detail = False, f"{type(e).__name__}: {e}"
        return {"login": bool(ok), "detail": str(detail)}

    def op_selftest_end(self, req: dict) -> dict:
        self._selftest = False
        with self._state_lock:
            self._want_badge = False
        if self.panel is not None:
            self.panel.set_all_leds(False)
        if self.display is not None:
            self.display.show(" " * self.display.width)
        return {"ended": True}

    def op_badge_read(self, req: dict) -> dict:
        if self.badge_reader is None:
            raise AgentError("no badge reader fitted")
        with self._state_lock:
            self._want_badge = True
        return {"armed": True}

    _OPS: dict[str, Callable[["Agent", dict], dict]] = {
        "info": op_info,
        "challenge": op_challenge,
        "push": op_push,
        "selftest.begin": op_selftest_begin,
        "selftest.step": op_selftest_step,
        "selftest.end": op_selftest_end,
        "badge.read": op_badge_read,
    }
