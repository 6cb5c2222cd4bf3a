"""Display adapters: what reaches the LEDs (pixels of a luma dummy, bytes on the bus)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from luma.core.device import dummy
from luma.led_matrix.const import max7219 as REG
from luma.led_matrix.device import max7219
from luma.led_matrix.segment_mapper import regular

from device.display import (
    Display,
    DisplayConfigError,
    MatrixDisplay,
    NullDisplay,
    SevenSegmentDisplay,
    TextDisplay,
    UnknownDisplayKind,
    make_display,
    split_positions,
)

REPO = Path(__file__).resolve().parents[1]

# luma.led_matrix 1.9's max7219.display() calls Image.getdata(), deprecated in Pillow 13
# and due for removal in Pillow 14: not ours to fix, but pin Pillow < 14 until luma does.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Image.Image.getdata is deprecated:DeprecationWarning")


def seg(ch: str) -> int:
    """luma's own segment byte for one character (the plain, non-munching table)."""
    return next(regular(ch))


DP = seg(".")


def columns(image, positions: int) -> list[int]:
    """Segment byte per digit position, leftmost digit first.

    luma's sevensegment stores a digit as a pixel column (bit y = row y) and puts the
    first character in the highest column, so the leftmost digit is column N-1.
    """
    px = image.load()
    out = []
    for pos in range(positions):
        x = positions - 1 - pos
        out.append(sum(1 << y for y in range(8) if px[x, y]))
    return out


def sevenseg(positions: int, width: int) -> SevenSegmentDisplay:
    return SevenSegmentDisplay(dummy(width=positions, height=8, mode="1"), width)


class RecordingSerial:
    """The luma transport seam: what max7219 sends over SPI."""

    def __init__(self) -> None:
        self.writes: list[list[int]] = []
        self.commands: list[tuple[int, ...]] = []
        self.cleaned_up = False

    def command(self, *cmd: int) -> None:
        self.commands.append(cmd)

    def data(self, data) -> None:
        self.writes.append(list(data))

    def cleanup(self) -> None:
        self.cleaned_up = True


# -- seven segment ------------------------------------------------------------

def test_sevenseg_lights_each_digit_with_luma_segments():
    d = sevenseg(positions=4, width=4)
    d.show("1042")
    assert columns(d.device.image, 4) == [seg("1"), seg("0"), seg("4"), seg("2")]
    assert d.text == "1042"


def test_sevenseg_right_aligns_short_text():
    d = sevenseg(positions=4, width=4)
    d.show("7")
    assert columns(d.device.image, 4) == [0, 0, 0, seg("7")]


def test_sevenseg_keeps_rightmost_positions_of_long_text():
    d = sevenseg(positions=4, width=4)
    d.show("A1042")
    assert columns(d.device.image, 4) == [seg("1"), seg("0"), seg("4"), seg("2")]


def test_sevenseg_decimal_point_does_not_take_a_position():
    d = sevenseg(positions=4, width=4)
    d.show("12.3")
    assert columns(d.device.image, 4) == [0, seg("1"), seg("2") | DP, seg("3")]


def test_sevenseg_comma_is_a_decimal_point_and_lone_dots_keep_alignment():
    d = sevenseg(positions=4, width=4)
    d.show("4,5")
    assert columns(d.device.image, 4) == [0, 0, seg("4") | DP, seg("5")]
    # A leading dot has no digit to attach to: it is a blank digit with DP lit, and
    # must not merge into the padding blank on its left (that would shift digits).
    d.show(".5")
    assert columns(d.device.image, 4) == [0, 0, DP, seg("5")]


def test_sevenseg_narrower_width_on_eight_digit_module_uses_right_digits():
    d = sevenseg(positions=8, width=4)
    d.show("1042")
    assert columns(d.device.image, 8) == [0, 0, 0, 0, seg("1"), seg("0"), seg("4"), seg("2")]


def test_sevenseg_rejects_width_beyond_the_device():
    with pytest.raises(DisplayConfigError):
        sevenseg(positions=4, width=5)
    with pytest.raises(ValueError):  # typed error, still a builtin
        sevenseg(positions=4, width=0)


def test_split_positions():
    assert split_positions("12.3") == ["1", "2.", "3"]
    assert split_positions("1..") == ["1.", " ."]
    assert split_positions("4,5") == ["4.", "5"]


def test_max7219_digit_registers_carry_the_segments():
    bus = RecordingSerial()
    chip = max7219(bus, cascaded=1)
    d = SevenSegmentDisplay(chip, 4)
    bus.writes.clear()

    d.show("1042")

    # DIG0 (register 1) is the rightmost digit on MAX7219 modules.
    expected = [seg("2"), seg("4"), seg("0"), seg("1"), 0, 0, 0, 0]
    assert bus.writes == [[REG.DIGIT_0 + i, byte] for i, byte in enumerate(expected)]


