"""The effects the counter's and the kiosk's state machines return, for the runtime to carry out in order.

Plain values, no I/O: the machines decide, the runtime does. The order of a list of effects is
the promise (a `Store` before the `Show`/`Led`/`Beep` or the printed ticket it causes).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Union

__all__ = ["Beep", "Effect", "Finalize", "Led", "Remember", "Show", "Store"]


@dataclass(frozen=True)
class Store:
    """Commit one ledger event. `held`: keep it unsent until `Finalize` (reason question)."""

    type: str
    fields: dict
    held: bool = False
    meta: tuple[tuple[str, str], ...] = ()  # ledger meta set in the event's own transaction


@dataclass(frozen=True)
class Finalize:
    """Release the held event, merging `updates` into it."""

    updates: dict


@dataclass(frozen=True)
class Show:
    text: str


@dataclass(frozen=True)
class Led:
    index: int  # 1..scale; 0 means every rating LED
    on: bool


@dataclass(frozen=True)
class Beep:
    seconds: float = 0.05


@dataclass(frozen=True)
class Remember:
    """Persist a small piece of state (officer, fallback ticket number) across restarts."""

    key: str
    value: str


Effect = Union[Store, Finalize, Show, Led, Beep, Remember]
