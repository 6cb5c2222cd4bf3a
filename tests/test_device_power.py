"""Power cuts: the counter runs on a filesystem that forgets every write not yet fsynced.

The real firmware (`hailong device run --simulate`) keeps its ledger on a powerfs
(tests/powerfs.py); a real Mosquitto and the service's real ingest and store receive what
it sends. At seeded random moments -- often at an exact write or fsync inside a SQLite
commit -- the power fails: the filesystem stops accepting changes, the device is killed
with SIGKILL, everything unsynced is dropped (or torn: some sectors land, some do not),
and the filesystem comes back with only what was durable. Then the device starts again.

At the end every event the device reported `stored` (it had shown "thank you" for it)
reached the service, unchanged, and was counted once; the ledger was never quarantined.

`make soak` runs many more cuts: HAILONG_POWER_CUTS (default 5), HAILONG_CHAOS_SEED. The chaos
harness (tests/test_chaos.py) cuts power too, among all its other faults.
"""
from __future__ import annotations

import os
import random
from datetime import timedelta

import pytest

from broker.ingest import Ingest, IngestSettings
from broker.store import Store
from common import periods
from protocol.events import is_counted
from tests.powerfs import PowerDisk, cut_power, fuse_available
from tests.support import DeviceProcess, write_config

CUTS = int(os.environ.get("HAILONG_POWER_CUTS", "5"))
SEED = int(os.environ.get("HAILONG_CHAOS_SEED", "2026"))
TODAY = periods.today(periods.zone(periods.DEFAULT_TZ))
WIDE = ((TODAY - timedelta(days=2)).isoformat(), (TODAY + timedelta(days=2)).isoformat())
BUTTONS = ["press 1", "press 2", "press 3", "press 4", "press 4", "press next", "press recall"]

pytestmark = pytest.mark.skipif(fuse_available() is not None, reason=f"no FUSE: {fuse_available()}")


@pytest.fixture
def disk(tmp_path):
    d = PowerDisk(tmp_path / "sdcard", tmp_path / "data")
    d.mount()
    yield d
    d.close()


@pytest.fixture
def service(tmp_path, mosquitto):
    store = Store.open(tmp_path / "service" / "hailong.db")
    store.register_device("dev-1", "kien-thuy", "3")
    ingest = Ingest(store, IngestSettings(host=mosquitto.host, port=mosquitto.port, batch_wait_ms=5)).start()
    assert ingest.connected.wait(10)
    yield store
    ingest.stop()
    store.close()


def run_cuts(tmp_path, mosquitto, disk, cuts: int, seed: int) -> tuple[dict, list[dict]]:
    rng = random.Random(seed)
    cfg = write_config(tmp_path, mosquitto, data_dir=disk.mountpoint,
                       extra="[ledger]\nack_timeout_s = 2\n[rating]\nrepeat_gap_s = 0\n")
    reported: dict[tuple, dict] = {}
    log = []
    for _ in range(cuts):
        offline = rng.random() < 0.4
        if offline:
            mosquitto.stop()  # what it stores now exists only on the SD card when the power goes
        dev = DeviceProcess(cfg)
        dev.wait_ready(timeout=30)
        script = []
        for _ in range(rng.randint(10, 40)):
            script += [rng.choice(BUTTONS), f"wait {rng.choice([0, 0, 0.005, 0.02, 0.05])}"]
        dev.send(*script)
        target = rng.randint(0, 5)
        if target:
            dev.wait("stored", lambda v: len(v) >= target, timeout=30)
        log.append(cut_power(disk, dev, rng))
        assert not dev.of("quarantined"), f"a power cut made the ledger unusable: {dev.of('quarantined')}"
        for ev in dev.stored():
            key = (ev["ledger"], ev["seq"])
            assert key not in reported, f"{key} was handed out twice"
            reported[key] = ev
        mosquitto.start()
    dev = DeviceProcess(cfg)
    try:
        dev.wait_ready(timeout=30)
        assert not dev.of("quarantined")
        (ready,) = [r for r in dev.lines.items if "ready" in r]
        dev.wait("online", lambda v: v[-1] is True, timeout=30)
        if ready["backlog"]:
            dev.wait("acked", lambda v: sum(map(len, v)) >= ready["backlog"], timeout=120)
        assert dev.quit() == 0
    finally:
        dev.close()
    return reported, log


def test_power_cuts_lose_nothing_reported_stored_and_count_it_once(tmp_path, mosquitto, disk, service):
    reported, log = run_cuts(tmp_path, mosquitto, disk, CUTS, SEED)
    store = service
    assert reported, "no press was ever stored"
    events = {(e["event"]["ledger"], e["event"]["seq"]): e for e in store.events(device="dev-1", limit=100_000)}
    missing = sorted(set(reported) - set(events))
    assert not missing, f"{len(missing)} events the device reported stored never reached the service: {missing[:5]}"
    for key, ev in reported.items():
        assert events[key]["event"] == ev, f"{key} changed on its way"
    # Stored once each, in one ledger, and no seq missing: every committed event reached the service.
    ledgers = {k[0] for k in events}
    assert len(ledgers) == 1, f"the ledger was lost and replaced, its seqs restarted: {ledgers}"
    assert sorted(s for _, s in events) == list(range(1, len(events) + 1))
    counted = [e["event"] for e in events.values() if e["event"]["type"] == "rating" and is_counted(e["event"])]
    rows = store.satisfaction("counter", *WIDE)["rows"]
    assert sum(r["ratings"] for r in rows) == len(counted)
    assert store.counts()["events"] == len(events)
    print(f"\npower cuts: {len(log)}, events reported stored {len(reported)}, stored by the service "
          f"{len(events)}, counted ratings {len(counted)}, unsynced ops dropped "
          f"{sum(c['lost_ops'] for c in log)}, torn ops landed {sum(c['landed_ops'] for c in log)}")
