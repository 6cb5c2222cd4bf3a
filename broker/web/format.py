"""How the pages write numbers: Vietnamese 1.234,5 or English 1,234.5, and a level's colour."""
from __future__ import annotations

from urllib.parse import quote

__all__ = ["count", "counter_value", "hue", "minutes", "num", "pct"]


def num(value: float | None, lang: str, digits: int = 1) -> str:
    if value is None:
        return "—"
    text = f"{value:,.{digits}f}"
    if lang == "vi":  # 1.234,5 in Vietnamese
        text = text.replace(",", "\0").replace(".", ",").replace("\0", ".")
    return text


def pct(rate: float | None, lang: str) -> str:
    return "—" if rate is None else num(rate * 100, lang) + " %"


def count(n: int | None, lang: str) -> str:
    return "0" if not n else num(n, lang, 0)


def minutes(seconds: float | None, lang: str) -> str:
    """A waiting or service time, given in seconds, in minutes: "12,5 phút" / "12.5 min"."""
    return "—" if seconds is None else num(seconds / 60, lang) + (" phút" if lang == "vi" else " min")


def hue(score: int, levels: int) -> int:
    """Red for the worst level to green for the best."""
    return round(120 * (score - 1) / max(1, levels - 1))


def counter_value(site: str, counter: str) -> str:
    """A counter as one form value, "site/counter", each part quoted so neither can hold the slash."""
    return f"{quote(site, safe='')}/{quote(counter, safe='')}"
