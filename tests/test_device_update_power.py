"""Power cuts during a fleet update: the counter's data dir (update.json, releases/) on a powerfs.

Each "start" of the counter is a process (`python -m tests.test_device_update_power ...`) doing what
`hailong device boot` and the running counter's update agent do, with the real code: `prepare_boot`,
then the `Updates` agent with the real download (from a local HTTP server) and the real install (a
venv, pip, the `complete` marker), the switch at an idle tick, and on the next start the health
verdict and the commit. The releases are tiny wheels whose `hailong` command is a probe module.

A dry run measures how many filesystem changes each phase makes (download, install, switch, boot,
health/commit); then, from the same starting disk (release 0.1.0 committed), the power is cut at
seeded change counts inside each phase -- the N-th change from the mount blocks forever, the starts
are SIGKILLed, unsynced state is dropped or torn -- and after the remount: the boot decision names a
release whose venv is there and runs, `current` points at it, and further starts finish the update
to 0.2.0. HAILONG_UPDATE_CUTS sets the cuts per phase (`make soak` runs more), HAILONG_CHAOS_SEED the seed.
"""
from __future__ import annotations

import http.server
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

PY = f"{sys.version_info.major}.{sys.version_info.minor}"
ARCH = platform.machine()
FACTORY = "0.0.1"  # what /opt would hold; never reached here unless a committed release was lost
MAX_STARTS = 4
PHASES = ("download", "install", "switch", "boot", "commit")
CUTS = int(os.environ.get("HAILONG_UPDATE_CUTS", "2"))
SEED = int(os.environ.get("HAILONG_CHAOS_SEED", "2026"))


# --- one start of the counter (runs in its own process, on the powerfs) ------------------------------

def _say(record: dict, step: bool) -> None:
    print(json.dumps(record), flush=True)
    if step:
        sys.stdin.readline()  # the dry run reads the filesystem's change count here


def _cfg(spec: dict):
    from device.config import config_from_dict

    return config_from_dict({
        "device": {"id": "dev-1", "site": "s", "counter": "3", "data_dir": spec["data"]},
        "mqtt": {"host": "127.0.0.1", "password": "pw"},
        "update": {"public_key": spec["key"], "health_timeout_s": 600, "quiet_s": 30, "max_starts": MAX_STARTS},
    })


def start(spec: dict, step: bool) -> int:
    from device import releases, updater
    from device.update_agent import Updates

    data = Path(spec["data"])
    plan = updater.prepare_boot(data, MAX_STARTS)
    running = plan.run or FACTORY
    _say({"booted": running}, step)

    def marked(work, phase):
        def run(*a, **kw):
            work(*a, **kw)
            _say({"phase": phase}, step)
        return run

    agent = Updates(_cfg(spec), running=running, now=0.0, target=lambda: (PY, ARCH),
                    fetch=marked(releases.fetch_release, "download"), install=marked(releases.install_release, "install"))
    if agent.health is not None:
        agent.online(True, 0.0)
        agent.tick(60.0, idle=True)  # online a quiet while: healthy
        _say({"committed": updater.load_state(data).committed}, step)
        return 0
    if running == spec["version"]:
        _say({"done": running}, step)
        return 0
    agent.offer({"cmd": "update", "version": spec["version"], "url": spec["url"], "signature": spec["signature"]})
    if agent._job is not None:
        agent._job.join()
    if agent.status.get("state") != "staged":
        _say({"update": agent.status}, step)
        return 1
    _say({"switched": agent.tick(1.0, idle=True)}, step)
    return updater.EXIT_RESTART


if __name__ == "__main__":
    sys.exit(start(json.loads(sys.argv[1]), step=len(sys.argv) > 2))


# --- the test side -------------------------------------------------------------------------------

from common import release as rel  # noqa: E402
from common.fsutil import fsync_dir  # noqa: E402
from device import updater  # noqa: E402
from tests.powerfs import PowerDisk, fuse_available  # noqa: E402
from tests.release_support import make_release, tiny_wheel  # noqa: E402
from tests.support import ROOT  # noqa: E402

pytestmark = pytest.mark.skipif(fuse_available() is not None, reason=f"no FUSE: {fuse_available()}")
KEYS = rel.new_key_pair()


def _release(out: Path, version: str) -> tuple[Path, str]:
    """A signed release whose `hailong` command is a probe that prints its version."""
    dist = f"hailong-{version}.dist-info"
    probe = f"VERSION = {version!r}\n\ndef main():\n    print(VERSION)\n" + "# padding\n" * 20000
    wheel = tiny_wheel(out / "in", "hailong", version,
                       {"hailong_probe.py": probe,
                        f"{dist}/entry_points.txt": "[console_scripts]\nhailong = hailong_probe:main\n"})
    folder = out / version
    make_release(folder, version, KEYS[0], [wheel], python=PY, arch=ARCH)
    return folder, (folder / rel.SIGNATURE).read_text().strip()


