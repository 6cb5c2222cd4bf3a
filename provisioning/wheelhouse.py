"""The offline wheelhouse a counter installs from at first boot: wheels, manifest.json, requirements.

    manifest.json             {"format": 1, "project", "version", "made",
                               "targets": {TAG: {"os", "python", "wheels": [file...],
                                                 "system_packages": [...], "venv_options": [...]}},
                               "files": {file: sha256}}
    requirements-TAG.txt      one `name==version --hash=sha256:...` line per wheel of TAG,
                              generated from the manifest; `--require-hashes --no-deps` installs
                              exactly these files and nothing else
    *.whl

TAG is the interpreter tag of the image's python3 (cp311 on Raspberry Pi OS Bookworm, cp313 on
Trixie). What a target cannot get as a wheel comes from the image instead (`system_packages`,
seen through a venv made with `--system-site-packages`); the requirements file repeats both
in comment lines that firstboot.sh reads, so the card needs nothing but the shell to install.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

FORMAT = 1
MANIFEST = "manifest.json"
PROJECT = "hailong"


class WheelhouseError(Exception):
    pass


@dataclass(frozen=True)
class Target:
    """One Raspberry Pi OS release: its Python and what its image must bring."""

    tag: str
    os: str
    python: str
    suite: str  # the Debian release with the same Python, for the arm64 build root
    system_packages: tuple[str, ...] = ()
    # Wheels this target takes from the image (system_packages) instead of the wheelhouse.
    from_system: tuple[str, ...] = ()
    venv_options: tuple[str, ...] = field(default=())


TARGETS = {
    "cp311": Target("cp311", "Raspberry Pi OS 12 (Bookworm), 64-bit", "3.11", "bookworm"),
    # lgpio has no cp313 aarch64 wheel, and its source build needs the lg C library that Debian
    # does not package; Raspberry Pi OS ships both as python3-lgpio.
    "cp313": Target("cp313", "Raspberry Pi OS 13 (Trixie), 64-bit", "3.13", "trixie",
                    system_packages=("python3-lgpio",), from_system=("lgpio",),
                    venv_options=("--system-site-packages",)),
}


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def wheel_name_version(filename: str) -> tuple[str, str]:
    """('paho-mqtt', '2.1.0') from 'paho_mqtt-2.1.0-py3-none-any.whl' (PEP 427 file names)."""
    parts = filename[:-len(".whl")].split("-") if filename.endswith(".whl") else []
    if len(parts) not in (5, 6):
        raise WheelhouseError(f"{filename}: not a wheel file name")
    return parts[0].replace("_", "-").lower(), parts[1]


def requirements_text(manifest: dict, tag: str) -> str:
    target = manifest["targets"][tag]
    lines = [f"# {PROJECT} {manifest['version']} for {target['os']} (Python {target['python']}), "
             f"generated from {MANIFEST}; install with --no-index --require-hashes --no-deps"]
    if target.get("system_packages"):
        lines.append("# system-packages: " + " ".join(target["system_packages"]))
    if target.get("venv_options"):
        lines.append("# venv-options: " + " ".join(target["venv_options"]))
    for filename in sorted(target["wheels"]):
        name, version = wheel_name_version(filename)
        lines.append(f"{name}=={version} --hash=sha256:{manifest['files'][filename]}")
    return "\n".join(lines) + "\n"


def write_manifest(out: Path, version: str, made: str, wheels_by_tag: dict[str, list[str]]) -> dict:
    """manifest.json and the requirements files for the wheels already in `out`."""
    files = sorted({f for names in wheels_by_tag.values() for f in names})
    manifest = {
        "format": FORMAT, "project": PROJECT, "version": version, "made": made,
        "targets": {tag: {"os": TARGETS[tag].os, "python": TARGETS[tag].python, "wheels": sorted(names),
                          "system_packages": list(TARGETS[tag].system_packages),
                          "venv_options": list(TARGETS[tag].venv_options)}
                    for tag, names in sorted(wheels_by_tag.items())},
        "files": {f: sha256_of(out / f) for f in files},
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    for tag in manifest["targets"]:
        (out / f"requirements-{tag}.txt").write_text(requirements_text(manifest, tag), encoding="utf-8")
    return manifest


def load_manifest(wheels: Path) -> dict:
    try:
        manifest = json.loads((wheels / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise WheelhouseError(f"{wheels}: no {MANIFEST}; make the wheelhouse with "
                              "`hailong provision wheels --out DIR`") from None
    except (OSError, ValueError) as e:
        raise WheelhouseError(f"{wheels / MANIFEST}: unreadable: {e}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise WheelhouseError(f"{wheels / MANIFEST}: not a format-{FORMAT} manifest")
    return manifest


def check_wheelhouse(wheels: Path) -> dict:
    """Everything firstboot.sh will rely on, checked now: each file's hash, each target's
    requirements file exactly as the manifest makes it, our own wheel in every target."""
    manifest = load_manifest(wheels)
    problems = []
    try:
        files, targets = dict(manifest["files"]), dict(manifest["targets"])
        for filename, digest in files.items():
            path = wheels / filename
            if Path(filename).name != filename or not filename.endswith(".whl"):
                problems.append(f"{filename}: not a wheel in this folder")
            elif not path.is_file():
                problems.append(f"{filename}: missing")
            elif sha256_of(path) != digest:
                problems.append(f"{filename}: sha256 differs from {MANIFEST}")
        if not targets:
            problems.append("no target in the manifest")
        for tag, target in targets.items():
            unknown = [f for f in target["wheels"] if f not in files]
            if unknown:
                problems.append(f"{tag}: wheels without a hash: {', '.join(unknown)}")
                continue
            if not any(wheel_name_version(f)[0] == PROJECT for f in target["wheels"]):
                problems.append(f"{tag}: no {PROJECT} wheel")
            req = wheels / f"requirements-{tag}.txt"
            if not req.is_file() or req.read_text(encoding="utf-8") != requirements_text(manifest, tag):
                problems.append(f"{req.name}: missing or not what {MANIFEST} says")
    except (KeyError, TypeError, AttributeError) as e:
        raise WheelhouseError(f"{wheels / MANIFEST}: malformed ({type(e).__name__}: {e})") from None
    if problems:
        raise WheelhouseError(f"wheelhouse {wheels}: " + "; ".join(problems))
    return manifest


def wheelhouse_files(manifest: dict) -> list[str]:
    """What goes onto the card, in copy order: the manifest last, so a half-copied card never
    has a manifest whose wheels are not all there."""
    return sorted(manifest["files"]) + [f"requirements-{t}.txt" for t in sorted(manifest["targets"])] + [MANIFEST]
