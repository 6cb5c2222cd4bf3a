"""A signed release: the wheels one counter installs, its manifest and the manifest's Ed25519 signature.

    manifest.json   {"format": 1, "kind": "hailong-release", "project", "version", "python", "arch",
                     "venv_options": [...], "made", "files": {wheel: {"sha256", "size"}}}
    manifest.sig    {"format": 1, "key_id", "signature"}  (base64 Ed25519 over SIGNED_PREFIX + manifest bytes)
    *.whl

The signature covers the manifest's exact bytes, so the version, the target Python and architecture
and every file's hash are signed; a wheel is trusted only through its hash in a verified manifest.
The key id (the first 16 hex digits of sha256(public key)) is a hint for the error message only:
verification always uses the counter's own trusted key.

Verification is pure (`verify_manifest` takes bytes, returns the manifest or raises one of the typed
errors below); `check_files` adds the one I/O step, hashing the downloaded files. The key library is
pyca/cryptography (abi3 aarch64 wheels for CPython 3.11 and 3.13, and python3-cryptography in
Raspberry Pi OS), imported only inside the functions that sign or verify.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from pathlib import Path

from common.errors import HailongError

FORMAT = 1
KIND = "hailong-release"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
# Domain separation: a signature over a manifest can never be replayed as a signature over anything else.
SIGNED_PREFIX = b"hailong release manifest v1\n"
VERSION_RE = re.compile(r"\A\d{1,6}(\.\d{1,6}){0,3}\Z")
FILE_RE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.+-]{0,200}\.whl\Z")
_HEX64 = re.compile(r"\A[0-9a-f]{64}\Z")


class ReleaseError(HailongError):
    """A release that must not be installed; nothing has been switched when it is raised."""


class BadManifest(ReleaseError):
    """The manifest or signature file is not in the format above."""


class WrongKey(ReleaseError):
    """Signed with another key than the one this counter trusts."""


class BadSignature(ReleaseError):
    """The signature does not match the manifest (altered manifest, or a forged signature)."""


class TamperedFile(ReleaseError):
    """A file is missing, or its size or sha256 differs from the signed manifest."""


class Downgrade(ReleaseError):
    """Older than (or the same as) the running version, and no downgrade was allowed."""


class WrongTarget(ReleaseError):
    """Built for another Python or another processor architecture."""


def version_key(version: str) -> tuple[int, ...]:
    """(0, 2, 0) from "0.2.0"; BadManifest for anything but 1-4 dot-separated numbers."""
    if not isinstance(version, str) or not VERSION_RE.match(version):
        raise BadManifest(f"version {version!r}: expected numbers separated by dots, e.g. 0.2.0")
    parts = tuple(int(p) for p in version.split("."))
    return parts + (0,) * (4 - len(parts))


def key_id(public_key: bytes) -> str:
    return hashlib.sha256(public_key).hexdigest()[:16]


def read_key(text: str | bytes, what: str = "key") -> bytes:
    """The raw 32 bytes of a key file (base64 on one line, as `provision release key` writes it)."""
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise BadManifest(f"{what}: not an Ed25519 key (base64 of 32 bytes)")
    return raw


def key_text(raw: bytes) -> bytes:
    return base64.b64encode(raw) + b"\n"


def _loads(data: bytes, what: str) -> dict:
    try:
        obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise BadManifest(f"{what}: not JSON: {e}") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise BadManifest(f"{what}: not a format-{FORMAT} object")
    return obj


def check_manifest(manifest: dict) -> dict:
    """The manifest's own shape (does not check the signature)."""
    if manifest.get("kind") != KIND:
        raise BadManifest(f"{MANIFEST}: kind is not {KIND!r}")
    version_key(manifest.get("version"))
    for field in ("python", "arch", "project"):
        if not isinstance(manifest.get(field), str) or not manifest[field]:
            raise BadManifest(f"{MANIFEST}: {field} must be a non-empty string")
    options = manifest.get("venv_options", [])
    if not isinstance(options, list) or any(o not in ("--system-site-packages",) for o in options):
        raise BadManifest(f"{MANIFEST}: venv_options may only hold --system-site-packages")
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise BadManifest(f"{MANIFEST}: files must name at least one wheel")
    for name, entry in files.items():
        # A name is a path on the counter and in a URL: no directory, no dot-dot, nothing but a wheel.
        if not FILE_RE.match(name) or ".." in name:
            raise BadManifest(f"{MANIFEST}: {name!r} is not a wheel file name")
        if not isinstance(entry, dict) or not _HEX64.match(str(entry.get("sha256"))) \
                or not isinstance(entry.get("size"), int) or entry["size"] < 0:
            raise BadManifest(f"{MANIFEST}: {name}: needs sha256 (64 hex digits) and size")
    return manifest


