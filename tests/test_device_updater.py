"""Fleet updates on the counter: boot decisions, health, the switch, downloads that resume, installs."""
from __future__ import annotations

import http.server
import os
import platform
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from common import release as rel
from device import releases, updater
from device.config import config_from_dict
from device.update_agent import Updates
from device.updater import Health, State, plan_boot
from protocol import ProtocolError
from protocol.messages import validate_command
from tests.release_support import make_release, tiny_wheel

PY = f"{sys.version_info.major}.{sys.version_info.minor}"
ARCH = platform.machine()


# --- boot decisions (pure) ----------------------------------------------------------------------

def test_a_fresh_counter_runs_the_factory_install():
    plan = plan_boot(State(), frozenset(), 3)
    assert plan.run is None and plan.state == State()


def test_a_pending_version_gets_its_starts_then_goes_back():
    state = updater.switch_to(State(committed="0.1.0"), "0.2.0")
    installed = frozenset({"0.1.0", "0.2.0"})
    for start in (1, 2, 3):
        plan = plan_boot(state, installed, 3)
        assert (plan.run, plan.state.starts) == ("0.2.0", start)
        state = plan.state
    plan = plan_boot(state, installed, 3)
    assert plan.run == "0.1.0" and plan.state.pending is None
    assert plan.state.outcome["state"] == "rolled_back" and "crash loop" in plan.state.outcome["error"]


def test_an_incomplete_pending_version_is_never_run():
    plan = plan_boot(updater.switch_to(State(committed=None), "0.2.0"), frozenset(), 3)
    assert plan.run is None and plan.state.outcome["version"] == "0.2.0"


def test_a_missing_committed_release_falls_back_to_the_factory_install():
    plan = plan_boot(State(committed="0.2.0"), frozenset(), 3)
    assert plan.run is None and plan.state.committed is None


def test_commit_and_roll_back():
    pending = updater.switch_to(State(committed="0.1.0"), "0.2.0")
    assert updater.commit(pending) == State("0.2.0", None, 0, {"version": "0.2.0", "state": "committed",
                                                                "error": None})
    back = updater.roll_back(pending, "no")
    assert back.committed == "0.1.0" and back.pending is None and back.outcome["error"] == "no"


def test_health_needs_ledger_online_and_an_acked_event_of_this_version():
    h = Health(started=0.0, timeout_s=100, quiet_s=50)
    h.ledger_ok = True
    h.online(True, 1.0)
    h.stored(7)
    h.acked_seqs([5, 6])  # the old version's backlog proves nothing
    assert h.verdict(60) is None
    h.acked_seqs([7])
    assert h.verdict(60) == "commit"


def test_a_quiet_counter_is_healthy_after_being_online_a_while_and_a_dead_one_is_not():
    h = Health(started=0.0, timeout_s=100, quiet_s=50)
    h.ledger_ok = True
    h.online(True, 10.0)
    assert h.verdict(59) is None and h.verdict(60) == "commit"
    never = Health(started=0.0, timeout_s=100, quiet_s=50, ledger_ok=True)
    assert never.verdict(99) is None and never.verdict(100) == "rollback"
    assert "MQTT online" in never.why_not()


def test_the_state_file_round_trips_and_a_rotten_one_means_factory(tmp_path):
    state = State("0.1.0", "0.2.0", 2, None)
    updater.save_state(tmp_path, state)
    assert updater.load_state(tmp_path) == state
    (tmp_path / updater.STATE_FILE).write_bytes(b"\x00garbage")
    assert updater.load_state(tmp_path).committed is None


def test_the_current_link_is_replaced_never_removed_first(tmp_path, monkeypatch):
    updater.point_current(tmp_path, "0.1.0")
    seen = []
    real_replace = os.replace

    def spy(src, dst):
        seen.append(os.readlink(dst))  # the old link is still there at the moment of the swap
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    updater.point_current(tmp_path, "0.2.0")
    assert seen == ["0.1.0"] and updater.current_link(tmp_path) == "0.2.0"
    updater.point_current(tmp_path, None)
    assert updater.current_link(tmp_path) is None


