"""The kiosk's ticket as ESC/POS bytes: Vietnamese as a raster image or in code page 1258.

Most cheap thermal printers have no Vietnamese code page, so by default the whole ticket is
drawn with Pillow and sent as `GS v 0` raster bit images: what the font can draw, the printer
prints. Printers that do have Windows-1258 (Epson's ESC t 52) can take text instead, which is
faster on a slow serial line. Pure functions: bytes in, bytes out; the transport is elsewhere.

Pillow is imported when a raster ticket is drawn, not at import.
"""
from __future__ import annotations

import logging
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

ESC, GS, DLE, EOT = b"\x1b", b"\x1d", b"\x10", b"\x04"
INIT = ESC + b"@"
CUT = ESC + b"d\x04" + GS + b"V\x42\x00"  # feed four lines, then a partial cut (with feed)
BAND_ROWS = 128  # rows per GS v 0 image: small printers have small receive buffers

# Fonts tried when kiosk.font is unset (Debian's fonts-dejavu-core has Vietnamese glyphs).
DEFAULT_FONTS = (
    Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"),
    Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
)

# Line styles: (font size in px for raster, GS ! size byte for code-page text, bold)
STYLES = {"head": (26, 0x00, True), "text": (26, 0x00, False), "big": (120, 0x77, True),
          "label": (22, 0x00, False), "tag": (34, 0x11, True)}
_NON_TONE = {"\u0302", "\u0306", "\u031b"}  # circumflex, breve, horn: part of the letter in cp1258


@dataclass(frozen=True)
class Ticket:
    centre: str
    queue_name: str
    ticket: str
    ahead: int | None
    priority: bool
    when: str  # "HH:MM dd/mm/yyyy", local time at printing


def lines(t: Ticket) -> list[tuple[str, str]]:
    """The ticket's lines, top to bottom, each with its style."""
    out = [("head", t.centre), ("text", t.queue_name), ("label", "SỐ THỨ TỰ"), ("big", t.ticket)]
    if t.priority:
        out.append(("tag", "ƯU TIÊN"))
    if t.ahead is not None:
        out.append(("text", f"Số người chờ trước: {t.ahead}"))
    out.append(("label", t.when))
    return out


# --- code page 1258 -----------------------------------------------------------------------

def cp1258(text: str) -> bytes:
    """Windows-1258 bytes: letters it lacks precomposed go as base letter + combining tone mark."""
    out = bytearray()
    for ch in unicodedata.normalize("NFC", text):
        try:
            out += ch.encode("cp1258")
            continue
        except UnicodeEncodeError:
            pass
        parts = unicodedata.normalize("NFD", ch)
        base = unicodedata.normalize("NFC", "".join(c for c in parts if not _is_tone(c)))
        tones = "".join(c for c in parts if _is_tone(c))
        try:
            out += base.encode("cp1258") + tones.encode("cp1258")
        except UnicodeEncodeError:
            out += b"?"
    return bytes(out)


def _is_tone(c: str) -> bool:
    return unicodedata.combining(c) != 0 and c not in _NON_TONE


def codepage_ticket(t: Ticket, code_page: int) -> bytes:
    out = bytearray(INIT + ESC + b"t" + bytes([code_page]) + ESC + b"a\x01")
    for style, text in lines(t):
        _, size, bold = STYLES[style]
        out += GS + b"!" + bytes([size]) + ESC + b"E" + bytes([int(bold)])
        out += cp1258(text) + b"\n"
    out += GS + b"!\x00" + ESC + b"E\x00" + CUT
    return bytes(out)


# --- raster -------------------------------------------------------------------------------

def find_font(configured: Path | None) -> Path | None:
    """The configured font, else the first default present; None means Pillow's own font."""
    for path in ([configured] if configured else list(DEFAULT_FONTS)):
        if path.is_file():
            return path
    return None


def load_font(path: Path | None, size: int) -> Any:
    from PIL import ImageFont

    if path is None:
        return ImageFont.load_default(size)
    return ImageFont.truetype(str(path), size)


def render(t: Ticket, width: int, font: Path | None) -> Any:
    """The ticket as a 1-bit image `width` dots wide (black = 1 = burnt dot)."""
    from PIL import Image, ImageDraw

    pad = 8
    drawn = []
    for style, text in lines(t):
        f = load_font(font, STYLES[style][0])
        size = f.size
        while size > 10 and _text_width(f, text) > width - 2 * pad:  # shrink a long centre name to fit
            size -= 2
            f = load_font(font, size)
        drawn.append((text, f))
    height = pad + sum(_line_height(f) for _, f in drawn) + pad
    image = Image.new("1", (width, height), 0)
    draw = ImageDraw.Draw(image)
    y = pad
    for text, f in drawn:
        draw.text(((width - _text_width(f, text)) // 2, y), text, font=f, fill=1)
        y += _line_height(f)
    return image


def _text_width(font: Any, text: str) -> int:
    left, _, right, _ = font.getbbox(text)
    return int(right - left)


def _line_height(font: Any) -> int:
    ascent, descent = font.getmetrics()
    return int(ascent + descent + 6)


def raster(image: Any) -> bytes:
    """`GS v 0` images of BAND_ROWS rows each; an image pixel of 1 burns a dot."""
    width, height = image.size
    row_bytes = (width + 7) // 8
    padded = image
    if width % 8:
        from PIL import Image

        padded = Image.new("1", (row_bytes * 8, height), 0)
        padded.paste(image, (0, 0))
    # Mode "1" packs 8 pixels per byte, most significant bit first, 1 = white in Pillow's
    # terms; we drew with 1 = ink, which is what the printer wants, so the bytes go as they are.
    data = padded.tobytes()
    out = bytearray()
    for top in range(0, height, BAND_ROWS):
        rows = min(BAND_ROWS, height - top)
        out += GS + b"v0\x00" + _le16(row_bytes) + _le16(rows)
        out += data[top * row_bytes:(top + rows) * row_bytes]
    return bytes(out)


def _le16(n: int) -> bytes:
    return bytes([n & 0xFF, n >> 8])


def raster_ticket(t: Ticket, width: int, font: Path | None) -> bytes:
    return INIT + raster(render(t, width, font)) + CUT


def encode(t: Ticket, *, mode: str, code_page: int, width: int, font: Path | None) -> bytes:
    if mode == "codepage":
        return codepage_ticket(t, code_page)
    return raster_ticket(t, width, font)
