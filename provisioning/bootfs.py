"""Prepare a freshly flashed Raspberry Pi OS (Bookworm) boot partition for one counter.

Writes BOOTFS/hailong/ (the device's bundle, the systemd unit and firstboot.sh), ensures
`dtparam=spi=on` and `enable_uart=1` under an `[all]` section of config.txt, and hooks
firstboot.sh into the first boot the way Bookworm supports it: cmdline.txt's
`systemd.run=/boot/firmware/firstrun.sh` (what Raspberry Pi Imager's customisation uses).
If Imager already wrote a firstrun.sh, a call to ours is inserted before its clean-up
lines instead of replacing it. Every step is idempotent.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from provisioning.bundle import copy_bundle
from common.fsutil import atomic_write

BOOT_MOUNT = "/boot/firmware"  # where Bookworm mounts the boot partition
DIR = "hailong"
FIRSTBOOT = "firstboot.sh"
FIRSTRUN = "firstrun.sh"
MARKER = "# hailong: install the counter software's bundle"
CONFIG_LINES = ("dtparam=spi=on", "enable_uart=1")
CMDLINE_ARGS = (f"systemd.run={BOOT_MOUNT}/{FIRSTRUN}", "systemd.run_success_action=reboot",
                "systemd.unit=kernel-command-line.target")
UNIT = Path(__file__).resolve().parent.parent / "deploy" / "hailong-device.service"

FIRSTBOOT_SH = f"""#!/bin/bash
# hailong first boot: install this counter's bundle, written by `hailong provision boot write`.
# Runs once as root from {BOOT_MOUNT}/{FIRSTRUN}; safe to run again.
set -eu
SRC={BOOT_MOUNT}/{DIR}
log() {{ echo "hailong firstboot: $*"; logger -t hailong-firstboot "$*" 2>/dev/null || true; }}

if ! id hailong >/dev/null 2>&1; then
    useradd --system --home-dir /var/lib/hailong --no-create-home --shell /usr/sbin/nologin hailong
    log "created user hailong"
fi
for group in gpio spi dialout; do
    getent group "$group" >/dev/null && usermod -aG "$group" hailong || true
done

install -d -m 0700 -o hailong -g hailong /etc/hailong
for f in device.toml mqtt-password provisioning-key ca.crt; do
    if [ -f "$SRC/$f" ]; then
        install -m 0600 -o hailong -g hailong "$SRC/$f" "/etc/hailong/$f"
    fi
done
install -d -m 0750 -o hailong -g hailong /var/lib/hailong

# The software: already in the image, or wheels copied to $SRC/wheels (no network needed).
if [ ! -x /opt/hailong/.venv/bin/hailong ]; then
    python3 -m venv /opt/hailong/.venv
    if [ -d "$SRC/wheels" ]; then
        /opt/hailong/.venv/bin/pip install --no-index --find-links "$SRC/wheels" 'hailong[pi]'
    else
        /opt/hailong/.venv/bin/pip install 'hailong[pi]' || log "pip install failed: install hailong by hand"
    fi
fi

install -m 0644 "$SRC/hailong-device.service" /etc/systemd/system/hailong-device.service
systemctl daemon-reload
systemctl enable hailong-device.service

