"""The hall's voice: which short clips, in which order, announce a call in Vietnamese.

"A012 → counter 3" is read "Mời công dân có số A không một hai đến quầy số ba". The ticket is
read digit by digit, zeros included (people compare it with the paper in their hand, digit by
digit, and "mười hai" would not match "012"); the counter's number is read as a number ("quầy số
mười hai"), which is how staff and signs say it. Each word is a clip, so the service ships ~50 short
files instead of one per call, and a centre may replace them with its own recordings
(`[hall] voice_dir`): the clip names below are the contract with such a folder.

`CLIP_TEXTS` is what scripts/voice_clips.py gives espeak-ng to regenerate the shipped clips.
"""
from __future__ import annotations

import re
import string
from pathlib import Path

__all__ = ["CLIP_TEXTS", "CLIP_EXT", "DEFAULT_DIR", "announcement", "counter_words", "ticket_words"]

DEFAULT_DIR = Path(__file__).resolve().parent / "web" / "voice"
CLIP_EXT = ".wav"

DIGITS = ("khong", "mot", "hai", "ba", "bon", "nam", "sau", "bay", "tam", "chin")
_DIGIT_TEXT = ("không", "một", "hai", "ba", "bốn", "năm", "sáu", "bảy", "tám", "chín")
# How Vietnamese spells its letters aloud (a ticket prefix is one or two capitals).
_LETTER_TEXT = {
    "A": "a", "B": "bê", "C": "xê", "D": "dê", "E": "e", "F": "ép", "G": "giê", "H": "hát", "I": "i",
    "J": "gi", "K": "ca", "L": "e lờ", "M": "em mờ", "N": "en nờ", "O": "o", "P": "pê", "Q": "quy",
    "R": "e rờ", "S": "ét xì", "T": "tê", "U": "u", "V": "vê", "W": "vê kép", "X": "ích xì", "Y": "i dài",
    "Z": "dét",
}

CLIP_TEXTS: dict[str, str] = {
    "moi": "mời công dân có số",
    "den_quay": "đến quầy số",
    **dict(zip(DIGITS, _DIGIT_TEXT)),
    # The forms a digit takes inside a number: 10 "mười", 20 "hai mươi", 21 "hai mươi mốt",
    # 15 "mười lăm", 24 "hai mươi tư".
    "muoi": "mười", "muoi_tens": "mươi", "mot_unit": "mốt", "lam": "lăm", "tu": "tư",
    **{f"chu_{c.lower()}": text for c, text in _LETTER_TEXT.items()},
}

_TICKET_RE = re.compile(r"\A([A-Z]{1,2})(\d{1,4})\Z")
_NUMBER_RE = re.compile(r"(\d+)")


def ticket_words(ticket: str) -> list[str]:
    """The clips of a ticket: its letters, then each digit ("A012" → a, không, một, hai).

    Anything that is not a letter prefix and digits (a counter's local "L…" number is one)
    is read character by character, skipping what has no clip.
    """
    text = ticket.strip().upper()
    m = _TICKET_RE.match(text)
    chars = (m.group(1) + m.group(2)) if m else text
    words = []
    for c in chars:
        if c in string.ascii_uppercase:
            words.append(f"chu_{c.lower()}")
        elif c in string.digits:
            words.append(DIGITS[int(c)])
    return words


def number_words(n: int) -> list[str]:
    """A whole number 0..99 as Vietnamese says it; larger ones digit by digit."""
    if n < 0 or n > 99:
        return [DIGITS[int(c)] for c in str(abs(n))]
    if n < 10:
        return [DIGITS[n]]
    tens, unit = divmod(n, 10)
    words = ["muoi"] if tens == 1 else [DIGITS[tens], "muoi_tens"]
    if unit == 0:
        return words
    if unit == 5:
        return words + ["lam"]
    if unit == 1 and tens > 1:
        return words + ["mot_unit"]
    if unit == 4 and tens > 1:
        return words + ["tu"]
    return words + [DIGITS[unit]]


def counter_words(counter: str, name: str | None = None) -> list[str]:
    """The counter's number: the last number in its name ("Quầy 3"), else in its id; else nothing."""
    for text in (name or "", counter or ""):
        found = _NUMBER_RE.findall(text)
        if found:
            return number_words(int(found[-1][-4:]))
    return []


def announcement(ticket: str, counter: str, counter_name: str | None = None) -> list[str]:
    """The clips, in order, that call `ticket` to `counter`."""
    words = ["moi", *ticket_words(ticket)]
    at = counter_words(counter, counter_name)
    return words + (["den_quay", *at] if at else [])
