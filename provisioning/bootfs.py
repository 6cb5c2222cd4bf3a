"""Prepare a freshly flashed Raspberry Pi OS boot partition for one counter.

Writes BOOTFS/hailong/ (the device's bundle, the systemd units, firstboot.sh and, with
`wheels`, the offline wheelhouse in hailong/wheels/), ensures `dtparam=spi=on` and
`enable_uart=1` under an `[all]` section of config.txt, and hooks firstboot.sh into the first
boot the way Raspberry Pi OS supports it: cmdline.txt's `systemd.run=/boot/firmware/firstrun.sh`
(what Raspberry Pi Imager's customisation uses). If Imager already wrote a firstrun.sh, a call
to ours is inserted before its clean-up lines instead of replacing it.

Everything is checked before anything is written (the bundle, the wheelhouse's hashes, the
card's files, the free space), and cmdline.txt is written last, so a card is either left as
it was or hooked only once all it needs is on it. Every step is idempotent. The scripts and
units come from provisioning/data/ inside the installed package.
"""
from __future__ import annotations

import os
import shutil
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from common.configschema import Schema
from common.device_file import ARRAY_SECTIONS, SCHEMA, SECTIONS
from common.fsutil import atomic_write, fsync_dir
from provisioning import bundle as bundle_files
from provisioning.wheelhouse import WheelhouseError, check_wheelhouse, wheelhouse_files

BOOT_MOUNT = "/boot/firmware"  # where Bookworm and Trixie mount the boot partition
DIR = "hailong"
WHEELS = "wheels"
FIRSTBOOT = "firstboot.sh"
FIRSTRUN = "firstrun.sh"
STATUS = "firstboot-status.txt"
UNIT = "hailong-device.service"
RETRY_UNIT = "hailong-firstboot.service"
MARKER = "# hailong: install the counter software's bundle"
CONFIG_LINES = ("dtparam=spi=on", "enable_uart=1")
CMDLINE_ARGS = (f"systemd.run={BOOT_MOUNT}/{FIRSTRUN}", "systemd.run_success_action=reboot",
                "systemd.unit=kernel-command-line.target")
# Onto the card's hailong/ folder, from the package: (file name, mode).
RESOURCES = ((FIRSTBOOT, 0o755), (UNIT, 0o644), (RETRY_UNIT, 0o644))
REQUIRED = (bundle_files.CONFIG, bundle_files.PASSWORD, bundle_files.KEY)


class BootfsError(Exception):
    pass


def resource(name: str) -> bytes:
    """A file of provisioning/data/ in the installed package (wheel or checkout)."""
    try:
        return (resources.files("provisioning") / "data" / name).read_bytes()
    except OSError as e:
        raise BootfsError(f"the installed hailong package lacks provisioning/data/{name} ({e}); reinstall it") from None


# --- what each boot-partition file becomes (None: already right) -----------------------------

def config_txt_update(text: str) -> str | None:
    """Add the missing lines under a trailing `[all]` section; keep every existing line."""
    # Effective only if under [all]: find lines already present in an [all] section.
    section, present = "all", set()
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("[") and s.endswith("]"):
            section = s[1:-1].strip().lower()
        elif section == "all" and s in CONFIG_LINES:
            present.add(s)
    missing = [line for line in CONFIG_LINES if line not in present]
    if not missing:
        return None
    if text and not text.endswith("\n"):
        text += "\n"
    text += "\n# hailong: SPI for the ticket display, UART for the badge reader and serial console\n[all]\n"
    return text + "".join(f"{line}\n" for line in missing)


def cmdline_update(path: Path) -> str | None:
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
    return " ".join(words + added) + "\n" if added else None


def firstrun_update(text: str | None) -> str | None:
    if text is None:
        return resource(FIRSTRUN).decode()
    if MARKER in text:
        return None
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
    return "".join(lines)


# --- checking everything first ------------------------------------------------------------------

def check_bundle(bundle: Path) -> None:
    missing = [name for name in REQUIRED if not (bundle / name).is_file()]
    if missing:
        raise BootfsError(f"bundle {bundle}: missing {', '.join(missing)}")
    schema = Schema(SECTIONS, SCHEMA, lambda problems, source: ValueError(problems), arrays=frozenset(ARRAY_SECTIONS))
    try:
        data = tomllib.loads((bundle / bundle_files.CONFIG).read_text(encoding="utf-8"))
        _, problems = schema.read(data, bundle, bundle / bundle_files.CONFIG)
    except (OSError, UnicodeError, tomllib.TOMLDecodeError, ValueError) as e:
        raise BootfsError(f"bundle {bundle}: device.toml unreadable: {e}") from None
    if problems:
        raise BootfsError(f"bundle {bundle}: device.toml: " + "; ".join(f"{k}: {m}" for k, m in problems))
    ca = data.get("mqtt", {}).get("ca_file")
    if ca and not (bundle / ca).is_file():
        raise BootfsError(f"bundle {bundle}: device.toml names ca_file {ca!r}, which is not in the bundle")