def test_an_old_counter_rejects_an_update_command_as_malformed_and_goes_on(monkeypatch):
    """What a counter without updates does: its validate_command has no "update", the runtime catches
    ProtocolError for any cmd payload and logs it (device/runtime.py, _message)."""
    import protocol.messages as m

    monkeypatch.setattr(m, "COMMANDS", ("display", "ticket", "officer", "identify"))
    with pytest.raises(ProtocolError, match="unknown command"):
        validate_command({"cmd": "update", "version": "1", "url": "http://x/", "signature": "s"})


# --- the running counter's agent, with the fetch and install faked --------------------------------

KEYS = rel.new_key_pair()


def _cfg(data_dir: Path, with_key: bool = True):
    update = {"health_timeout_s": 60, "quiet_s": 30}
    if with_key:
        update["public_key"] = rel.key_text(KEYS[1]).decode().strip()
    return config_from_dict({
        "device": {"id": "dev-1", "site": "s", "counter": "3", "data_dir": str(data_dir)},
        "mqtt": {"host": "127.0.0.1", "password": "pw"},
        "update": update,
    })


def _signed(tmp_path: Path, version: str, **kw) -> tuple[bytes, str]:
    folder = tmp_path / f"src-{version}"
    make_release(folder, version, KEYS[0], [tiny_wheel(folder / "in", "hailong", version)],
                 python=kw.get("python", PY), arch=ARCH)
    return (folder / rel.MANIFEST).read_bytes(), (folder / rel.SIGNATURE).read_text().strip()


class Fakes:
    def __init__(self, manifest: bytes):
        self.manifest, self.fetched, self.installed = manifest, [], []

    def agent(self, cfg, running: str, now: float = 0.0) -> Updates:
        return Updates(cfg, running=running, now=now, fetch=self.fetch, install=self.install,
                       fetch_manifest=lambda url, **kw: self.manifest, target=lambda: (PY, ARCH))

    def fetch(self, folder, url, manifest, **kw):
        self.fetched.append(manifest["version"])

    def install(self, folder, manifest):
        self.installed.append(manifest["version"])
        (folder / updater.COMPLETE).write_text(manifest["version"])


def _offer(agent: Updates, version: str, signature: str, **kw) -> dict:
    agent.offer({"cmd": "update", "version": version, "url": "http://svc/r/", "signature": signature, **kw})
    agent._job.join(10)
    return agent.status


def test_staged_then_switched_only_when_idle_then_committed_by_the_new_version(tmp_path):
    data = tmp_path / "data"
    manifest, sig = _signed(tmp_path, "0.2.0")
    fakes = Fakes(manifest)
    x = fakes.agent(_cfg(data), "0.1.0")
    assert _offer(x, "0.2.0", sig)["state"] == "staged"
    assert x.tick(1.0, idle=False) is None and updater.current_link(data) is None
    assert x.tick(2.0, idle=True) == "restart"
    assert updater.load_state(data).pending == "0.2.0" and updater.current_link(data) == "0.2.0"

    plan = plan_boot(updater.load_state(data), updater.installed_versions(data), 3)
    updater.save_state(data, plan.state)
    y = fakes.agent(_cfg(data), "0.2.0", now=100.0)
    assert y.telemetry()["state"] == "pending"
    y.online(True, 101.0)
    y.stored(1)
    y.acked([1])
    assert y.tick(102.0, idle=True) is None
    assert updater.load_state(data) == State("0.2.0", None, 0, {"version": "0.2.0", "state": "committed",
                                                                "error": None})
    assert y.telemetry()["state"] == "committed"


def test_a_new_version_that_never_gets_online_switches_back_by_itself(tmp_path):
    data = tmp_path / "data"
    updater.save_state(data, updater.switch_to(State(committed="0.1.0"), "0.2.0"))
    updater.point_current(data, "0.2.0")
    y = Fakes(b"").agent(_cfg(data), "0.2.0", now=0.0)
    assert y.tick(59.0, idle=True) is None
    assert y.tick(60.0, idle=False) == "restart"  # going back does not wait for idle: this version is sick
    state = updater.load_state(data)
    assert state.committed == "0.1.0" and state.pending is None and state.outcome["state"] == "rolled_back"
    assert updater.current_link(data) == "0.1.0"