class Counter:
    """Starts of the counter on `disk`, one process each, as systemd would start `device boot`."""

    def __init__(self, disk: PowerDisk, url: str, releases: dict[str, str]):
        self.disk, self.url, self.releases = disk, url, releases
        self.data = disk.mountpoint / "var"

    def spec(self, version: str) -> dict:
        return {"data": str(self.data), "version": version, "url": f"{self.url}{version}/",
                "signature": self.releases[version], "key": rel.key_text(KEYS[1]).decode().strip()}

    def run(self, version: str, step=None, timeout: float = 60) -> list[dict]:
        """One start to its end; `step(record)` after each marker when given (it reads the change count)."""
        argv = [sys.executable, "-m", "tests.test_device_update_power", json.dumps(self.spec(version))]
        proc = subprocess.Popen(argv + (["step"] if step else []), cwd=ROOT, text=True, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        records = []
        for line in proc.stdout:
            records.append(json.loads(line))
            if step:
                step(records[-1])
                proc.stdin.write("\n")
                proc.stdin.flush()
        err = proc.stderr.read()
        assert proc.wait(timeout) in (0, updater.EXIT_RESTART), f"start failed: {records} {err[-2000:]}"
        return records

    def update(self, version: str, max_runs: int = MAX_STARTS) -> None:
        """Starts until `version` is committed (the update finishes after whatever happened before)."""
        for _ in range(max_runs):
            if updater.load_state(self.data).committed == version and updater.load_state(self.data).pending is None:
                return
            self.run(version)
        state = updater.load_state(self.data)
        assert state.committed == version and state.pending is None, f"the update never finished: {state}"

    def cut_at(self, version: str, change: int, rng: random.Random) -> dict:
        """Starts towards `version` until the filesystem's `change`-th change, where the power fails."""
        self.disk.freeze_after(change)
        procs: list[subprocess.Popen] = []

        def starts():
            for _ in range(2):  # the switch, then the new version's start (health and commit)
                argv = [sys.executable, "-m", "tests.test_device_update_power", json.dumps(self.spec(version))]
                p = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)  # pip's processes die with it
                procs.append(p)
                if p.wait() != updater.EXIT_RESTART:
                    break
            self.disk.lines.append({"starts done": True})

        threading.Thread(target=starts, daemon=True).start()
        self.disk.lines.wait_for(lambda items: any("frozen" in r or "starts done" in r for r in items), 120,
                                 "the power cut or the end of the update")
        self.disk.freeze()  # if the starts finished first: the power fails after them
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
        torn = rng.randrange(1 << 30) if rng.random() < 0.5 else None
        answer = self.disk.cut(torn)
        for p in procs:
            p.wait(30)
        self.disk.mount()
        return dict(answer, torn=torn is not None)


def _check_boot(data: Path) -> str:
    """What `device boot` would run now: a complete release whose command runs, and the link says so."""
    plan = updater.prepare_boot(data, MAX_STARTS)
    assert plan.run in ("0.1.0", "0.2.0"), f"boot would run {plan.run or 'the factory install'}: {plan.note}"
    assert updater.current_link(data) == plan.run
    exe = updater.releases_dir(data) / updater.CURRENT / "venv" / "bin" / "hailong"
    out = subprocess.run([str(exe)], capture_output=True, text=True) if exe.exists() else None
    assert out is not None and out.stdout.strip() == plan.run, \
        f"release {plan.run} is marked complete but its command does not run: {out and out.stderr[-500:]}"
    return plan.run


@pytest.fixture
def served(tmp_path):
    folder = tmp_path / "served"
    sigs = {v: _release(folder, v)[1] for v in ("0.1.0", "0.2.0")}
    handler = lambda *a, **kw: _Quiet(*a, directory=str(folder), **kw)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", sigs
    server.shutdown()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def _phases(disk: PowerDisk, counter: Counter) -> dict[str, tuple[int, int]]:
    """Change counts (from the mount) at which each phase of the update to 0.2.0 starts and ends."""
    marks = [("start", disk.stats()["changes"])]

    def step(record):
        name = record.get("phase") or next(iter(record))
        marks.append((name, disk.stats()["changes"]))

    counter.run("0.2.0", step)   # booted, download, install, switched
    counter.run("0.2.0", step)   # booted (the pending start counted), committed
    names = [m[0] for m in marks]
    assert names == ["start", "booted", "download", "install", "switched", "booted", "committed"], names
    n = [m[1] for m in marks]
    return {"download": (n[1], n[2]), "install": (n[2], n[3]), "switch": (n[3], n[4]), "boot": (n[4], n[5]),
            "commit": (n[5], n[6])}


def test_power_cuts_during_an_update_always_leave_a_release_that_runs_and_the_update_finishes(tmp_path, served):
    url, sigs = served
    base = tmp_path / "base"
    disk = PowerDisk(base, tmp_path / "mnt")
    disk.mount()
    try:
        counter = Counter(disk, url, sigs)
        counter.data.mkdir()
        fsync_dir(disk.mountpoint)  # /var/lib/hailong exists before the first start: provisioning made it
        counter.update("0.1.0")  # from the factory install: 0.1.0 installed and committed, durably
        assert _check_boot(counter.data) == "0.1.0"
    finally:
        disk.close()
    dry = PowerDisk(tmp_path / "dry", tmp_path / "mnt")
    shutil.copytree(base, dry.disk)
    dry.mount()
    try:
        phases = _phases(dry, Counter(dry, url, sigs))
    finally:
        dry.close()
    rng = random.Random(SEED)
    log = []
    for phase in PHASES:
        lo, hi = phases[phase]
        for change in sorted(rng.sample(range(lo + 1, hi + 1), min(CUTS, hi - lo))):
            disk = PowerDisk(tmp_path / f"cut-{phase}-{change}", tmp_path / "mnt")
            shutil.copytree(base, disk.disk)
            disk.mount()
            try:
                counter = Counter(disk, url, sigs)
                cut = counter.cut_at("0.2.0", change, rng)
                ran = _check_boot(counter.data)
                counter.update("0.2.0")
                assert _check_boot(counter.data) == "0.2.0"
                log.append((phase, change, ran, cut["torn"], cut["lost_ops"]))
            finally:
                disk.close()
    print(f"\nphases (changes from the mount): {phases}\ncuts (phase, change, booted, torn, unsynced ops lost): {log}")
