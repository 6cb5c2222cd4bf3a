"""The kiosk's ticket bytes and printer transports: what leaves the boundary is asserted.

Vietnamese is checked on the paper: the raster bytes are decoded back into an image, in which
the test looks for its own rendering of the number and of a word with diacritics.
"""
from __future__ import annotations

import os
import pty
import threading
import tty

import pytest
from PIL import Image, ImageDraw

from device import escpos
from device.printer import MISSING, OK, PAPER_OUT, FileTransport, Printer, SerialTransport

TICKET = escpos.Ticket(centre="Trung tâm Phục vụ hành chính công huyện Kiến Thụy", queue_name="Đất đai",
                       ticket="A012", ahead=3, priority=True, when="10:32  30/11/2026")
FONT = escpos.find_font(None)
needs_font = pytest.mark.skipif(FONT is None, reason="fonts-dejavu-core is not installed (make system-deps)")


def decode_raster(data: bytes) -> Image.Image:
    """The inverse of escpos.raster: every GS v 0 band stacked, 1 = burnt dot."""
    bands, i = [], 0
    while (i := data.find(b"\x1dv0", i)) >= 0:
        m, xl, xh, yl, yh = data[i + 3:i + 8]
        assert m == 0
        row_bytes, rows = xl + 256 * xh, yl + 256 * yh
        body = data[i + 8:i + 8 + row_bytes * rows]
        bands.append(Image.frombytes("1", (row_bytes * 8, rows), body))
        i += 8 + row_bytes * rows
    assert bands, "no raster image in the bytes"
    out = Image.new("1", (bands[0].width, sum(b.height for b in bands)))
    y = 0
    for b in bands:
        out.paste(b, (0, y))
        y += b.height
    return out


def rendering(text: str, size: int) -> Image.Image:
    """The test's own drawing of `text`, cropped to its ink."""
    font = escpos.load_font(FONT, size)
    image = Image.new("1", (1200, size * 2), 0)
    ImageDraw.Draw(image).text((10, 10), text, font=font, fill=1)
    return image.crop(image.getbbox())


def find(image: Image.Image, template: Image.Image) -> tuple[int, int] | None:
    """Where `template` occurs pixel for pixel in `image` (both 1 = ink), or None."""
    img, tpl = image.convert("L"), template.convert("L")
    w, tw, th = img.width, tpl.width, tpl.height
    rows = [img.tobytes()[y * w:(y + 1) * w] for y in range(img.height)]
    trows = [tpl.tobytes()[y * tw:(y + 1) * tw] for y in range(th)]
    for y in range(img.height - th + 1):
        x = rows[y].find(trows[0])
        while x >= 0:
            if x + tw <= w and all(rows[y + j][x:x + tw] == trows[j] for j in range(th)):
                return x, y
            x = rows[y].find(trows[0], x + 1)
    return None


@needs_font
def test_raster_ticket_carries_the_number_and_the_diacritics():
    data = escpos.encode(TICKET, mode="raster", code_page=52, width=576, font=FONT)
    assert data.startswith(escpos.INIT) and data.endswith(escpos.CUT)
    paper = decode_raster(data)
    assert paper.width == 576
    assert find(paper, rendering("A012", escpos.STYLES["big"][0])) is not None
    assert find(paper, rendering("Đất đai", escpos.STYLES["text"][0])) is not None
    assert find(paper, rendering("ƯU TIÊN", escpos.STYLES["tag"][0])) is not None
    # The search is strict: the same word without its marks is not on the paper.
    assert find(paper, rendering("Dat dai", escpos.STYLES["text"][0])) is None
    assert find(paper, rendering("A013", escpos.STYLES["big"][0])) is None


@needs_font
def test_raster_bands_fit_small_printer_buffers():
    data = escpos.raster_ticket(TICKET, 384, FONT)
    heights = []
    i = 0
    while (i := data.find(b"\x1dv0", i)) >= 0:
        assert data[i + 4:i + 6] == bytes([48, 0])  # 384 dots = 48 bytes a row
        heights.append(data[i + 6] + 256 * data[i + 7])
        i += 8
    assert len(heights) > 1 and max(heights) <= escpos.BAND_ROWS