def make_manifest(version: str, python: str, arch: str, files: dict[str, tuple[str, int]], *, made: str,
                  venv_options: list[str] = (), project: str = "hailong") -> bytes:
    """The manifest's bytes for `files` ({name: (sha256, size)}), checked."""
    manifest = {"format": FORMAT, "kind": KIND, "project": project, "version": version, "python": python,
                "arch": arch, "venv_options": list(venv_options), "made": made,
                "files": {n: {"sha256": h, "size": s} for n, (h, s) in sorted(files.items())}}
    check_manifest(manifest)
    return (json.dumps(manifest, indent=2) + "\n").encode()


def sign_manifest(manifest: bytes, private_key: bytes) -> bytes:
    """The manifest.sig bytes for `manifest`, signed with the raw 32-byte private key."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    key = Ed25519PrivateKey.from_private_bytes(private_key)
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    signature = key.sign(SIGNED_PREFIX + manifest)
    return (json.dumps({"format": FORMAT, "key_id": key_id(public),
                        "signature": base64.b64encode(signature).decode()}) + "\n").encode()


def new_key_pair() -> tuple[bytes, bytes]:
    """(private, public), raw 32 bytes each."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

    key = Ed25519PrivateKey.generate()
    return (key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()),
            key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))


def _check_signature(manifest: bytes, signature: bytes, public_key: bytes) -> None:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    sig = _loads(signature, SIGNATURE)
    try:
        raw = base64.b64decode(str(sig.get("signature")), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 64:
        raise BadSignature(f"{SIGNATURE}: not an Ed25519 signature (base64 of 64 bytes)")
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(raw, SIGNED_PREFIX + manifest)
    except InvalidSignature:
        if sig.get("key_id") != key_id(public_key):
            raise WrongKey(f"signed with key {sig.get('key_id')!r}, this counter trusts key "
                           f"{key_id(public_key)}") from None
        raise BadSignature("the signature does not match the manifest: altered or forged") from None


def verify_manifest(manifest: bytes, signature: bytes, public_key: bytes, *, running: str | None,
                    python: str, arch: str, allow_downgrade: bool = False) -> dict:
    """The manifest, if `signature` is `public_key`'s over exactly these bytes, it targets this `python`
    (X.Y) and `arch` (platform.machine()), and it is newer than `running` (unless `allow_downgrade`).

    The signature is checked first: nothing in an unsigned manifest is worth reading.
    """
    _check_signature(manifest, signature, public_key)
    m = check_manifest(_loads(manifest, MANIFEST))
    if m["python"] != python or m["arch"] != arch:
        raise WrongTarget(f"release {m['version']} is for Python {m['python']} on {m['arch']}; "
                          f"this counter runs Python {python} on {arch}")
    if running is not None and version_key(m["version"]) <= version_key(running) and not allow_downgrade:
        word = "the version already running" if version_key(m["version"]) == version_key(running) else "older"
        raise Downgrade(f"release {m['version']} is {word} than {running}; "
                        "a downgrade needs the operator's explicit allow_downgrade")
    return m


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_file(manifest: dict, name: str, path: Path) -> None:
    """TamperedFile unless `path` is `name` of `manifest`, byte for byte (size, then sha256)."""
    entry = manifest["files"][name]
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise TamperedFile(f"{name}: missing") from None
    if size != entry["size"]:
        raise TamperedFile(f"{name}: {size} bytes, the signed manifest says {entry['size']}")
    if sha256_file(path) != entry["sha256"]:
        raise TamperedFile(f"{name}: sha256 differs from the signed manifest")


def check_files(manifest: dict, folder: Path) -> None:
    for name in manifest["files"]:
        check_file(manifest, name, Path(folder) / name)