@dataclass
class Plan:
    """Every byte `write_bootfs` will write, worked out before the first write."""

    boot: Path
    files: list[tuple[Path, bytes | Path, int]] = field(default_factory=list)  # dest, content or source, mode
    obsolete: list[Path] = field(default_factory=list)
    hook: list[tuple[Path, str, int, str]] = field(default_factory=list)  # dest, text, mode, what

    def size(self) -> int:
        return sum(len(c) if isinstance(c, bytes) else c.stat().st_size for _, c, _ in self.files)


def plan_bootfs(bootfs: str | Path, bundle_dir: Path, wheels: Path | None = None) -> Plan:
    boot = Path(bootfs)
    if not (boot / "cmdline.txt").is_file():
        raise BootfsError(f"{boot}: no cmdline.txt; pass the mounted boot partition (bootfs)")
    check_bundle(bundle_dir)
    plan = Plan(boot)
    dest = boot / DIR
    for name in (*REQUIRED, bundle_files.CA):
        if (bundle_dir / name).is_file():
            plan.files.append((dest / name, (bundle_dir / name).read_bytes(), 0o600))
    for name, mode in RESOURCES:
        plan.files.append((dest / name, resource(name), mode))
    if wheels is not None:
        try:
            manifest = check_wheelhouse(wheels)
        except WheelhouseError as e:
            raise BootfsError(str(e)) from None
        names = wheelhouse_files(manifest)
        plan.files += [(dest / WHEELS / name, wheels / name, 0o644) for name in names]
        if (dest / WHEELS).is_dir():
            plan.obsolete += [p for p in (dest / WHEELS).iterdir() if p.name not in names]
    # A status left by an earlier first boot would describe another installation.
    plan.obsolete.append(dest / STATUS)
    config = boot / "config.txt"
    text = config_txt_update(config.read_text(encoding="utf-8") if config.exists() else "")
    if text is not None:
        plan.hook.append((config, text, 0o644, "config.txt: " + ", ".join(CONFIG_LINES) + " under [all]"))
    firstrun = boot / FIRSTRUN
    text = firstrun_update(firstrun.read_text(encoding="utf-8") if firstrun.exists() else None)
    if text is not None:
        plan.hook.append((firstrun, text, 0o755, f"{FIRSTRUN}: runs {DIR}/{FIRSTBOOT}"))
    text = cmdline_update(boot / "cmdline.txt")
    if text is not None:
        plan.hook.append((boot / "cmdline.txt", text, 0o644, f"cmdline.txt: {CMDLINE_ARGS[0]}"))
    replaced = sum(p.stat().st_size for p, _, _ in plan.files if p.is_file())
    free = shutil.disk_usage(boot).free
    if plan.size() - replaced > free:
        raise BootfsError(f"{boot}: {plan.size() / 2**20:.1f} MiB to write, {free / 2**20:.1f} MiB free")
    return plan


# --- writing --------------------------------------------------------------------------------

def _copy(src: Path, dest: Path, mode: int) -> None:
    """atomic_write for a file too big to hold in memory twice (a wheel)."""
    tmp = dest.with_name(f".{dest.name}.tmp")
    with open(src, "rb") as r, open(tmp, "wb") as w:
        shutil.copyfileobj(r, w, 1 << 20)
        w.flush()
        os.fsync(w.fileno())
    os.chmod(tmp, mode)
    os.replace(tmp, dest)


def apply(plan: Plan) -> list[str]:
    dest = plan.boot / DIR
    dest.mkdir(mode=0o700, exist_ok=True)
    dest.chmod(0o700)
    for path in plan.obsolete:
        path.unlink(missing_ok=True)
    for path, content, mode in plan.files:
        path.parent.mkdir(exist_ok=True)
        if isinstance(content, bytes):
            atomic_write(path, content, mode=mode)
        else:
            _copy(content, path, mode)
    for directory in {p.parent for p, _, _ in plan.files}:
        fsync_dir(directory)
    wheels = sum(1 for p, _, _ in plan.files if p.parent.name == WHEELS and p.suffix == ".whl")
    changed = [f"{dest}/ (bundle, {UNIT}, {RETRY_UNIT}, {FIRSTBOOT}"
               + (f", {wheels} wheels in {WHEELS}/)" if wheels else ")")]
    # cmdline.txt is last in the hook list: the first boot runs only once everything is there.
    for path, text, mode, what in plan.hook:
        atomic_write(path, text.encode(), mode=mode)
        changed.append(what)
    return changed


def write_bootfs(bootfs: str | Path, bundle_dir: Path, wheels: Path | None = None) -> list[str]:
    """Prepare the boot partition at `bootfs`; return a list of what was changed."""
    return apply(plan_bootfs(bootfs, bundle_dir, wheels))
