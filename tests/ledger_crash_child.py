"""Append to a ledger forever, announcing each seq only after append() returned.

Usage: python tests/ledger_crash_child.py LEDGER_PATH ROUND [--step]

The crash test SIGKILLs this process; every line it printed (the returned
event as JSON) is a promise that the event was durable ("thank you" was
shown). Flat out, the kill lands at an arbitrary point inside append().
With --step the child waits for a line on stdin after each announcement, so
the kill can land exactly between "append returned" and the next vote.
"""

from __future__ import annotations

import json
import sys

from device.ledger import Ledger


def main(path: str, round_: int, step: bool) -> None:
    ledger = Ledger.open(path)
    n = 0
    while True:
        n += 1
        event = ledger.append({"type": "vote", "ledger": None, "seq": None, "round": round_, "n": n, "note": "cảm ơn"})
        sys.stdout.write(json.dumps(event, ensure_ascii=False) + "\n")
        sys.stdout.flush()
        if step and not sys.stdin.readline():
            return


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), "--step" in sys.argv[3:])
