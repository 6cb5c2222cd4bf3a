"""Fleet updates end to end: real counter processes (`hailong device boot --simulate`, restarted like
systemd's Restart=always would), the real service (store, ingest, HTTP API) and a real Mosquitto.

Release Y is this checkout's code as a 0.2.0 wheel (tests/release_support.py), installed by the counter
into its own venv offline from the served files; X is the factory install (this venv, 0.1.0).
"""
from __future__ import annotations

import platform
import sqlite3
import sys
import threading
import time

import pytest

from broker import fleet
from common import release as rel
from device import updater
from tests.fleet_support import Supervisor, fleet_service
from tests.release_support import hailong_wheel, make_release, outer_env_wheel
from tests.support import write_config

pytestmark = pytest.mark.slow

PY = f"{sys.version_info.major}.{sys.version_info.minor}"
ARCH = platform.machine()
KEYS = rel.new_key_pair()


@pytest.fixture
def service(tmp_path, mosquitto):
    with fleet_service(tmp_path, mosquitto, {"dev-1": "pw-of-dev-1"}) as parts:
        yield parts


def _publish(tmp_path, cfg, store, version: str, patches=None, *, tamper: bool = False) -> dict:
    folder = tmp_path / f"release-{version}"
    wheels = [hailong_wheel(tmp_path / f"wheels-{version}", version, patches), outer_env_wheel(tmp_path / "env")]
    make_release(folder, version, KEYS[0], wheels, python=PY, arch=ARCH)
    r = fleet.publish_release(store, folder, fleet.releases_dir(cfg), at_ms=1)
    if tamper:  # what a service in an attacker's hands could do to the files it serves
        served = fleet.releases_dir(cfg) / r["id"] / wheels[0].name
        served.write_bytes(served.read_bytes().replace(b"0.2.0", b"6.6.6"))
    return r


def _counter(tmp_path, mosquitto, **update) -> tuple:
    settings = {"health_timeout_s": 60, "quiet_s": 300, "idle_s": 1, "max_starts": 2, **update}
    lines = "".join(f"{k} = {v}\n" for k, v in settings.items())
    key = rel.key_text(KEYS[1]).decode().strip()
    config = write_config(tmp_path, mosquitto, mqtt='password = "pw-of-dev-1"\n',
                          extra=f'[telemetry]\ninterval_s = 1\n[update]\npublic_key = "{key}"\n{lines}')
    sup = Supervisor(config)
    sup.current.wait_ready(30)
    sup.current.wait("online", lambda v: v[-1] is True)
    return sup, tmp_path / "data"


def _send_update(cfg, ingest, release: dict, sup=None, **kw) -> None:
    """The command, sent again until the counter takes it up: a command published while the counter's
    first subscription is still on its way is not delivered (what the rollout's resend is for)."""
    command = fleet.update_command(release, fleet.release_url(cfg, release["id"]), **kw)
    for _ in range(20):
        ingest.publish("dev-1", "cmd", command)
        try:
            (sup or _NoWait()).current.wait("update", timeout=3)
            return
        except AssertionError:
            continue
    raise AssertionError("the counter never took up the update command")


class _NoWait:
    class current:  # noqa: N801
        @staticmethod
        def wait(*a, **kw):
            return None


def _service_events(cfg) -> list[tuple]:
    db = sqlite3.connect(cfg.store.path)
    try:
        return db.execute("SELECT ledger, seq FROM events WHERE device = 'dev-1' ORDER BY ledger, seq").fetchall()
    finally:
        db.close()


def _reported(store, state: str, timeout: float = 60):
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while time.monotonic() < deadline:
        d = store.device("dev-1") or {}
        u = (d.get("last_telemetry") or {}).get("update") or {}
        if u.get("state") == state:
            return d
        pause.wait(0.1)
    raise AssertionError(f"the service never heard update state {state!r}; last: {store.device('dev-1')}")


def test_x_to_y_installs_switches_when_idle_commits_and_counts_every_press_once(tmp_path, mosquitto, service):
    cfg, store, ingest = service
    release = _publish(tmp_path, cfg, store, "0.2.0")
    sup, data = _counter(tmp_path, mosquitto)
    try:
        x = sup.current
        x.send("press 4")
        x.wait("acked")
        _send_update(cfg, ingest, release, sup)
        for score in (3, 2, 4):  # while it downloads and installs
            x.send(f"press {score}")
        x.wait("update", lambda v: v[-1]["state"] == "staged", timeout=120)
        y = sup.wait_starts(2)
        y.wait_ready(60)
        y.wait("online", lambda v: v[-1] is True)
        assert sup.exits[0] == updater.EXIT_RESTART
        assert updater.current_link(data) == "0.2.0" and updater.load_state(data).pending == "0.2.0"
        y.send("press 4")
        y.wait("update", lambda v: v[-1]["state"] == "committed", timeout=60)
        device = _reported(store, "committed")
        assert device["fw"] == "0.2.0"
        assert updater.load_state(data).committed == "0.2.0"
        stored = sup.all_stored()
        assert len(stored) == 5
        deadline = time.monotonic() + 30
        while len(_service_events(cfg)) < 5 and time.monotonic() < deadline:
            threading.Event().wait(0.1)
        assert _service_events(cfg) == sorted((e["ledger"], e["seq"]) for e in stored)  # each exactly once
    finally:
        sup.close()


