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
