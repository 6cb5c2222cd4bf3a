"""firstboot.sh on this machine against a scratch root (HAILONG_PREFIX), as the test's own user:
a fault in any step leaves no secret on the card and the next boot finishes the job; the card
is written from a wheel install; `boot write` checks everything before writing anything."""
from __future__ import annotations

import json
import os
import grp
import pwd
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from provisioning.wheelhouse import TARGETS, write_manifest
from provisioning.cli import main as provision
from tests.firstboot_support import (SECRETS, fake_bootfs, interpreter, inventory, own_wheel, provisioned_card, real,
                                     run_firstboot, secrets_left, stand_ins, status)

ME = pwd.getpwuid(os.geteuid()).pw_name
TAG = f"cp{sys.version_info[0]}{sys.version_info[1]}"
# The command each step cannot do without, made to fail to inject a fault into that step.
FAULTS = {"secrets": "cp", "retry": "ln", "user": "usermod", "owner": "chown", "software": "python3",
          "unit": "systemctl"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    return own_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture
def wheelhouse(wheel, tmp_path, monkeypatch) -> Path:
    """A real wheelhouse for this machine's Python holding hailong's wheel alone (the counter's
    dependencies are the arm64 test's business; firstboot installs with --no-deps)."""
    out = tmp_path / "wheels"
    out.mkdir()
    (out / wheel.name).write_bytes(wheel.read_bytes())
    if TAG not in TARGETS:
        monkeypatch.setitem(TARGETS, TAG, TARGETS["cp311"].__class__(TAG, "this machine", sys.version[:4], "-"))
    write_manifest(out, "0.1.0", "2026-01-01T00:00:00Z", {TAG: [wheel.name]})
    return out


def _group(name: str) -> bool:
    try:
        return bool(grp.getgrnam(name))
    except KeyError:
        return False


def environment(tmp_path: Path, boot: Path) -> tuple[dict, Path, Path]:
    faults = tmp_path / "faults"
    stood_in = ("systemctl", "usermod")
    fallible = {name: real(name) for name in FAULTS.values() if name not in (*stood_in, "python3")}
    fallible["python3"] = interpreter()
    bin_dir = stand_ins(tmp_path / "bin", faults, fallible)
    # Stand-ins already; their fault wrappers go in front of them.
    stand_ins(tmp_path / "faultbin", faults, {name: str(bin_dir / name) for name in stood_in})
    prefix = tmp_path / "rootfs"
    env = {"PATH": f"{tmp_path / 'faultbin'}:{bin_dir}:{os.environ['PATH']}", "HOME": str(tmp_path),
           "HAILONG_BOOT": str(boot), "HAILONG_PREFIX": str(prefix), "HAILONG_USER": ME,
           "SYSTEMCTL_LOG": str(tmp_path / "calls.log"), "LANG": "C.UTF-8"}
    return env, faults, prefix


def assert_installed(prefix: Path, bundle: Path) -> None:
    etc = prefix / "etc" / "hailong"
    assert stat.S_IMODE(etc.stat().st_mode) == 0o700 and etc.stat().st_uid == os.geteuid()
    for name in ("device.toml", *SECRETS):
        assert (etc / name).read_bytes() == (bundle / name).read_bytes()
        assert stat.S_IMODE((etc / name).stat().st_mode) == 0o600 and (etc / name).stat().st_uid == os.geteuid()
    assert (prefix / "var" / "lib" / "hailong").stat().st_uid == os.geteuid()
    venv = prefix / "opt" / "hailong" / ".venv"
    assert (venv / "bin" / "hailong").exists()
    for path in (venv.parent, venv, venv / "bin" / "hailong"):  # the service user runs it, root made it
        assert stat.S_IMODE(path.stat().st_mode) & 0o005 == 0o005, path
    units = prefix / "etc" / "systemd" / "system"
    assert (units / "multi-user.target.wants" / "hailong-device.service").is_symlink()
    assert not (units / "multi-user.target.wants" / "hailong-firstboot.service").exists()


@pytest.mark.parametrize("step", list(FAULTS))
def test_a_fault_in_any_step_strands_no_secret_and_the_next_boot_finishes(step, tmp_path, wheelhouse):
    if step == "user" and not any(_group(g) for g in ("gpio", "spi", "dialout")):
        pytest.skip("no gpio, spi or dialout group on this machine: the user step calls no usermod to fail")
    boot, bundle = provisioned_card(tmp_path, wheelhouse)
    env, faults, prefix = environment(tmp_path, boot)
    (faults / FAULTS[step]).touch()

    first = run_firstboot(boot, env)
    assert first.returncode == 1, first.stdout + first.stderr
    assert secrets_left(boot) == []
    text = status(boot)
    assert f'FAILED at step "{step}"' in text and "injected fault" in text
    assert "none (moved to /etc/hailong" in text
    for name in SECRETS:  # not a byte of a secret in what the technician reads
        assert (bundle / name).read_text().strip() not in text
    if step != "secrets":  # the retry unit is the second step
        wants = prefix / "etc" / "systemd" / "system" / "multi-user.target.wants"
        assert step == "retry" or (wants / "hailong-firstboot.service").is_symlink()

    (faults / FAULTS[step]).unlink()
    second = run_firstboot(boot, env)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "Result:  DONE" in status(boot)
    assert_installed(prefix, bundle)
    # A third boot (the retry unit is gone, but say firstrun ran again) changes nothing.
    assert run_firstboot(boot, env).returncode == 0


def test_first_boot_without_a_fault_logs_each_step(tmp_path, wheelhouse):
    boot, bundle = provisioned_card(tmp_path, wheelhouse)
    env, _, prefix = environment(tmp_path, boot)
    r = run_firstboot(boot, env)
    assert r.returncode == 0, r.stdout + r.stderr
    for step in FAULTS:
        assert f"hailong firstboot: step {step} done" in r.stdout
    assert_installed(prefix, bundle)
    assert secrets_left(boot) == [] and not (boot / "hailong" / "device.toml").exists()
    calls = (tmp_path / "calls.log").read_text().splitlines()
    assert [c for c in calls if c.startswith("systemctl")] == [f"systemctl --root={prefix} enable hailong-device.service"]


def test_a_new_bundle_on_the_card_is_installed_again(tmp_path, wheelhouse):
    boot, bundle = provisioned_card(tmp_path, wheelhouse)
    env, _, prefix = environment(tmp_path, boot)
    assert run_firstboot(boot, env).returncode == 0
    (boot / "hailong" / "mqtt-password").write_text("rotated\n")  # `boot write` after a rotation
    assert run_firstboot(boot, env).returncode == 0
    assert (prefix / "etc" / "hailong" / "mqtt-password").read_text() == "rotated\n"
    assert secrets_left(boot) == []


def test_a_tampered_wheelhouse_writes_nothing(tmp_path, wheelhouse, capsys):
    inv = inventory(tmp_path)
    wheel = next(wheelhouse.glob("*.whl"))
    wheel.write_bytes(wheel.read_bytes() + b"x")
    card = fake_bootfs(tmp_path / "bootfs")
    assert provision(["--inventory", str(inv), "boot", "write", str(card), "--device", "hl-hp-c1",
                      "--wheels", str(wheelhouse)]) == 1
    assert f"{wheel.name}: sha256 differs from manifest.json" in capsys.readouterr().err
    assert sorted(p.name for p in card.iterdir()) == ["cmdline.txt", "config.txt"]
    assert "firstrun" not in (card / "cmdline.txt").read_text() and "spi" not in (card / "config.txt").read_text()


def test_boot_write_from_a_wheel_install(tmp_path, wheel, wheelhouse):
    """Everything `boot write` puts on the card comes from inside the installed package."""
    venv = tmp_path / "venv"
    subprocess.run([interpreter(), "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    subprocess.run([interpreter(), "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--quiet",
                    "--no-deps", "--no-index", str(wheel)], check=True, timeout=300)
    site = next((venv / "lib").glob("python3*/site-packages"))
    # The provision extra's libraries from the suite's own environment, behind the wheel's code.
    deps = next(Path(sys.prefix, "lib").glob("python3*/site-packages"))
    (site / "zz-test-deps.pth").write_text(f"{deps}\n")
    hailong = str(venv / "bin" / "hailong")
    inv = str(tmp_path / "inv")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

    def cli(*args):
        r = subprocess.run([hailong, "provision", "--inventory", inv, *args], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        return r.stdout

    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import provisioning; print(provisioning.__file__)"],
                           cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(site))
    cli("site", "add", "hp", "--broker-host", "127.0.0.1")
    cli("device", "add", "--site", "hp", "--counter", "1")
    boot = fake_bootfs(tmp_path / "bootfs")
    out = cli("boot", "write", str(boot), "--device", "hl-hp-c1", "--wheels", str(wheelhouse))
    assert "1 wheels in wheels/" in out
    data = site / "provisioning" / "data"
    for name in ("firstboot.sh", "hailong-device.service", "hailong-firstboot.service"):
        assert (boot / "hailong" / name).read_bytes() == (data / name).read_bytes()
    assert (boot / "firstrun.sh").read_bytes() == (data / "firstrun.sh").read_bytes()
    manifest = json.loads((boot / "hailong" / "wheels" / "manifest.json").read_text())
    assert list(manifest["files"]) == [wheel.name]