def test_a_y_that_never_gets_online_rolls_back_to_x_by_itself_and_is_reported(tmp_path, mosquitto, service):
    cfg, store, ingest = service
    broken = {"device/runtime.py": ("        self.uplink.start()\n", "        pass  # broken: never connects\n")}
    release = _publish(tmp_path, cfg, store, "0.2.0", broken)
    sup, data = _counter(tmp_path, mosquitto, health_timeout_s=10)
    try:
        _send_update(cfg, ingest, release, sup)
        sup.current.wait("update", lambda v: v[-1]["state"] == "staged", timeout=120)
        back = sup.wait_starts(3, timeout=90)  # X, the broken Y, X again
        back.wait("online", lambda v: v[-1] is True, timeout=30)
        device = _reported(store, "rolled_back")
        assert device["fw"] == "0.1.0" and "MQTT online" in device["last_telemetry"]["update"]["error"]
        state = updater.load_state(data)
        assert state.pending is None and state.committed is None and updater.current_link(data) is None
    finally:
        sup.close()


def test_a_y_that_crashes_at_start_is_rolled_back_by_the_boot_guard(tmp_path, mosquitto, service):
    cfg, store, ingest = service
    broken = {"device/cli.py": ("    cfg = load_config(args.config)\n    claim(cfg.device.data_dir, config=cfg.source, "
                                "command=\"hailong device run\")",
                                "    raise SystemExit(3)  # broken release\n    cfg = None")}
    release = _publish(tmp_path, cfg, store, "0.2.0", broken)
    sup, data = _counter(tmp_path, mosquitto, max_starts=2)
    try:
        _send_update(cfg, ingest, release, sup)
        back = sup.wait_starts(4, timeout=120)  # X, Y crashes twice, then boot goes back to X
        back.wait_ready(30)
        assert sup.exits[:3] == [updater.EXIT_RESTART, 3, 3]
        device = _reported(store, "rolled_back")
        assert "crash loop" in device["last_telemetry"]["update"]["error"]
        assert updater.current_link(data) is None
    finally:
        sup.close()


@pytest.mark.parametrize("case", ["tampered", "wrong signature", "downgrade"])
def test_bad_releases_are_refused_before_anything_switches(tmp_path, mosquitto, service, case):
    cfg, store, ingest = service
    version = "0.0.5" if case == "downgrade" else "0.2.0"
    release = _publish(tmp_path, cfg, store, version, tamper=case == "tampered")
    if case == "wrong signature":
        manifest = (fleet.releases_dir(cfg) / release["id"] / rel.MANIFEST).read_bytes()
        release = {**release, "signature": rel.sign_manifest(manifest, rel.new_key_pair()[0]).decode().strip()}
    sup, data = _counter(tmp_path, mosquitto)
    try:
        _send_update(cfg, ingest, release, sup)
        status = sup.current.wait("update", lambda v: v[-1]["state"] in ("refused", "staged"), timeout=60)[-1]
        expected = {"tampered": "TamperedFile", "wrong signature": "WrongKey", "downgrade": "Downgrade"}[case]
        assert status["state"] == "refused" and expected in status["error"]
        _reported(store, "refused")
        sup.current.send("press 4")
        sup.current.wait("acked")
        assert len(sup.procs) == 1 and updater.current_link(data) is None
        assert updater.load_state(data) == updater.State()
    finally:
        sup.close()


@pytest.mark.parametrize("point", ["downloading", "installing"])
def test_a_sigkill_while_fetching_or_installing_leaves_a_working_counter_that_finishes_later(
        tmp_path, mosquitto, service, point):
    cfg, store, ingest = service
    release = _publish(tmp_path, cfg, store, "0.2.0")
    sup, data = _counter(tmp_path, mosquitto)
    try:
        sup.current.send("press 4")
        _send_update(cfg, ingest, release, sup)
        sup.current.wait("update", lambda v: v[-1]["state"] in (point, "staged"), timeout=60)
        sup.current.proc.kill()  # as the power would, at this step
        again = sup.wait_starts(2)
        again.wait_ready(30)
        again.wait("online", lambda v: v[-1] is True)
        assert updater.current_link(data) is None  # still X: nothing was switched
        again.send("press 3")
        again.wait("acked")
        _send_update(cfg, ingest, release, sup)  # the rollout sends it again
        y = sup.wait_starts(3, timeout=120)
        y.wait_ready(60)
        y.wait("online", lambda v: v[-1] is True)
        y.send("press 2")
        y.wait("update", lambda v: v[-1]["state"] == "committed", timeout=60)
        assert updater.load_state(data).committed == "0.2.0"
        stored = sup.all_stored()
        assert len(stored) == 3
        deadline = time.monotonic() + 30
        while len(_service_events(cfg)) < 3 and time.monotonic() < deadline:
            threading.Event().wait(0.1)
        assert _service_events(cfg) == sorted((e["ledger"], e["seq"]) for e in stored)
    finally:
        sup.close()
