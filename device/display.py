"""Number displays at the counter: the adapters that turn text into lit LEDs.

The counter's state machine decides *what* to show and formats it to exactly
`width` visible characters; these classes only render it. A '.' (or ',', the
Vietnamese decimal mark) right after a character lights that digit's decimal point
and does not take a position of its own, as on a real seven-segment digit.

Hardware libraries (luma, PIL, spidev) are imported inside constructors and
factories, so this module imports on a laptop or in the simulator without them.
"""
from __future__ import annotations

import threading
from math import ceil
from typing import TYPE_CHECKING, Any, Callable, Protocol, runtime_checkable

if TYPE_CHECKING:  # pragma: no cover - typing only; never import hardware libs eagerly
    from luma.core.device import device as LumaDevice
else:
    LumaDevice = Any

__all__ = [
    "Display",
    "DisplayError",
    "DisplayConfigError",
    "UnknownDisplayKind",
    "TextDisplay",
    "NullDisplay",
    "SevenSegmentDisplay",
    "MatrixDisplay",
    "make_display",
    "split_positions",
    "DISPLAY_KINDS",
]

DISPLAY_KINDS = ("none", "sevenseg", "matrix")

# Characters that merge into the previous digit's decimal point instead of taking a
# position. luma's dot_muncher does the same for every glyph whose segment byte is
# 0x80 (only '.' and ','), so our position arithmetic agrees with what it draws.
_DOT_CHARS = ".,"

# MAX7219 intensity is 4 bits; luma takes 0..255 and shifts it down.
_MAX_BRIGHTNESS = 255


class DisplayError(Exception):
    """Base class for display adapter errors."""


class DisplayConfigError(DisplayError, ValueError):
    """The display was configured with impossible dimensions."""


class UnknownDisplayKind(DisplayError, ValueError):
    """`make_display` was asked for a kind it does not know."""


@runtime_checkable
class Display(Protocol):
    """What the counter loop needs from any display."""

    width: int

    def show(self, text: str) -> None: ...

    def set_brightness(self, level: int) -> None: ...

    def close(self) -> None: ...


def split_positions(text: str) -> list[str]:
    """Split `text` into display positions, e.g. "12.3" -> ["1", "2.", "3"].

    A dot attaches to the previous position unless that one already has a dot (or
    there is none), in which case it stands alone as " ." - a blank digit with only
    its decimal point lit. Dots are normalised to '.'.
    """
    cells: list[str] = []
    for ch in text:
        if ch in _DOT_CHARS:
            if cells and not cells[-1].endswith("."):
                cells[-1] += "."
            else:
                # Written with a leading space so luma's dot_muncher cannot merge it
                # into a padding blank on its left and shift every digit by one.
                cells.append(" .")
        else:
            cells.append(ch)
    return cells


def _clamp_brightness(level: int) -> int:
    return max(0, min(_MAX_BRIGHTNESS, int(level)))


class TextDisplay:
    """In-memory display for the simulator and tests.

    `on_change(text)` is called only when the text actually changes, while the lock
    is held so observers see changes in the order they happened. It must not block
    for long; re-entrant calls into this display are allowed.
    """

    def __init__(self, width: int, on_change: Callable[[str], None] | None = None) -> None:
        if width < 1:
            raise DisplayConfigError(f"width must be >= 1, got {width}")
        self.width = width
        self.brightness = 128
        self._on_change = on_change
        self._text = ""
        self._lock = threading.RLock()

    @property
    def text(self) -> str:
        with self._lock:
            return self._text

    def show(self, text: str) -> None:
        with self._lock:
            if text == self._text:
                return
            self._text = text
            if self._on_change is not None:
                self._on_change(text)

    def set_brightness(self, level: int) -> None:
        with self._lock:
            self.brightness = _clamp_brightness(level)

    def close(self) -> None:
        pass


class NullDisplay:
    """A counter without a number display."""

    def __init__(self, width: int) -> None:
        self.width = width

    def show(self, text: str) -> None:
        pass

    def set_brightness(self, level: int) -> None:
        pass

    def close(self) -> None:
        pass


class _LumaDisplay:
    """Shared plumbing: one lock around every SPI transfer, idempotent close."""

    def __init__(self, device: LumaDevice, width: int) -> None:
        if width < 1:
            raise DisplayConfigError(f"width must be >= 1, got {width}")
        self.width = width
        self.device = device
        self._text = ""
        self._closed = False
        # The counter loop and a shutdown handler may touch the display from different
        # threads; interleaved SPI frames would show garbage until the next redraw.
        self._lock = threading.Lock()

    @property
    def text(self) -> str:
        """The last text passed to `show` (before alignment and padding)."""
        with self._lock:
            return self._text

    def show(self, text: str) -> None:
        with self._lock:
            if self._closed:
                return  # a late update racing shutdown is not worth an exception
            self._text = text
            # Always redraw, even when unchanged: MAX7219 modules are known to scramble
            # on electrical noise, and a periodic show() then repairs the display.
            self._render(text)

    def set_brightness(self, level: int) -> None:
        with self._lock:
            if not self._closed:
                self.device.contrast(_clamp_brightness(level))

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            # Blanks the display, puts the MAX7219 into shutdown and closes the bus.
            self.device.cleanup()

    def _render(self, text: str) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