@pytest.mark.parametrize("case,error", [
    ("tampered", rel.BadSignature), ("other key", rel.WrongKey), ("downgrade", rel.Downgrade),
    ("wrong python", rel.WrongTarget), ("name mismatch", rel.BadManifest), ("no key", rel.WrongKey),
])
def test_a_bad_release_is_refused_before_anything_is_fetched_or_switched(tmp_path, case, error):
    data = tmp_path / "data"
    version = "0.0.9" if case == "downgrade" else "0.2.0"
    manifest, sig = _signed(tmp_path, version, python="3.99" if case == "wrong python" else PY)
    if case == "tampered":
        manifest = manifest.replace(b'"size": ', b'"size": 1')
    if case == "other key":
        sig = rel.sign_manifest(manifest, rel.new_key_pair()[0]).decode().strip()
    cfg = _cfg(data, with_key=False) if case == "no key" else _cfg(data)
    fakes = Fakes(manifest)
    agent = fakes.agent(cfg, "0.1.0")
    status = _offer(agent, "0.3.0" if case == "name mismatch" else version, sig)
    assert status["state"] == "refused" and error.__name__ in status["error"]
    assert fakes.fetched == [] and agent.tick(1.0, idle=True) is None
    assert updater.current_link(data) is None and updater.load_state(data) == State()


def test_a_version_this_counter_rolled_back_from_is_not_tried_again(tmp_path):
    data = tmp_path / "data"
    updater.save_state(data, updater.roll_back(updater.switch_to(State(), "0.2.0"), "crash loop"))
    manifest, sig = _signed(tmp_path, "0.2.0")
    fakes = Fakes(manifest)
    agent = fakes.agent(_cfg(data), "0.1.0")
    agent.offer({"cmd": "update", "version": "0.2.0", "url": "http://svc/r/", "signature": sig})
    assert agent.status["state"] == "refused" and "rolled back" in agent.status["error"]
    assert agent._job is None and fakes.fetched == []


def test_a_failed_install_reports_pip_s_output_in_a_form_telemetry_can_carry(tmp_path):
    from protocol.messages import make_telemetry

    manifest, sig = _signed(tmp_path, "0.2.0")
    fakes = Fakes(manifest)

    def broken(folder, manifest):
        raise releases.FetchError("pip install failed (1): ERROR: line one\n\tline two\x1b[0m" + "x" * 5000)

    fakes.install = broken
    agent = fakes.agent(_cfg(tmp_path / "data"), "0.1.0")
    status = _offer(agent, "0.2.0", sig)
    assert status["state"] == "failed" and "line one line two" in status["error"]
    make_telemetry(uptime_s=1, backlog=0, clock_ok=True, fw="0.1.0", disk_free_mb=1, cpu_temp_c=None, ts=1,
                   ledger="0123456789abcdef", update=agent.telemetry())


def test_an_explicit_downgrade_is_installed(tmp_path):
    manifest, sig = _signed(tmp_path, "0.0.9")
    agent = Fakes(manifest).agent(_cfg(tmp_path / "data"), "0.1.0")
    assert _offer(agent, "0.0.9", sig, allow_downgrade=True)["state"] == "staged"


# --- real downloads (resumed) and a real install ------------------------------------------------

class _Flaky(http.server.SimpleHTTPRequestHandler):
    """Serves a folder with Range support; the first answer of each file breaks off half-way."""

    broke: set = set()
    ranges: list = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        path = Path(self.translate_path(self.path))
        data = path.read_bytes() if path.is_file() else None
        if data is None:
            self.send_error(404)
            return
        start = 0
        if self.headers.get("Range"):
            start = int(self.headers["Range"].split("=")[1].rstrip("-"))
            self.ranges.append((path.name, start))
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        if path.suffix == ".whl" and path.name not in self.broke:
            self.broke.add(path.name)
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.connection.shutdown(2)  # the power of the router went out
            return
        self.wfile.write(data[start:])


