"""Reconnect policy: exponential backoff with jitter, and the order of several brokers.

A power cut brings a whole centre's counters back at the same instant; without jitter
they would all hit the broker in the same second, every time, forever. With several
brokers (`[mqtt] hosts`, docs/brokers.md) `BrokerRotation` decides which one is next.
"""
from __future__ import annotations

import random
import time
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


class BrokerRotation:
    """Which broker to try next, and how long to wait first: the reconnect policy over several brokers.

    A round is one try of every broker. Within a round the counter moves on to the next broker at
    once: a second broker is only worth having if the counter reaches it without waiting. After a
    round without a connection that held, it waits `backoff_delay`, growing round by round; with one
    broker a round is one try, which is exactly the single-broker policy. A connection that held for
    `stable_s` starts a fresh round when lost; one that drops sooner counts as a failed try, so two
    brokers that both accept and then drop us cannot make the counter reconnect in a tight loop.
    `clock` (monotonic seconds) and `rand` are injectable for tests.
    """

    def __init__(
        self,
        brokers,
        *,
        base: float = 1.0,
        cap: float = 60.0,
        stable_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
    ):
        self.brokers = tuple(brokers)
        if not self.brokers:
            raise ValueError("need at least one broker")
        self._base, self._cap, self._stable_s = base, cap, stable_s
        self._clock, self._rand = clock, rand
        self._i = 0
        self._tries = 0  # failed tries in the current round
        self._round = 0  # rounds without a connection since the last one was accepted
        self._up_at: float | None = None

    @property
    def current(self):
        """The broker to connect to now."""
        return self.brokers[self._i]

    def connected(self) -> None:
        """The current broker accepted us."""
        self._up_at = self._clock()
        self._round = 0

    def failed(self) -> float:
        """The current broker refused us, could not be reached or dropped us: move on.

        Returns the seconds to wait before connecting to the new `current`.
        """
        if self._up_at is not None:
            if self._clock() - self._up_at >= self._stable_s:
                self._tries = 0
            self._up_at = None
        self._tries += 1
        self._i = (self._i + 1) % len(self.brokers)
        if self._tries < len(self.brokers):
            return 0.0
        self._tries = 0
        delay = backoff_delay(self._round, base=self._base, cap=self._cap, rand=self._rand)
        self._round += 1
        return delay
