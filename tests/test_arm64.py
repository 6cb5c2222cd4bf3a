"""From SD card to counter in service, on arm64: a Debian bookworm arm64 root (Raspberry Pi OS
Bookworm's base: Python 3.11) run under qemu-user stands in for the Pi's root file system.

The wheelhouse is built by `provision wheels` (pip resolving and compiling inside the root), the
card is written by `provision boot write` into the root's /boot/firmware, and the root's first
boot (firstrun.sh -> firstboot.sh) runs with its network cut (`unshare --net`) and systemctl
stood in for (no systemd runs in a chroot). Then the installed counter runs as user hailong,
`--simulate`, against Mosquitto on this machine: a press is stored, sent and acked.

Needs root, binfmt_misc, qemu-user-static, debootstrap and zstd (`make system-deps` installs
them when root); skipped with the reason otherwise. The first run builds the root (~4 min,
~150 MB cached in ~/.cache/hailong/arm64-roots), later runs unpack a throw-away copy.
"""
from __future__ import annotations

import stat
import time
from pathlib import Path

import pytest

from provisioning.armroot import ArmRoot, missing_tools, root_tarball
from provisioning.wheelbuild import build_wheelhouse
from tests.firstboot_support import ROOT, SYSTEMCTL, SECRETS, provisioned_card, secrets_left, status, write_script
from tests.support import DeviceProcess, FakeService

# The first run builds the root (~5 min on 2 busy cores) inside the first test's setup.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]
EMULATED = 180.0  # seconds: Python under qemu starts ~10x slower than on the host


@pytest.fixture(scope="module")
def arm64(tmp_path_factory):
    reason = missing_tools()
    if reason:
        pytest.skip(f"no arm64 root on this machine: {reason}")
    started = time.monotonic()
    tarball = root_tarball("bookworm")
    wheels = tmp_path_factory.mktemp("wheelhouse")
    manifest = build_wheelhouse(wheels, ["cp311"], source=ROOT, log=lambda line: None)
    print(f"arm64 root and wheelhouse ready in {time.monotonic() - started:.0f} s")
    return tarball, wheels, manifest


