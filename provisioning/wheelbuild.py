"""`hailong provision wheels --out DIR`: every wheel a counter needs, for arm64 and the Python of
each supported Raspberry Pi OS, with a manifest of hashes (provisioning/wheelhouse.py).

hailong's own wheel is built from a checkout (the one this runs from, or --source), or taken
as given (--hailong-wheel). The rest is resolved and built by pip *inside* an arm64 root of the
Debian release with that Python (provisioning/armroot.py): pip there picks the aarch64 wheels
the index has and builds the others (spidev) from source with the root's gcc, exactly as a Pi
would, so no tag or glibc guesswork happens on this x86 machine.
"""
from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from provisioning.armroot import ArmRoot, ArmRootError, cache_dir, root_tarball
from provisioning.wheelhouse import PROJECT, TARGETS, Target, wheel_name_version, write_manifest

EXTRA = "pi"
_SKIP = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".bench",
                               "demo-data", ".pytest_cache")


def source_checkout() -> Path | None:
    """The checkout this package runs from, if it is one (an editable install)."""
    here = Path(__file__).resolve().parent.parent
    return here if (here / "pyproject.toml").is_file() and (here / "provisioning").is_dir() else None


def build_own_wheel(source: Path, out: Path) -> Path:
    """hailong's wheel, built from a copy so the checkout gets no build/ or egg-info."""
    with tempfile.TemporaryDirectory(prefix="hailong-src-") as tmp:
        copy = Path(tmp) / "src"
        shutil.copytree(source, copy, ignore=_SKIP, symlinks=True)
        r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(out),
                            str(copy)], capture_output=True, text=True)
        if r.returncode != 0:
            raise ArmRootError(f"building {PROJECT}'s wheel from {source} failed:\n{r.stdout}{r.stderr}")
    wheels = sorted(out.glob(f"{PROJECT}-*.whl"))
    if not wheels:
        raise ArmRootError(f"no {PROJECT} wheel was built from {source}")
    return wheels[-1]


def requirements_for(own_wheel: Path, target: Target) -> list[str]:
    """The `pi` extra's requirements from the wheel's metadata, less what the image provides."""
    name = own_wheel.name.split("-")[0]
    version = own_wheel.name.split("-")[1]
    with zipfile.ZipFile(own_wheel) as z:
        metadata = z.read(f"{name}-{version}.dist-info/METADATA").decode()
    reqs = []
    for line in metadata.splitlines():
        if line.startswith("Requires-Dist:"):
            spec, _, marker = line.split(":", 1)[1].strip().partition(";")
            if marker.replace(" ", "").replace("'", '"') == f'extra=="{EXTRA}"':
                req_name = spec.split("<")[0].split(">")[0].split("=")[0].split("!")[0].split("~")[0].strip()
                if req_name.lower() not in target.from_system:
                    reqs.append(spec.strip())
    return reqs


def build_target(target: Target, own_wheel: Path, out: Path, log=print) -> list[str]:
    """Every wheel of `target`, into `out`; returns their file names."""
    tarball = root_tarball(target.suite, log=log)
    with ArmRoot(tarball, pip_cache=cache_dir().parent / f"pip-arm64-{target.suite}") as root:
        inbox = root.host_path("/tmp/in")
        inbox.mkdir(parents=True)
        shutil.copy(own_wheel, inbox)
        reqs = requirements_for(own_wheel, target)
        log(f"{target.tag}: resolving and building in the {target.suite} arm64 root (qemu): "
            f"{own_wheel.name} {' '.join(reqs)}")
        r = root.run(["/bin/sh", "-c", 'python3 -m venv /tmp/build && exec /tmp/build/bin/pip wheel '
                      '--wheel-dir /tmp/out "$@"', "sh", f"/tmp/in/{own_wheel.name}", *reqs],
                     capture_output=True, text=True)
        if r.returncode != 0:
            raise ArmRootError(f"{target.tag}: pip wheel in the arm64 root failed:\n{(r.stdout + r.stderr)[-4000:]}")
        names = []
        for wheel in sorted(root.host_path("/tmp/out").glob("*.whl")):
            shutil.copyfile(wheel, out / wheel.name)
            names.append(wheel.name)
    return names


def build_wheelhouse(out: Path, tags: list[str], *, source: Path | None = None,
                     own_wheel: Path | None = None, log=print) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.whl"):
        old.unlink()
    if own_wheel is None:
        source = source or source_checkout()
        if source is None:
            raise ArmRootError("no checkout to build hailong's wheel from: pass --source DIR or --hailong-wheel FILE")
        own_wheel = build_own_wheel(source, out)
    elif own_wheel.parent.resolve() != out.resolve():
        own_wheel = Path(shutil.copy(own_wheel, out))
    version = wheel_name_version(own_wheel.name)[1]
    wheels_by_tag = {tag: build_target(TARGETS[tag], own_wheel, out, log) for tag in tags}
    made = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return write_manifest(out, version, made, wheels_by_tag)


def cmd_wheels(inv, args) -> int:
    tags = [f"cp{p.replace('.', '')}" for p in args.python]
    unknown = [t for t in tags if t not in TARGETS]
    if unknown:
        print(f"hailong provision wheels: unsupported --python {' '.join(args.python)}; "
              f"choose from {', '.join(t.python for t in TARGETS.values())}", file=sys.stderr)
        return 1
    try:
        manifest = build_wheelhouse(Path(args.out), tags, source=Path(args.source) if args.source else None,
                                    own_wheel=Path(args.hailong_wheel) if args.hailong_wheel else None)
    except ArmRootError as e:
        print(f"hailong provision wheels: error: {e}", file=sys.stderr)
        return 1
    for tag, target in manifest["targets"].items():
        extra = f"; the image must have {', '.join(target['system_packages'])}" if target["system_packages"] else ""
        print(f"{tag} ({target['os']}): {len(target['wheels'])} wheels{extra}")
    print(f"wheelhouse: {args.out} ({len(manifest['files'])} files, manifest.json with sha256 hashes); "
          f"put it on a card with `hailong provision boot write BOOTFS --device ID --wheels {args.out}`")
    return 0


def add_parser(areas, common) -> None:
    w = areas.add_parser("wheels", parents=[common], help="build the offline wheelhouse for arm64 counters")
    w.add_argument("--out", required=True, metavar="DIR")
    w.add_argument("--python", nargs="+", default=[t.python for t in TARGETS.values()], metavar="X.Y",
                   help="Python versions (default: " + ", ".join(f"{t.python} = {t.os}" for t in TARGETS.values()) + ")")
    w.add_argument("--source", metavar="DIR", help="hailong checkout to build its wheel from (default: this one)")
    w.add_argument("--hailong-wheel", metavar="FILE", help="use this hailong wheel instead of building one")
    w.set_defaults(func=cmd_wheels, needs_inventory=False)
