"""The chaos harness (tests/chaos.py): real service, Mosquitto and counters under a seeded fault schedule.

The short run is part of `make test`. `make chaos` runs the long one: HAILONG_CHAOS_SEED, _COUNTERS,
_COUNTER_KILLS, _SERVICE_KILLS, _BROKER_RESTARTS, _BROKER_KILLS, _NET_CUTS, _NET_STALLS, _NET_SLOWS and _MIN_EVENTS
set its size (defaults: the issue's target), and it prints the figures.
"""
from __future__ import annotations

import json
import random

import pytest

from tests.chaos import FAULTS, Rig, assert_exact, env_int, run_schedule


@pytest.fixture
def rig_factory(tmp_path):
    rigs = []

    def make(**kw) -> Rig:
        rig = Rig(tmp_path, **kw)
        rigs.append(rig)
        return rig.start()

    yield make
    for rig in rigs:
        rig.close()


def report(figures: dict, seed: int) -> None:
    print("\nchaos figures: " + json.dumps({"seed": seed, **figures}, ensure_ascii=False))


def test_short_chaos_run_counts_every_stored_event_exactly_once(rig_factory):
    seed = 12
    rig = rig_factory(counters=3, persistence=True)
    rig.press_forever(seed=seed)
    run_schedule(rig, random.Random(seed), {
        "counter_kill": 2, "service_kill": 1, "broker_restart": 2, "broker_kill": 1,  # restart 2: no persistence
        "net_cut": 1, "net_stall": 1, "net_slow": 1,
    })
    figures = rig.finish()
    report(figures, seed)
    assert_exact(figures)
    assert figures["flagged"] > 0  # misuse happened, and was checked


@pytest.mark.skipif(env_int("HAILONG_CHAOS_LONG", 0) == 0, reason="the long run: `make chaos`")
def test_long_chaos_run(rig_factory):
    seed = env_int("HAILONG_CHAOS_SEED", 2026)
    counts = {
        "counter_kill": env_int("HAILONG_CHAOS_COUNTER_KILLS", 20),
        "service_kill": env_int("HAILONG_CHAOS_SERVICE_KILLS", 5),
        "broker_restart": env_int("HAILONG_CHAOS_BROKER_RESTARTS", 6),
        "broker_kill": env_int("HAILONG_CHAOS_BROKER_KILLS", 2),
        "net_cut": env_int("HAILONG_CHAOS_NET_CUTS", 5),
        "net_stall": env_int("HAILONG_CHAOS_NET_STALLS", 4),
        "net_slow": env_int("HAILONG_CHAOS_NET_SLOWS", 4),
    }
    # Kinds registered by other tests' modules (e.g. power cuts) join when asked for by name.
    counts.update({k: env_int(f"HAILONG_CHAOS_{k.upper()}S", 0) for k in FAULTS if k not in counts})
    rig = rig_factory(counters=env_int("HAILONG_CHAOS_COUNTERS", 6), persistence=True)
    rig.press_forever(seed=seed)
    min_events = env_int("HAILONG_CHAOS_MIN_EVENTS", 5000)
    run_schedule(rig, random.Random(seed), counts, spread_over=min_events)
    rig.wait_for_more_events(max(0, min_events - rig.events_stored()), timeout=1800)
    figures = rig.finish()
    report(figures, seed)
    assert_exact(figures)
