"""Fetching and installing one release on the counter (the I/O half of device/updater.py).

Downloads resume where they stopped (HTTP Range into `<file>.part`); a wheel is renamed into place
only once its size and sha256 match the signed manifest, and the manifest is verified before any
wheel is fetched. The venv is made at its final path (venvs cannot be moved) and the `complete`
marker, written last with fsync, is what makes a folder count as installed: an interrupted install
is simply done again.
"""
from __future__ import annotations

import base64
import http.client
import os
import platform
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from common import release as rel
from common.fsutil import atomic_write, fsync_dir
from device.updater import COMPLETE

CHUNK = 1 << 16
TIMEOUT_S = 30.0
MAX_MANIFEST = 1 << 20


class FetchError(Exception):
    """The service or the network failed; the next `update` command tries again from where it stopped."""


def this_target() -> tuple[str, str]:
    return f"{sys.version_info.major}.{sys.version_info.minor}", platform.machine()


def _request(url: str, auth: tuple[str, str] | None, start: int = 0) -> urllib.request.Request:
    req = urllib.request.Request(url)
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    if start:
        req.add_header("Range", f"bytes={start}-")
    return req


def _open(req, context):
    try:
        return urllib.request.urlopen(req, timeout=TIMEOUT_S, context=context)
    except urllib.error.HTTPError as e:
        raise FetchError(f"{req.full_url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        raise FetchError(f"{req.full_url}: {e}") from None


def download(url: str, dest: Path, size: int, *, auth=None, context=None) -> None:
    """`url` into `dest`.part, resuming from what is there; the caller checks and renames it."""
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    if have > size:
        part.unlink()
        have = 0
    if have == size:
        return
    with _open(_request(url, auth, have), context) as resp:
        # 206: the server sent the rest; 200: it ignored Range, so start over.
        mode = "ab" if have and resp.status == 206 else "wb"
        with open(part, mode) as f:
            try:
                while chunk := resp.read(CHUNK):
                    f.write(chunk)
                    if f.tell() > size:
                        break  # more than the signed size: never fill the card with it
            except (OSError, http.client.HTTPException) as e:
                raise FetchError(f"{url}: broken off after {f.tell()} of {size} bytes: {e}") from None
            finally:
                f.flush()
                os.fsync(f.fileno())
            if f.tell() < size:
                raise FetchError(f"{url}: broken off after {f.tell()} of {size} bytes (resumed next time)")


def fetch_manifest(base_url: str, *, auth=None, context=None) -> bytes:
    with _open(_request(base_url.rstrip("/") + "/" + rel.MANIFEST, auth), context) as resp:
        data = resp.read(MAX_MANIFEST + 1)
    if len(data) > MAX_MANIFEST:
        raise rel.BadManifest("manifest larger than 1 MiB")
    return data


def fetch_release(folder: Path, base_url: str, manifest: dict, *, auth=None, context=None) -> None:
    """Every wheel of the verified `manifest` into folder/wheels, each checked against its signed hash."""
    wheels = folder / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    for name, entry in manifest["files"].items():
        dest = wheels / name
        if dest.is_file():
            try:
                rel.check_file(manifest, name, dest)
                continue
            except rel.TamperedFile:
                dest.unlink()
        download(f"{base_url.rstrip('/')}/{name}", dest, entry["size"], auth=auth, context=context)
        part = dest.with_name(name + ".part")
        try:
            rel.check_file(manifest, name, part)
        except rel.TamperedFile:
            part.unlink()  # a bad copy is never resumed from
            raise
        part.replace(dest)


def install_release(folder: Path, manifest: dict, *, python: str = sys.executable) -> None:
    """folder/venv with exactly the release's wheels, offline; then the `complete` marker."""
    (folder / COMPLETE).unlink(missing_ok=True)
    venv = folder / "venv"
    shutil.rmtree(venv, ignore_errors=True)
    rel.check_files(manifest, folder / "wheels")  # again: the card may have changed since the download
    _run([python, "-m", "venv", "--without-pip", *manifest.get("venv_options", []), str(venv)], "venv")
    wheels = [str(folder / "wheels" / name) for name in sorted(manifest["files"])]
    _run([python, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--quiet", "--no-index",
          "--no-deps", "--no-cache-dir", "--disable-pip-version-check", *wheels], "pip install")
    if not (venv / "bin" / "hailong").exists():
        raise FetchError(f"release {manifest['version']} installed no `hailong` command")
    # venv and pip sync nothing: without this a power cut after the marker leaves a `complete` release
    # with no venv, and a committed one has no way back (tests/test_device_update_power.py).
    _sync_tree(venv)
    fsync_dir(folder)
    atomic_write(folder / COMPLETE, manifest["version"].encode() + b"\n", mode=0o640)
    fsync_dir(folder.parent)  # the release's own name in releases/


def _sync_tree(root: Path) -> None:
    """Every file's data and every directory's entries under `root` made durable (symlinks live in
    their directory's entries)."""
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(dirpath, name)
            if os.path.islink(path):
                continue
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(dirpath)


def _run(argv: list[str], what: str) -> None:
    r = subprocess.run(argv, capture_output=True, text=True)
    if r.returncode != 0:
        raise FetchError(f"{what} failed ({r.returncode}): {(r.stdout + r.stderr)[-1500:]}")
