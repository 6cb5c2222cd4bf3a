"""`hailong provision release key|build|sign`: signed releases for fleet updates (docs/updates.md).

The release key is made and kept here, on the technician's machine, in the inventory folder
(`release-key`, mode 0600, and `release-key.pub`); the service never sees its private half, so
whoever steals the service's credentials still cannot make a release a counter accepts. Each
bundle written after the key exists carries the public half in device.toml (`update.public_key`).
"""
from __future__ import annotations

import datetime as dt
import json
import shutil
import sys
from pathlib import Path

from common import release as rel
from common.fsutil import atomic_write

PRIVATE = "release-key"
PUBLIC = "release-key.pub"
ARCH = "aarch64"  # every supported Raspberry Pi OS is 64-bit


class ReleaseToolError(Exception):
    pass


def public_key_text(inventory_dir: Path) -> str | None:
    """The base64 public key for bundles, or None before `release key` was run."""
    path = Path(inventory_dir) / PUBLIC
    if not path.is_file():
        return None
    return rel.key_text(rel.read_key(path.read_text("ascii"), str(path))).decode().strip()


def make_key(inventory_dir: Path, force: bool = False) -> Path:
    private, public = Path(inventory_dir) / PRIVATE, Path(inventory_dir) / PUBLIC
    if private.exists() and not force:
        # A new key orphans every counter already holding the old public half.
        raise ReleaseToolError(f"{private} exists: counters trust it; pass --force only to replace it on purpose")
    secret, pub = rel.new_key_pair()
    atomic_write(private, rel.key_text(secret), mode=0o600)
    atomic_write(public, rel.key_text(pub), mode=0o644)
    return public


def _wheelhouse_wheels(wheels: Path, python: str) -> tuple[list[Path], list[str], str]:
    from provisioning.wheelhouse import check_wheelhouse

    manifest = check_wheelhouse(wheels)
    tag = "cp" + python.replace(".", "")
    target = manifest["targets"].get(tag)
    if target is None:
        raise ReleaseToolError(f"{wheels} has no wheels for Python {python} (it has {', '.join(manifest['targets'])})")
    return [wheels / f for f in target["wheels"]], list(target.get("venv_options", [])), manifest["version"]


def build_release(out: Path, *, python: str, arch: str = ARCH, wheelhouse: Path | None = None,
                  wheels: list[Path] = (), version: str | None = None, venv_options: list[str] = (),
                  made: str | None = None) -> dict:
    """Copy the wheels into `out` and write manifest.json (unsigned: `sign_release` next)."""
    files, options = [Path(w) for w in wheels], list(venv_options)
    if wheelhouse is not None:
        more, options, house_version = _wheelhouse_wheels(Path(wheelhouse), python)
        files += more
        version = version or house_version
    if not files:
        raise ReleaseToolError("no wheels: pass --wheels WHEELHOUSE or --wheel FILE")
    if version is None:
        raise ReleaseToolError("no version: pass --version (or build from a wheelhouse)")
    out.mkdir(parents=True, exist_ok=True)
    for old in (*out.glob("*.whl"), out / rel.SIGNATURE):
        old.unlink(missing_ok=True)
    entries = {}
    for src in files:
        dest = out / src.name
        shutil.copyfile(src, dest)
        entries[src.name] = (rel.sha256_file(dest), dest.stat().st_size)
    made = made or dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    try:
        data = rel.make_manifest(version, python, arch, entries, made=made, venv_options=options)
    except rel.ReleaseError as e:
        raise ReleaseToolError(str(e)) from None
    atomic_write(out / rel.MANIFEST, data, mode=0o644)
    return rel.check_manifest(json.loads(data))


def sign_release(folder: Path, key_file: Path) -> dict:
    """Sign folder/manifest.json, then verify the signature and every file as a counter would."""
    try:
        secret = rel.read_key(Path(key_file).read_text("ascii"), str(key_file))
    except OSError as e:
        raise ReleaseToolError(f"cannot read the release key: {e}") from None
    manifest = (folder / rel.MANIFEST).read_bytes()
    signature = rel.sign_manifest(manifest, secret)
    public = Path(key_file).with_name(PUBLIC)
    pub = rel.read_key(public.read_text("ascii"), str(public)) if public.is_file() else None
    m = rel.check_manifest(json.loads(manifest))
    if pub is not None:
        rel.verify_manifest(manifest, signature, pub, running=None, python=m["python"], arch=m["arch"])
    rel.check_files(m, folder)
    atomic_write(folder / rel.SIGNATURE, signature, mode=0o644)
    return m


def cmd_release(inv, args) -> int:
    try:
        if args.cmd == "key":
            path = make_key(inv.dir, force=args.force)
            print(f"release key: {inv.dir / PRIVATE} (keep it secret, back it up offline); public half {path}")
            print("bundles written from now on carry the public key; write the bundles of existing counters again")
        elif args.cmd == "build":
            m = build_release(Path(args.out), python=args.python, arch=args.arch,
                              wheelhouse=Path(args.wheels) if args.wheels else None,
                              wheels=[Path(w) for w in args.wheel], version=args.version)
            print(f"release {m['version']} for Python {m['python']} on {m['arch']}: {len(m['files'])} wheels in "
                  f"{args.out}; sign it with `hailong provision release sign {args.out}`")
        else:
            m = sign_release(Path(args.folder), Path(args.key) if args.key else inv.dir / PRIVATE)
            print(f"signed release {m['version']} ({args.folder}/{rel.SIGNATURE}); publish it with "
                  f"`hailong broker release add {args.folder}`")
    except (rel.ReleaseError, ReleaseToolError, OSError) as e:
        print(f"hailong provision release: error: {e}", file=sys.stderr)
        return 1
    return 0


def add_parser(areas, common) -> None:
    r = areas.add_parser("release", help="signed releases for fleet updates").add_subparsers(dest="cmd", required=True)
    k = r.add_parser("key", parents=[common], help="make the release signing key (once)")
    k.add_argument("--force", action="store_true", help="replace an existing key")
    b = r.add_parser("build", parents=[common], help="a release folder: wheels and manifest.json")
    b.add_argument("--out", required=True, metavar="DIR")
    b.add_argument("--python", required=True, metavar="X.Y", help="the counters' Python (3.11 Bookworm, 3.13 Trixie)")
    b.add_argument("--arch", default=ARCH, help=f"processor architecture (default {ARCH})")
    b.add_argument("--wheels", metavar="DIR", help="offline wheelhouse (`provision wheels --out DIR`)")
    b.add_argument("--wheel", action="append", default=[], metavar="FILE", help="a wheel to add (repeatable)")
    b.add_argument("--version", help="release version (default: the wheelhouse's)")
    s = r.add_parser("sign", parents=[common], help="sign a release folder's manifest")
    s.add_argument("folder")
    s.add_argument("--key", metavar="FILE", help="private key (default INVENTORY/release-key)")
    for p in (k, s):
        p.set_defaults(func=cmd_release)
    b.set_defaults(func=cmd_release, needs_inventory=False)
