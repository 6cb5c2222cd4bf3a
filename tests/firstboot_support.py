"""What the first-boot tests share with the arm64 test: hailong's own wheel, a fake boot
partition written by the real `boot write`, and stand-ins for the commands that would change
this machine (systemctl, useradd, usermod) or that a test makes fail on purpose."""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

from provisioning.cli import main as provision
from provisioning.wheelbuild import build_own_wheel

ROOT = Path(__file__).resolve().parent.parent
CMDLINE = "console=serial0,115200 console=tty1 root=PARTUUID=abcd-02 rootfstype=ext4 fsck.repair=yes rootwait\n"
SECRETS = ("mqtt-password", "provisioning-key")

# `systemctl` as firstboot.sh uses it, without a running systemd: `enable` links the unit into
# the target of its WantedBy= as systemctl does offline; every call is logged.
SYSTEMCTL = r"""#!/bin/sh
echo "systemctl $*" >> "${SYSTEMCTL_LOG:-/dev/null}"
root=""
verb=""
for a in "$@"; do
    case "$a" in
        --root=*) root=${a#--root=} ;;
        -*) ;;
        *) if [ -z "$verb" ]; then verb=$a; elif [ "$verb" = enable ]; then
               wanted=$(sed -n 's/^WantedBy=//p' "$root/etc/systemd/system/$a")
               [ -n "$wanted" ] || { echo "systemctl stand-in: $a has no WantedBy=" >&2; exit 1; }
               mkdir -p "$root/etc/systemd/system/$wanted.wants"
               ln -sf "/etc/systemd/system/$a" "$root/etc/systemd/system/$wanted.wants/$a"
           fi ;;
    esac
done
exit 0
"""


def own_wheel(out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    return build_own_wheel(ROOT, out)


def fake_bootfs(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "config.txt").write_text("# For more options\ndtparam=audio=on\n")
    (path / "cmdline.txt").write_text(CMDLINE)
    return path


def inventory(tmp: Path, broker_port: int = 1883) -> Path:
    """An inventory with site hp and device hl-hp-c1 (its bundle in INV/bundles/hl-hp-c1)."""
    inv = tmp / "inv"
    assert provision(["--inventory", str(inv), "site", "add", "hp", "--broker-host", "127.0.0.1",
                      "--port", str(broker_port)]) == 0
    assert provision(["--inventory", str(inv), "device", "add", "--site", "hp", "--counter", "1"]) == 0
    return inv


def provisioned_card(tmp: Path, wheels: Path | None, broker_port: int = 1883,
                     boot: Path | None = None) -> tuple[Path, Path]:
    """(boot partition, bundle) of device hl-hp-c1, written by `hailong provision boot write`."""
    inv = inventory(tmp, broker_port)
    boot = fake_bootfs(boot or tmp / "bootfs")
    args = ["--inventory", str(inv), "boot", "write", str(boot), "--device", "hl-hp-c1"]
    assert provision(args + (["--wheels", str(wheels)] if wheels else [])) == 0
    return boot, inv / "bundles" / "hl-hp-c1"


def write_script(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def stand_ins(bin_dir: Path, faults: Path, fallible: dict[str, str]) -> Path:
    """bin_dir with systemctl/useradd/usermod stand-ins, and for each name in `fallible` a
    wrapper of the real command that fails while the file faults/NAME exists."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    faults.mkdir(parents=True, exist_ok=True)
    write_script(bin_dir / "systemctl", SYSTEMCTL)
    for name in ("useradd", "usermod"):
        write_script(bin_dir / name, f'#!/bin/sh\necho "{name} $*" >> "${{SYSTEMCTL_LOG:-/dev/null}}"\n')
    for name, real in fallible.items():
        write_script(bin_dir / name, f'#!/bin/sh\nif [ -e "{faults}/{name}" ]; then\n'
                                     f'    echo "injected fault: {name} $*" >&2\n    exit 1\nfi\n'
                                     f'exec {real} "$@"\n')
    return bin_dir


def status(boot: Path) -> str:
    raw = (boot / "hailong" / "firstboot-status.txt").read_bytes()
    assert b"\r\n" in raw  # readable in any computer's editor
    return raw.decode().replace("\r\n", "\n")


def secrets_left(boot: Path) -> list[str]:
    return [name for name in SECRETS if (boot / "hailong" / name).exists()]


def run_firstboot(boot: Path, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(boot / "hailong" / "firstboot.sh")], env=env, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def real(name: str) -> str:
    found = shutil.which(name, path=os.defpath + ":/usr/sbin:/sbin")
    assert found, name
    return found


def interpreter() -> str:
    """The interpreter running the tests; a venv made from it finds ensurepip."""
    return sys.executable
