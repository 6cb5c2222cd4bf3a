"""kill -9 the device again and again while citizens press: nothing stored is lost or doubled.

`make soak` runs many more rounds (HAILONG_CHAOS_ROUNDS).
"""
from __future__ import annotations

import os
import random
import threading

from tests.support import DeviceProcess, FakeService, write_config

ROUNDS = int(os.environ.get("HAILONG_CHAOS_ROUNDS", "6"))


def test_kill_dash_nine_at_random_moments_loses_and_doubles_nothing(tmp_path, mosquitto):
    rng = random.Random(int(os.environ.get("HAILONG_CHAOS_SEED", "2026")))
    service = FakeService(mosquitto)
    cfg = write_config(tmp_path, mosquitto, extra="[ledger]\nack_timeout_s = 2\n[rating]\nrepeat_gap_s = 0\n")
    reported: dict[tuple, dict] = {}
    try:
        for round_no in range(ROUNDS):
            dev = DeviceProcess(cfg)
            dev.wait_ready()
            script = []
            presses = rng.randint(5, 25)
            for _ in range(presses):
                script.append(rng.choice(["press 1", "press 2", "press 3", "press 4", "press next", "press recall"]))
                script.append(f"wait {rng.choice([0, 0, 0.001, 0.01, 0.03])}")
            dev.send(*script)
            # Kill somewhere in the middle of the script: after a random number of stores, plus a random delay.
            target = rng.randint(0, min(12, presses))
            dev.wait("stored", lambda v: len(v) >= target, timeout=20) if target else None
            threading.Event().wait(rng.uniform(0, 0.05))
            dev.kill()
            for ev in dev.stored():
                key = (ev["ledger"], ev["seq"])
                assert key not in reported, f"seq {key} was handed out twice"
                reported[key] = ev
        # Bring it back once more and let it drain.
        dev = DeviceProcess(cfg)
        dev.wait_ready()
        backlog = [r for r in dev.lines.items if "ready" in r][0]["backlog"]
        if backlog:
            dev.wait("acked", lambda v: sum(map(len, v)) >= backlog, timeout=60)
        service.received.wait_for(
            lambda items: set(reported) <= {(e["ledger"], e["seq"]) for _, e in items},
            timeout=60, what="every stored event delivered",
        )
        assert dev.quit() == 0
    finally:
        service.close()

    assert reported, "the script never got an event stored"
    received = [e for _, e in service.received.items]
    by_key: dict[tuple, dict] = {}
    for e in received:
        key = (e["ledger"], e["seq"])
        # Re-sends happen (that is the design); a re-send must be the very same event.
        assert by_key.setdefault(key, e) == e
        if key in reported:
            assert e == reported[key]
    # Counted once: the service's dedup key set equals the set of events, and a ledger never reuses a seq.
    assert len(service.committed) == len(by_key)
    seqs = sorted(s for (_, s) in by_key)
    assert seqs == list(range(1, len(seqs) + 1)), "seqs have a gap or a repeat"
    # In order: first arrivals per ledger never go backwards.
    first_seen = []
    seen = set()
    for e in received:
        if (e["ledger"], e["seq"]) not in seen:
            seen.add((e["ledger"], e["seq"]))
            first_seen.append(e["seq"])
    assert first_seen == sorted(first_seen)
