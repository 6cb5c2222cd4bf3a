"""Who presses the buttons: simulated citizens, or (--interactive) the person at the keyboard."""
from __future__ import annotations

import os
import random
import sys
import threading
from collections.abc import Callable, Iterator

from hailong.demo.config import REASON_WINDOW_S
from hailong.demo.counter import Counter
from hailong.sample_data import REASONS

KEYS = {"1": "press 1", "2": "press 2", "3": "press 3", "4": "press 4", "n": "press next", "r": "press recall"}


def citizen_script(rng: random.Random, rate: float) -> Iterator[tuple[str, float]]:
    """Endless (command, pause after it): staff calls the next citizen, who is served, then rates."""
    per_citizen = 60.0 / rate
    while True:
        yield "press next", per_citizen * rng.uniform(0.45, 0.75)
        score = rng.choices([1, 2, 3, 4], weights=[1, 2, 5, 8])[0]
        if score == 1:
            yield "press 1", 0.4
            if rng.random() < 0.75:  # most unhappy citizens say why (a rating button picks the reason)
                yield f"press {rng.randint(1, len(REASONS))}", per_citizen * 0.15
            else:
                yield "wait 0", REASON_WINDOW_S + 0.2  # the question times out
            continue
        r = rng.random()
        if r < 0.10:  # impatient: presses again, recorded and flagged "repeat", never counted
            yield f"press {score}", 0.3
            yield f"press {rng.randint(2, 4)}", per_citizen * 0.15
        elif r < 0.16:  # two buttons at once: the second is flagged "chord"
            other = rng.choice([s for s in (2, 3, 4) if s != score])
            yield f"chord {score} {other}", per_citizen * 0.2
        else:
            yield f"press {score}", per_citizen * 0.25


def serve_citizens(counter: Counter, rng: random.Random, rate: float, stop: threading.Event,
                   on_error: Callable[[dict], None]) -> None:
    """Play the citizen script on one counter until `stop`, or until its process ends."""
    stop.wait(rng.uniform(0, 60.0 / rate / 2))  # counters do not move in lockstep
    for command, pause in citizen_script(rng, rate):
        if stop.is_set():
            return
        if counter.down.is_set():  # the staged outage: nobody can rate a dark counter
            stop.wait(pause)
            continue
        if not command.startswith("wait") and not counter.send(command):
            on_error({"event": "error", "counter": counter.n, "error": "counter process ended"})
            return
        stop.wait(pause)


def keyboard(counter: Counter, stop: threading.Event) -> None:
    """--interactive: keys (or lines, when stdin is not a terminal) drive the counter; q stops the demo."""
    stream = sys.stdin
    if stream.isatty():
        _keys_from_terminal(stream.fileno(), counter, stop)
        return
    for line in stream:
        key = line.strip().lower()
        if key == "q":
            break
        if key in KEYS:
            counter.send(KEYS[key])
    stop.set()


def _keys_from_terminal(fd: int, counter: Counter, stop: threading.Event) -> None:
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        while not stop.is_set():
            key = os.read(fd, 1).decode(errors="ignore").lower()
            if key in ("", "q"):
                stop.set()
                return
            if key in KEYS:
                counter.send(KEYS[key])
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