def test_codepage_ticket_is_windows_1258():
    data = escpos.codepage_ticket(TICKET, 52)
    assert data.startswith(escpos.INIT + b"\x1bt\x34")  # ESC t 52: WPC1258
    # Đ, â + combining acute (ấ is not precomposed in 1258), t, space, đ, a, i.
    assert b"\xd0\xe2\xect \xf0ai\n" in data
    assert b"A012\n" in data
    assert b"\x1d!\x77\x1bE\x01A012\n" in data  # the number, bold, at eight times the size
    assert escpos.cp1258("Tư pháp – Hộ tịch") == b"T\xfd ph\xe1p \x96 H\xf4\xf2 ti\xf2ch"


def test_ticket_lines_leave_out_unknown_ahead():
    texts = [t for _, t in escpos.lines(escpos.Ticket("C", "Q", "A001", None, False, "t"))]
    assert not any("chờ trước" in t for t in texts) and "ƯU TIÊN" not in texts


def test_file_transport_missing_file_is_a_missing_printer(tmp_path):
    path = tmp_path / "lp0"
    t = FileTransport(path)
    assert t.status() == MISSING
    with pytest.raises(FileNotFoundError):
        t.write(b"x")
    assert not path.exists()  # never created by a write
    path.touch()
    t.write(b"\x1b@")
    t.write(b"abc")
    assert t.status() == OK and path.read_bytes() == b"\x1b@abc"


class FakeSerialPrinter:
    """The printer's end of a pty: answers DLE EOT n with real-time status bytes, keeps the rest."""

    def __init__(self):
        self.master, slave = pty.openpty()
        tty.setraw(slave)
        self.path = os.ttyname(slave)
        self._slave = slave
        self.paper = True
        self.online = True
        self.received = bytearray()
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        pending = b""
        while not self._stop:
            try:
                chunk = os.read(self.master, 4096)
            except OSError:
                return
            pending += chunk
            while True:
                i = pending.find(b"\x10\x04")
                if i < 0 or len(pending) < i + 3:
                    break
                self.received += pending[:i]
                n, pending = pending[i + 2], pending[i + 3:]
                os.write(self.master, bytes([self._status(n)]))
            if b"\x10" not in pending:
                self.received += pending
                pending = b""

    def _status(self, n: int) -> int:
        if n == 1:
            return 0x12 | (0 if self.online else 0x08)
        if n == 4:
            return 0x12 | (0 if self.paper else 0x60)
        return 0x12

    def close(self):
        self._stop = True
        os.close(self._slave)
        os.close(self.master)


@pytest.fixture
def serial_printer():
    p = FakeSerialPrinter()
    yield p
    p.close()


def test_serial_status_asks_the_printer(serial_printer):
    t = SerialTransport(serial_printer.path, 19200)
    try:
        assert t.status() == OK
        serial_printer.paper = False
        serial_printer.online = False
        assert t.status() == PAPER_OUT
        serial_printer.paper = True
        assert t.status() == "error"  # offline for another reason (cover open)
    finally:
        t.close()


def test_serial_printer_that_does_not_answer_is_missing(tmp_path):
    master, slave = pty.openpty()  # nobody answers on the other end
    tty.setraw(slave)
    t = SerialTransport(os.ttyname(slave), 19200)
    try:
        assert t.status() == MISSING
    finally:
        t.close()
        os.close(slave)
        os.close(master)


def test_printer_worker_prints_in_order_and_reports_trouble(tmp_path):
    path = tmp_path / "lp0"
    path.touch()
    outcomes, states = [], []
    done = threading.Condition()

    def printed(info, state):
        with done:
            outcomes.append((info["n"], state))
            done.notify_all()

    p = Printer(FileTransport(path), on_printed=printed, on_state=states.append, poll_s=30).start()
    try:
        p.print(b"one", {"n": 1})
        p.print(b"two", {"n": 2})
        with done:
            assert done.wait_for(lambda: len(outcomes) == 2, 10)
        path.unlink()
        p.print(b"three", {"n": 3})
        with done:
            assert done.wait_for(lambda: len(outcomes) == 3, 10)
    finally:
        p.stop()
    assert outcomes == [(1, OK), (2, OK), (3, MISSING)]
    assert states == [OK, MISSING]