def test_max7219_brightness_and_close():
    bus = RecordingSerial()
    d = SevenSegmentDisplay(max7219(bus, cascaded=1), 4)
    bus.writes.clear()

    d.set_brightness(255)
    d.set_brightness(999)  # clamped rather than tripping luma's assert
    assert bus.writes == [[REG.INTENSITY, 0x0F], [REG.INTENSITY, 0x0F]]

    d.close()
    d.close()
    assert bus.cleaned_up
    assert [REG.SHUTDOWN, 0] in bus.writes
    writes = len(bus.writes)
    d.show("9999")  # after close: ignored, nothing on the bus
    assert len(bus.writes) == writes


def test_max7219_with_noop_serial_works():
    from luma.core.interface.serial import noop

    d = SevenSegmentDisplay(max7219(noop(), cascaded=1), 4)
    d.show("12.3")
    d.set_brightness(10)
    d.close()


# -- matrix -------------------------------------------------------------------

def test_matrix_renders_centred_text():
    d = MatrixDisplay(dummy(width=32, height=8, mode="1"), width=4)
    d.show("1042")
    bbox = d.device.image.getbbox()
    assert bbox is not None
    left, top, right, bottom = bbox
    assert abs(left - (32 - right)) <= 1
    assert right - left > 10  # four digits, not a stray pixel


def test_matrix_survives_non_ascii_and_overlong_text():
    d = MatrixDisplay(dummy(width=32, height=8, mode="1"), width=4)
    d.show("Đợi")
    assert d.device.image.getbbox() is not None
    d.show("123456789")
    assert d.device.image.getbbox()[2] == 32  # right-aligned: last digit visible
    d.show("")
    assert d.device.image.getbbox() is None


# -- text / null / factory ----------------------------------------------------

def test_text_display_reports_changes_only():
    seen: list[str] = []
    d = TextDisplay(4, on_change=seen.append)
    d.show("0001")
    d.show("0001")
    d.show("0002")
    assert seen == ["0001", "0002"]
    assert d.text == "0002"


def test_make_display_kinds():
    assert isinstance(make_display("none", width=4), NullDisplay)
    sim = make_display("sevenseg", width=4, simulate=True)
    assert isinstance(sim, TextDisplay) and sim.width == 4
    assert isinstance(make_display("none", width=4, simulate=True), TextDisplay)
    for d in (NullDisplay(4), TextDisplay(4), sevenseg(4, 4)):
        assert isinstance(d, Display)
    with pytest.raises(UnknownDisplayKind):
        make_display("lcd", width=4, simulate=True)


def test_adapters_import_without_hardware_libraries():
    code = (
        "import sys, device.display, device.panel, device.badge\n"
        "heavy = ('gpiozero', 'luma', 'serial', 'PIL', 'spidev', 'lgpio')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


@pytest.fixture
def fake_spi(monkeypatch):
    """Replace luma's spidev transport so the real-hardware factories run anywhere."""
    import luma.core.interface.serial as luma_serial

    opened: list[tuple[dict, RecordingSerial]] = []

    def spi(**kwargs):
        bus = RecordingSerial()
        opened.append((kwargs, bus))
        return bus

    monkeypatch.setattr(luma_serial, "spi", spi)
    return opened


def test_make_display_sevenseg_builds_a_max7219_on_spi(fake_spi):
    d = make_display("sevenseg", width=4, digits=4, spi_port=0, spi_device=1, brightness=64)
    assert isinstance(d, SevenSegmentDisplay) and d.width == 4 and d.positions == 8
    (kwargs, bus), = fake_spi
    assert kwargs["port"] == 0 and kwargs["device"] == 1
    assert [REG.INTENSITY, 64 >> 4] in bus.writes
    bus.writes.clear()
    d.show("1042")
    assert bus.writes[:4] == [[REG.DIGIT_0, seg("2")], [REG.DIGIT_0 + 1, seg("4")],
                              [REG.DIGIT_0 + 2, seg("0")], [REG.DIGIT_0 + 3, seg("1")]]
    d.close()


def test_make_display_matrix_builds_a_cascade(fake_spi):
    d = make_display("matrix", width=4, cascaded=4)
    assert isinstance(d, MatrixDisplay)
    assert d.device.width == 32 and d.device.cascaded == 4
    (kwargs, bus), = fake_spi
    bus.writes.clear()
    d.show("1042")
    # One transfer per row register, each carrying a byte for all four blocks.
    assert len(bus.writes) == 8 and all(len(w) == 8 for w in bus.writes)
    assert any(w[1::2] != [0, 0, 0, 0] for w in bus.writes)
    d.close()