def uid_of(pi: ArmRoot, user: str) -> int:
    for line in pi.host_path("/etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == user:
            return int(fields[2])
    raise AssertionError(f"no user {user} in the root")


def test_the_wheelhouse_has_every_wheel_a_counter_needs(arm64):
    _, wheels, manifest = arm64
    names = {f.split("-")[0].lower() for f in manifest["targets"]["cp311"]["wheels"]}
    assert {"hailong", "paho_mqtt", "gpiozero", "pyserial", "luma_led_matrix", "pillow", "lgpio", "spidev"} <= names
    assert any(f.startswith("spidev-") and f.endswith("_aarch64.whl") for f in manifest["files"])  # built in the root
    assert (wheels / "requirements-cp311.txt").read_text().count("--hash=sha256:") == len(manifest["files"])


def test_sd_card_to_counter_in_service_on_arm64(arm64, tmp_path, mosquitto):
    tarball, wheels, _ = arm64
    with ArmRoot(tarball, workdir=tmp_path / "pi") as pi:
        boot = pi.host_path("/boot/firmware")
        boot.parent.mkdir(parents=True, exist_ok=True)
        boot, bundle = provisioned_card(tmp_path, wheels, broker_port=mosquitto.port, boot=boot)
        write_script(pi.host_path("/usr/local/sbin/systemctl"), SYSTEMCTL)

        # The first boot, as cmdline.txt's systemd.run= starts it, with no network at all.
        r = pi.run(["bash", "/boot/firmware/firstrun.sh"], network=False, capture_output=True, text=True,
                   timeout=900)
        assert r.returncode == 0, r.stdout + r.stderr
        text = status(boot)
        assert "Result:  DONE" in text, text + r.stdout + r.stderr
        assert secrets_left(boot) == [] and not (boot / "hailong" / "device.toml").exists()
        assert not (boot / "firstrun.sh").exists() and "systemd.run" not in (boot / "cmdline.txt").read_text()

        hailong = uid_of(pi, "hailong")
        etc = pi.host_path("/etc/hailong")
        assert etc.stat().st_uid == hailong and stat.S_IMODE(etc.stat().st_mode) == 0o700
        for name in ("device.toml", *SECRETS):
            f = etc / name
            assert f.read_bytes() == (bundle / name).read_bytes()
            assert f.stat().st_uid == hailong and stat.S_IMODE(f.stat().st_mode) == 0o600
        assert pi.host_path("/var/lib/hailong").stat().st_uid == hailong
        wants = pi.host_path("/etc/systemd/system/multi-user.target.wants")
        assert (wants / "hailong-device.service").is_symlink()
        assert not (wants / "hailong-firstboot.service").exists()

        # The counter as the unit runs it (user hailong and its groups), with the network back.
        service = FakeService(mosquitto)
        device = DeviceProcess(None, argv=pi.command(
            ["setpriv", "--reuid=hailong", "--regid=hailong", "--init-groups", "/opt/hailong/.venv/bin/hailong",
             "device", "run", "--simulate", "--config", "/etc/hailong/device.toml"]))
        try:
            device.wait_ready(timeout=EMULATED)
            device.wait("online", lambda v: v[-1] is True, timeout=EMULATED)
            device.send("press 4")
            (stored,) = device.wait("stored", timeout=EMULATED)
            acked = device.wait("acked", timeout=EMULATED)
            assert acked[-1] == [stored["seq"]]
            assert [e["seq"] for e in service.events()] == [stored["seq"]]
            assert stored["device"] == "hl-hp-c1" and stored["score"] == 4
            assert device.quit(timeout=EMULATED) == 0
        finally:
            device.close()
            service.close()
        ledger = pi.host_path("/var/lib/hailong/ledger.db")
        assert ledger.stat().st_uid == hailong


def test_a_fleet_update_installs_switches_and_commits_on_arm64(arm64, tmp_path, mosquitto):
    """docs/updates.md on the Pi's own architecture and Python: the counter installed by the first boot
    (0.1.0, the factory install) verifies a signed 0.2.0 with the aarch64 cryptography wheel, installs it
    offline from the served wheels into its own venv under /var/lib/hailong, switches, and commits."""
    import re
    import shutil

    from broker import fleet
    from common import release as rel
    from device import updater
    from tests.fleet_support import Supervisor, fleet_service
    from tests.release_support import hailong_wheel, make_release

    tarball, wheels, manifest = arm64
    private, public = rel.new_key_pair()
    ours = [f for f in manifest["targets"]["cp311"]["wheels"] if not f.startswith("hailong-")]
    with ArmRoot(tarball, workdir=tmp_path / "pi") as pi:
        boot = pi.host_path("/boot/firmware")
        boot.parent.mkdir(parents=True, exist_ok=True)
        boot, bundle = provisioned_card(tmp_path, wheels, broker_port=mosquitto.port, boot=boot)
        write_script(pi.host_path("/usr/local/sbin/systemctl"), SYSTEMCTL)
        r = pi.run(["bash", "/boot/firmware/firstrun.sh"], network=False, capture_output=True, text=True, timeout=900)
        assert r.returncode == 0 and "Result:  DONE" in status(boot), r.stdout + r.stderr
        toml = pi.host_path("/etc/hailong/device.toml")
        key = rel.key_text(public).decode().strip()
        text = re.sub(r"(?m)^# public_key = .*$", f'public_key = "{key}"', toml.read_text())
        toml.write_text(text.replace("interval_s = 60.0", "interval_s = 2.0").replace("idle_s = 20.0", "idle_s = 1.0"))
        password = (bundle / "mqtt-password").read_text().strip()
        with fleet_service(tmp_path, mosquitto, {"hl-hp-c1": password}) as (cfg, store, ingest):
            folder = tmp_path / "release"
            y = hailong_wheel(tmp_path / "y", "0.2.0")
            make_release(folder, "0.2.0", private, [y, *(wheels / f for f in ours)], python="3.11", arch="aarch64")
            release = fleet.publish_release(store, folder, fleet.releases_dir(cfg), at_ms=1)
            sup = Supervisor(None, argv=pi.command(
                ["setpriv", "--reuid=hailong", "--regid=hailong", "--init-groups", "/opt/hailong/.venv/bin/hailong",
                 "device", "boot", "--simulate", "--config", "/etc/hailong/device.toml"]))
            try:
                x = sup.current
                x.wait_ready(timeout=EMULATED)
                x.wait("online", lambda v: v[-1] is True, timeout=EMULATED)
                command = fleet.update_command(release, fleet.release_url(cfg, release["id"]))
                ingest.publish("hl-hp-c1", "cmd", command)
                try:
                    x.wait("update", timeout=30)
                except AssertionError:
                    ingest.publish("hl-hp-c1", "cmd", command)  # sent before the counter had subscribed
                x.wait("update", lambda v: v[-1]["state"] in ("staged", "refused", "failed"), timeout=900)
                assert x.of("update")[-1]["state"] == "staged", x.of("update")
                new = sup.wait_starts(2, timeout=EMULATED)
                new.wait_ready(timeout=EMULATED)
                new.wait("online", lambda v: v[-1] is True, timeout=EMULATED)
                new.send("press 4")
                new.wait("update", lambda v: v[-1]["state"] == "committed", timeout=EMULATED)
                data = pi.host_path("/var/lib/hailong")
                assert updater.load_state(data).committed == "0.2.0" and updater.current_link(data) == "0.2.0"
                assert (data / "releases" / "0.2.0" / "venv").stat().st_uid == uid_of(pi, "hailong")
            finally:
                sup.close()
                shutil.rmtree(tmp_path / "y", ignore_errors=True)