# The boot partition is FAT (no permissions): do not leave the secrets on it.
rm -f "$SRC/mqtt-password" "$SRC/provisioning-key"
log "installed; hailong-device.service enabled"
"""

FIRSTRUN_SH = f"""#!/bin/bash
# First-boot hook referenced from cmdline.txt (systemd.run=); written by `hailong provision boot write`.
set +e
{MARKER}
bash {BOOT_MOUNT}/{DIR}/{FIRSTBOOT}
rm -f {BOOT_MOUNT}/{FIRSTRUN}
sed -i 's| systemd.run.*||g' {BOOT_MOUNT}/cmdline.txt
exit 0
"""


class BootfsError(Exception):
    pass


def ensure_config_txt(path: Path) -> bool:
    """Add the missing lines under a trailing `[all]` section; keep every existing line.
    Returns whether the file changed."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    lines = text.splitlines()
    # Effective only if under [all]: find lines already present in an [all] section.
    section, present = "all", set()
    for line in lines:
        s = line.strip()
        if s.startswith("[") and s.endswith("]"):
            section = s[1:-1].strip().lower()
        elif section == "all" and s in CONFIG_LINES:
            present.add(s)
    missing = [line for line in CONFIG_LINES if line not in present]
    if not missing:
        return False
    if text and not text.endswith("\n"):
        text += "\n"
    text += "\n# hailong: SPI for the ticket display, UART for the badge reader and serial console\n[all]\n"
    text += "".join(f"{line}\n" for line in missing)
    atomic_write(path, text.encode(), mode=0o644)
    return True


def ensure_cmdline(path: Path) -> bool:
    if not path.is_file():
        raise BootfsError(f"{path} not found: is this a Raspberry Pi OS boot partition?")
    line = path.read_text(encoding="utf-8").strip()
    if "\n" in line:
        raise BootfsError(f"{path} must be a single line")
    words = line.split()
    run = [w for w in words if w.startswith("systemd.run=")]
    if run and run != [CMDLINE_ARGS[0]]:
        raise BootfsError(f"{path} already runs {run[0]!r} at first boot; call "
                          f"{BOOT_MOUNT}/{DIR}/{FIRSTBOOT} from it by hand")
    added = [a for a in CMDLINE_ARGS if a not in words]
    if not added:
        return False
    atomic_write(path, (" ".join(words + added) + "\n").encode(), mode=0o644)
    return True


def ensure_firstrun(path: Path) -> bool:
    if not path.exists():
        atomic_write(path, FIRSTRUN_SH.encode(), mode=0o755)
        return True
    text = path.read_text(encoding="utf-8")
    if MARKER in text:
        return False
    call = f"{MARKER}\nbash {BOOT_MOUNT}/{DIR}/{FIRSTBOOT}\n"
    lines = text.splitlines(keepends=True)
    # Imager's script ends by deleting itself and its cmdline.txt entry, then `exit 0`:
    # our call goes before the first of those, or at the end.
    for i, line in enumerate(lines):
        s = line.strip()
        if s.startswith(f"rm -f {BOOT_MOUNT}/{FIRSTRUN}") or s.startswith("sed -i 's| systemd.run") or s == "exit 0":
            lines.insert(i, call)
            break
    else:
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        lines.append(call)
    atomic_write(path, "".join(lines).encode(), mode=0o755)
    return True


def write_bootfs(bootfs: str | Path, bundle_dir: Path) -> list[str]:
    """Prepare the boot partition at `bootfs`; return a list of what was changed."""
    boot = Path(bootfs)
    if not (boot / "cmdline.txt").is_file():
        raise BootfsError(f"{boot}: no cmdline.txt; pass the mounted boot partition (bootfs)")
    changed = []
    dest = boot / DIR
    copy_bundle(bundle_dir, dest)
    shutil.copyfile(UNIT, dest / UNIT.name)
    atomic_write(dest / FIRSTBOOT, FIRSTBOOT_SH.encode(), mode=0o755)
    changed.append(f"{dest}/ (bundle, {UNIT.name}, {FIRSTBOOT})")
    if ensure_config_txt(boot / "config.txt"):
        changed.append("config.txt: " + ", ".join(CONFIG_LINES) + " under [all]")
    if ensure_firstrun(boot / FIRSTRUN):
        changed.append(f"{FIRSTRUN}: runs {DIR}/{FIRSTBOOT}")
    if ensure_cmdline(boot / "cmdline.txt"):
        changed.append(f"cmdline.txt: {CMDLINE_ARGS[0]}")
    return changed
