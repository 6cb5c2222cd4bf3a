"""Reconnect policy: exponential backoff with jitter.

A power cut brings a whole centre's counters back at the same instant; without jitter
they would all hit the broker in the same second, every time, forever.
"""
from __future__ import annotations

import random
from typing import Callable


def backoff_delay(
    attempt: int,
    *,
    base: float = 1.0,
    cap: float = 60.0,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait before reconnect attempt number `attempt` (0 = first retry).

    "Equal jitter": half of the exponential step is fixed, half is random, so the wait
    never collapses to zero (no hammering) yet two devices rarely pick the same moment.
    `rand` returns a float in [0, 1); inject it to make the result deterministic.
    """
    if attempt < 0:
        raise ValueError(f"attempt must be >= 0, got {attempt}")
    if base <= 0 or cap < base:
        raise ValueError(f"need 0 < base <= cap, got base={base} cap={cap}")
    # Cap the exponent before computing 2**attempt: attempt grows without bound during a long outage.
    step = min(cap, base * (2 ** min(attempt, 64)))
    return step / 2 + rand() * step / 2
