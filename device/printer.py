"""The kiosk's thermal printer: transports that carry ESC/POS bytes, and a worker that prints.

A transport has `write(bytes)` and `status() -> "ok" | "paper_out" | "missing" | "error"`:
- `SerialTransport`: pyserial; asks the printer itself with ESC/POS real-time status
  (`DLE EOT 1`: online? `DLE EOT 4`: paper?); no answer means the printer is missing.
- `FileTransport`: a USB printer class device (/dev/usb/lp0, kernel usblp) or, for
  `--simulate` and tests, a plain file. The file must exist: a missing file is a missing
  printer (unplugged USB). On a usblp device the port status (LPGETSTATUS) tells paper out.

`Printer` runs one worker thread: printing a raster ticket over a serial line takes seconds,
and the kiosk's loop must keep serving acks and buttons meanwhile. pyserial is imported only
for a serial printer.
"""
from __future__ import annotations

import errno
import logging
import os
import queue
import threading
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger(__name__)

OK, PAPER_OUT, MISSING, ERROR = "ok", "paper_out", "missing", "error"
STATES = (OK, PAPER_OUT, MISSING, ERROR)

DLE_EOT = b"\x10\x04"
_LPGETSTATUS = 0x060B
_LP_POUTPA = 0x20  # usblp port status: out of paper


class FileTransport:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    def write(self, data: bytes) -> None:
        # No O_CREAT: writing to a vanished /dev/usb/lp0 must fail, not create a regular file.
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)

    def status(self) -> str:
        if not self.path.exists():
            return MISSING
        if not self.path.is_char_device():
            return OK
        return _lp_status(self.path)

    def close(self) -> None:
        pass


def _lp_status(path: Path) -> str:
    import fcntl
    import struct

    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as e:
        return MISSING if e.errno in (errno.ENOENT, errno.ENODEV, errno.ENXIO) else ERROR
    try:
        raw = fcntl.ioctl(fd, _LPGETSTATUS, struct.pack("i", 0))
        return PAPER_OUT if struct.unpack("i", raw)[0] & _LP_POUTPA else OK
    except OSError:
        return OK  # not a usblp device (no status to ask): writing will tell
    finally:
        os.close(fd)


def _open_serial(port: str, baud: int) -> Any:
    import serial  # late: only a serial printer needs pyserial

    return serial.serial_for_url(port, baudrate=baud, timeout=0.5, write_timeout=30)


class SerialTransport:
    def __init__(self, port: str, baud: int, *, opener: Callable[[str, int], Any] = _open_serial):
        self.port, self.baud, self._opener = port, baud, opener
        self._conn: Any = None

    def _serial(self) -> Any:
        if self._conn is None:
            self._conn = self._opener(self.port, self.baud)
        return self._conn

    def write(self, data: bytes) -> None:
        try:
            conn = self._serial()
            conn.write(data)
            conn.flush()
        except Exception:
            self.close()  # reopen next time: the adapter may have been replugged
            raise

    def _ask(self, n: int) -> int | None:
        conn = self._serial()
        conn.reset_input_buffer()
        conn.write(DLE_EOT + bytes([n]))
        answer = conn.read(1)
        # Every real-time status byte has bits 1 and 4 set and bits 0 and 7 clear.
        if len(answer) != 1 or answer[0] & 0x93 != 0x12:
            return None
        return answer[0]

    def status(self) -> str:
        try:
            printer = self._ask(1)
            if printer is None:
                return MISSING
            paper = self._ask(4)
        except Exception as e:  # noqa: BLE001 - a USB-serial adapter unplugged raises anything
            log.warning("printer status on %s: %s", self.port, e)
            self.close()
            return MISSING
        if paper is not None and paper & 0x60:  # paper roll end sensor
            return PAPER_OUT
        return ERROR if printer & 0x08 else OK  # offline for another reason (cover open, ...)

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001
                log.exception("closing the printer port")


def find_usb_printer(usb_id: str, sys_root: Path = Path("/sys")) -> Path | None:
    """The /dev/usb/lp* whose USB device has vendor:product `usb_id`."""
    vendor, product = usb_id.lower().split(":")
    for lp in sorted((sys_root / "class/usbmisc").glob("lp*")):
        usb = (lp / "device").resolve().parent  # the interface's parent is the USB device
        try:
            ids = ((usb / "idVendor").read_text().strip(), (usb / "idProduct").read_text().strip())
        except OSError:
            continue
        if ids == (vendor, product):
            return Path("/dev/usb") / lp.name
    return None


class Printer:
    """Prints jobs in order on its own thread; reports outcomes and status changes by callback."""

    def __init__(self, transport: Any, *, on_printed: Callable[[dict, str], None],
                 on_state: Callable[[str], None], poll_s: float = 5.0):
        self.transport = transport
        self.on_printed = on_printed  # (job info, state after the job): OK means it printed
        self.on_state = on_state
        self.poll_s = poll_s
        self.state: str | None = None
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="printer", daemon=True)

    def start(self) -> "Printer":
        self._check()
        self._thread.start()
        return self

    def print(self, data: bytes | Callable[[], bytes], info: dict) -> None:
        """Queue a ticket: its bytes, or a function that makes them (drawn here, off the kiosk's loop)."""
        self._jobs.put((data, info))

    def stop(self, timeout: float = 5.0) -> None:
        self._jobs.put(None)
        if self._thread.is_alive():
            self._thread.join(timeout)
        self.transport.close()

    def _run(self) -> None:
        while True:
            try:
                job = self._jobs.get(timeout=self.poll_s)
            except queue.Empty:
                self._check()
                continue
            if job is None:
                return
            self._print(*job)

    def _print(self, data: bytes | Callable[[], bytes], info: dict) -> None:
        state = self._check()
        if state == OK:
            try:
                payload = data() if callable(data) else data
                info = {**info, "bytes": len(payload)}
                self.transport.write(payload)
            except Exception as e:  # noqa: BLE001 - OSError, serial errors, a font that cannot draw
                log.error("printing ticket %s failed: %s", info.get("ticket"), e)
                after = self._check()
                state = after if after != OK else ERROR
                self._set(state)
        self.on_printed(info, state)

    def _check(self) -> str:
        try:
            state = self.transport.status()
        except Exception:  # noqa: BLE001
            log.exception("printer status")
            state = ERROR
        self._set(state)
        return state

    def _set(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self.on_state(state)
