"""Tiny wheels and signed releases for the fleet-update tests (no build backend, no network)."""
from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path

from common import release as rel


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def tiny_wheel(out: Path, name: str, version: str, files: dict[str, str] | None = None) -> Path:
    """A valid pure-Python wheel `name`-`version` holding `files` ({path in site-packages: text})."""
    dist = f"{name.replace('-', '_')}-{version}.dist-info"
    contents = {path: text.encode() for path, text in (files or {f"{name.replace('-', '_')}_tiny.py": ""}).items()}
    contents[f"{dist}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
    contents[f"{dist}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: hailong-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    record = [_record_line(p, d) for p, d in contents.items()] + [f"{dist}/RECORD,,"]
    contents[f"{dist}/RECORD"] = ("\n".join(record) + "\n").encode()
    path = Path(out) / f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
    Path(out).mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as z:
        for p, d in contents.items():
            z.writestr(p, d)
    return path


def make_release(folder: Path, version: str, private_key: bytes, wheels: list[Path], *,
                 python: str, arch: str, venv_options: list[str] = ()) -> dict:
    """A signed release folder of `wheels`."""
    from provisioning.release import build_release

    m = build_release(Path(folder), python=python, arch=arch, wheels=wheels, version=version,
                      venv_options=list(venv_options), made="2026-01-01T00:00:00Z")
    (Path(folder) / rel.SIGNATURE).write_bytes(rel.sign_manifest((Path(folder) / rel.MANIFEST).read_bytes(),
                                                                 private_key))
    return m


PACKAGES = ("protocol", "common", "device", "broker", "provisioning", "hailong")


def hailong_wheel(out: Path, version: str, patches: dict[str, tuple[str, str]] | None = None) -> Path:
    """This checkout's code as a hailong `version` wheel, with `patches` ({path: (old, new)}) applied:
    a real release of the firmware, made in a fraction of a second without a build backend."""
    from tests.support import ROOT

    patches = {"device/__init__.py": ('__version__ = "0.1.0"', f'__version__ = "{version}"'), **(patches or {})}
    files = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                rel_path = path.relative_to(ROOT).as_posix()
                files[rel_path] = path.read_text("utf-8") if path.suffix in (".py", ".sh", ".service", ".html",
                                                                             ".css", ".js", ".txt") else None
    for rel_path, (old, new) in patches.items():
        assert old in files[rel_path], (rel_path, old)
        files[rel_path] = files[rel_path].replace(old, new, 1)
    binary = {p for p, text in files.items() if text is None}
    text_files = {p: t for p, t in files.items() if t is not None}
    dist = f"hailong-{version}.dist-info"
    text_files[f"{dist}/entry_points.txt"] = "[console_scripts]\nhailong = hailong.cli:main\n"
    wheel = tiny_wheel(out, "hailong", version, text_files)
    if binary:
        _add_binary(wheel, {p: (ROOT / p).read_bytes() for p in binary}, dist)
    return wheel


def _add_binary(wheel: Path, blobs: dict[str, bytes], dist: str) -> None:
    with zipfile.ZipFile(wheel) as z:
        entries = {n: z.read(n) for n in z.namelist()}
    entries.update(blobs)
    record = [_record_line(n, d) for n, d in entries.items() if n != f"{dist}/RECORD"] + [f"{dist}/RECORD,,"]
    entries[f"{dist}/RECORD"] = ("\n".join(record) + "\n").encode()
    with zipfile.ZipFile(wheel, "w") as z:
        for n, d in entries.items():
            z.writestr(n, d)


def outer_env_wheel(out: Path) -> Path:
    """A wheel whose .pth puts this test venv's site-packages at the end of a release venv's path: the
    release's dependencies (paho, gpiozero, cryptography ...) without installing them again. A plain path
    line, so the editable hailong of this venv (a .pth of its own there) is not brought along."""
    import sysconfig

    return tiny_wheel(out, "hailong-testenv", "1.0", {"hailong_testenv.pth": sysconfig.get_paths()["purelib"] + "\n"})