@pytest.fixture
def served(tmp_path):
    folder = tmp_path / "served"
    wheel = tiny_wheel(tmp_path / "in", "hailong", "0.2.0",
                       {"hailong_probe.py": "VERSION = '0.2.0'\n" + "# padding\n" * 4000})
    m = make_release(folder, "0.2.0", KEYS[0], [wheel], python=PY, arch=ARCH)
    _Flaky.broke, _Flaky.ranges = set(), []
    handler = lambda *a, **kw: _Flaky(*a, directory=str(folder), **kw)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", m
    server.shutdown()


def test_an_interrupted_download_resumes_with_range(tmp_path, served):
    url, m = served
    folder = tmp_path / "rel"
    with pytest.raises(releases.FetchError):
        releases.fetch_release(folder, url, m)  # the connection dies half-way
    name = next(iter(m["files"]))
    half = (folder / "wheels" / (name + ".part")).stat().st_size
    assert 0 < half < m["files"][name]["size"]
    releases.fetch_release(folder, url, m)
    assert _Flaky.ranges == [(name, half)]
    rel.check_files(m, folder / "wheels")


def test_install_makes_a_venv_with_the_release_and_marks_it_complete_last(tmp_path, served):
    url, m = served
    folder = tmp_path / "rel"
    for _ in range(2):
        try:
            releases.fetch_release(folder, url, m)
        except releases.FetchError:
            pass
    with pytest.raises(releases.FetchError, match="no `hailong` command"):
        releases.install_release(folder, m)  # a tiny wheel without our console script
    assert not (folder / updater.COMPLETE).exists()
    out = subprocess.run([str(folder / "venv" / "bin" / "python"), "-c",
                          "import hailong_probe; print(hailong_probe.VERSION)"], capture_output=True, text=True)
    assert out.stdout.strip() == "0.2.0"


def test_a_card_that_refuses_the_state_write_keeps_the_counter_on_its_version(tmp_path, monkeypatch):
    data = tmp_path / "data"
    manifest, sig = _signed(tmp_path, "0.2.0")
    agent = Fakes(manifest).agent(_cfg(data), "0.1.0")
    assert _offer(agent, "0.2.0", sig)["state"] == "staged"

    def full(*a):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(updater, "save_state", full)
    assert agent.tick(5.0, idle=True) is None  # no crash, no switch
    assert updater.current_link(data) is None
    monkeypatch.undo()
    assert agent.tick(6.0, idle=True) == "restart"  # the next tick, once the card takes it


def _installed(data: Path, *versions: str) -> None:
    for v in versions:
        (updater.releases_dir(data) / v).mkdir(parents=True, exist_ok=True)
        (updater.releases_dir(data) / v / updater.COMPLETE).write_text(v)


@pytest.mark.parametrize("cut_after", range(3))
@pytest.mark.parametrize("path", ["switch", "rollback", "commit"])
def test_a_power_cut_between_any_two_writes_boots_a_version_that_works(tmp_path, path, cut_after):
    """Each durable write of a switch, a rollback and a commit, cut after any number of them: the next
    boot runs the committed version or the pending one on probation, and the link says the same."""
    data = tmp_path / "data"
    _installed(data, "0.1.0", "0.2.0")
    base = State(committed="0.1.0") if path == "switch" else updater.switch_to(State(committed="0.1.0"), "0.2.0")
    updater.save_state(data, base)
    updater.point_current(data, "0.1.0" if path == "switch" else "0.2.0")
    writes = {
        "switch": [lambda: updater.save_state(data, updater.switch_to(base, "0.2.0")),
                   lambda: updater.point_current(data, "0.2.0")],
        "rollback": [lambda: updater.save_state(data, updater.roll_back(base, "sick")),
                     lambda: updater.point_current(data, "0.1.0")],
        "commit": [lambda: updater.save_state(data, updater.commit(base))],
    }[path]
    for write in writes[:cut_after]:
        write()
    plan = updater.prepare_boot(data, max_starts=3)
    state = updater.load_state(data)
    assert plan.run in ("0.1.0", "0.2.0") and updater.current_link(data) == plan.run
    assert plan.run == state.committed or (plan.run == state.pending and state.starts >= 1)