class SevenSegmentDisplay(_LumaDisplay):
    """Seven-segment digits behind MAX7219 chip(s), via luma's `sevensegment`.

    luma maps each 8x8 block of a max7219 device to 8 digits, one pixel column per
    digit register, and fills text from the *highest* digit register (the leftmost
    digit on common modules). We therefore right-align text over all the device's
    digit positions: the last character always lands on DIG0, which is the rightmost
    digit on 8-digit modules and the only populated end on 4-digit ones.
    """

    def __init__(self, device: LumaDevice, width: int) -> None:
        super().__init__(device, width)
        from luma.core.virtual import sevensegment
        from luma.led_matrix.segment_mapper import dot_muncher

        self.positions = device.width * device.height // 8
        if width > self.positions:
            raise DisplayConfigError(
                f"width {width} exceeds the {self.positions} digits of the device")
        # dot_muncher explicitly: the dummy device used in tests has no default mapper.
        self._segments = sevensegment(device, segment_mapper=dot_muncher)

    @classmethod
    def on_spi(cls, port: int, device: int, digits: int, brightness: int = 128, *,
               width: int | None = None) -> "SevenSegmentDisplay":
        """A real MAX7219 seven-segment module on /dev/spidev<port>.<device>.

        `digits` is how many digits are fitted (4 or 8 per MAX7219; 16 = two chips
        daisy-chained); `width` (default `digits`) is how many characters the state
        machine formats.
        """
        from luma.core.interface.serial import noop, spi
        from luma.led_matrix.device import max7219

        if digits < 1:
            raise DisplayConfigError(f"digits must be >= 1, got {digits}")
        # max7219() only accepts multiples of 8x8, i.e. whole chips of 8 digits each;
        # a 4-digit module is a chip with DIG4..DIG7 unconnected.
        chip = max7219(spi(port=port, device=device, gpio=noop()),
                       cascaded=ceil(digits / 8), contrast=_clamp_brightness(brightness))
        return cls(chip, digits if width is None else width)

    def _render(self, text: str) -> None:
        cells = split_positions(text)[-self.width:]
        padded = [" "] * (self.positions - len(cells)) + cells
        self._segments.text = "".join(padded)


class MatrixDisplay(_LumaDisplay):
    """Cascaded 8x8 LED matrices (MAX7219, e.g. FC-16 4-in-1 modules).

    Text is drawn centred in luma's proportional LCD font (7 px tall digits, about
    6 px per digit, so 5 characters fit on 32 px). Text too wide for the matrix is
    right-aligned instead, so the least significant digits of a number stay visible.
    """

    def __init__(self, device: LumaDevice, width: int, font: Any = None) -> None:
        super().__init__(device, width)
        from luma.core.legacy.font import LCD_FONT, proportional

        self.font = font if font is not None else proportional(LCD_FONT)

    @classmethod
    def on_spi(cls, port: int, device: int, cascaded: int, brightness: int = 128, *,
               width: int, block_orientation: int = -90, rotate: int = 0,
               blocks_arranged_in_reverse_order: bool = False) -> "MatrixDisplay":
        """A real chain of `cascaded` 8x8 MAX7219 matrices.

        block_orientation -90 suits the common FC-16 modules; use 0 or 90 if each
        character appears rotated, and blocks_arranged_in_reverse_order if the
        characters come out in the wrong block order.
        """
        from luma.core.interface.serial import noop, spi
        from luma.led_matrix.device import max7219

        if cascaded < 1:
            raise DisplayConfigError(f"cascaded must be >= 1, got {cascaded}")
        chain = max7219(spi(port=port, device=device, gpio=noop()), cascaded=cascaded,
                        block_orientation=block_orientation, rotate=rotate,
                        blocks_arranged_in_reverse_order=blocks_arranged_in_reverse_order,
                        contrast=_clamp_brightness(brightness))
        return cls(chain, width)

    def _render(self, text: str) -> None:
        from luma.core.legacy import text as draw_text
        from luma.core.legacy import textsize
        from luma.core.render import canvas

        # Legacy fonts are 256-entry tables indexed by ord(); anything else would
        # raise IndexError mid-draw (e.g. Vietnamese letters), so substitute '?'.
        safe = "".join(ch if " " <= ch <= "~" else "?" for ch in text)
        ink = textsize(safe, font=self.font)[0]
        if safe and safe[-1] != " ":
            ink -= 1  # proportional glyphs end with a blank spacer column
        x = (self.device.width - ink) // 2 if ink <= self.device.width else self.device.width - ink
        with canvas(self.device) as draw:
            draw_text(draw, (x, 0), safe, fill="white", font=self.font)


def make_display(kind: str, *, width: int, digits: int = 4, cascaded: int = 4,
                 spi_port: int = 0, spi_device: int = 0, brightness: int = 128,
                 rotate: int = 0, block_orientation: int = -90,
                 on_change: Callable[[str], None] | None = None,
                 simulate: bool = False) -> Display:
    """Build the display named in the counter's config.

    "none" -> NullDisplay; "sevenseg" / "matrix" -> MAX7219 on SPI. With
    simulate=True every kind (even "none") becomes a TextDisplay so the simulator can
    still show what the counter would display; the kind is still validated so a typo
    in the config fails on a laptop too.
    """
    if kind not in DISPLAY_KINDS:
        raise UnknownDisplayKind(f"unknown display kind {kind!r}; expected one of {DISPLAY_KINDS}")
    if simulate:
        return TextDisplay(width, on_change=on_change)
    if kind == "none":
        return NullDisplay(width)
    if kind == "sevenseg":
        return SevenSegmentDisplay.on_spi(spi_port, spi_device, digits, brightness, width=width)
    return MatrixDisplay.on_spi(spi_port, spi_device, cascaded, brightness, width=width,
                                block_orientation=block_orientation, rotate=rotate)
