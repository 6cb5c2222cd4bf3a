"""Signed releases: the pure verification (every refusal typed) and the technician's commands."""
from __future__ import annotations

import base64
import json
import platform
import sys
import tomllib

import pytest

from common import release as rel
from provisioning.cli import main as provision
from tests.release_support import make_release, tiny_wheel

PY = f"{sys.version_info.major}.{sys.version_info.minor}"
ARCH = platform.machine()


@pytest.fixture(scope="module")
def keys():
    return rel.new_key_pair()


@pytest.fixture
def signed(tmp_path, keys):
    wheel = tiny_wheel(tmp_path / "src", "hailong", "0.2.0")
    folder = tmp_path / "rel"
    make_release(folder, "0.2.0", keys[0], [wheel], python=PY, arch=ARCH)
    return folder


def _verify(folder, public, running="0.1.0", **kw):
    args = dict(running=running, python=PY, arch=ARCH) | kw
    return rel.verify_manifest((folder / rel.MANIFEST).read_bytes(), (folder / rel.SIGNATURE).read_bytes(),
                               public, **args)


def test_a_signed_release_verifies_and_its_files_match(signed, keys):
    m = _verify(signed, keys[1])
    assert m["version"] == "0.2.0" and m["python"] == PY and m["arch"] == ARCH
    rel.check_files(m, signed)


def test_a_changed_version_breaks_the_signature(signed, keys):
    """The version is inside what is signed: an attacker cannot relabel an old release as new."""
    path = signed / rel.MANIFEST
    path.write_bytes(path.read_bytes().replace(b'"0.2.0"', b'"9.0.0"'))
    with pytest.raises(rel.BadSignature):
        _verify(signed, keys[1])


def test_a_tampered_wheel_is_caught_by_its_signed_hash(signed, keys):
    m = _verify(signed, keys[1])
    wheel = next(signed.glob("*.whl"))
    data = bytearray(wheel.read_bytes())
    data[-1] ^= 1
    wheel.write_bytes(bytes(data))
    with pytest.raises(rel.TamperedFile, match="sha256"):
        rel.check_files(m, signed)
    wheel.unlink()
    with pytest.raises(rel.TamperedFile, match="missing"):
        rel.check_files(m, signed)


def test_another_key_is_named_as_such(signed):
    other = rel.new_key_pair()[1]
    with pytest.raises(rel.WrongKey, match=rel.key_id(other)):
        _verify(signed, other)


def test_a_forged_signature_with_our_key_id_is_a_bad_signature(signed, keys):
    sig = json.loads((signed / rel.SIGNATURE).read_text())
    sig["signature"] = base64.b64encode(bytes(64)).decode()
    (signed / rel.SIGNATURE).write_text(json.dumps(sig))
    with pytest.raises(rel.BadSignature):
        _verify(signed, keys[1])


@pytest.mark.parametrize("running", ["0.2.0", "0.10.0", "1.0"])
def test_the_same_or_an_older_version_is_refused_unless_allowed(signed, keys, running):
    with pytest.raises(rel.Downgrade):
        _verify(signed, keys[1], running=running)
    assert _verify(signed, keys[1], running=running, allow_downgrade=True)["version"] == "0.2.0"


@pytest.mark.parametrize("field,value", [("python", "3.99"), ("arch", "mips")])
def test_another_python_or_architecture_is_refused(signed, keys, field, value):
    with pytest.raises(rel.WrongTarget):
        _verify(signed, keys[1], **{field: value})


@pytest.mark.parametrize("bad", [
    {"version": "0.2.0-evil"}, {"files": {"../x.whl": {"sha256": "0" * 64, "size": 1}}},
    {"files": {"a.whl": {"sha256": "zz", "size": 1}}}, {"venv_options": ["--without-pip; rm -rf /"]}, {"files": {}},
])
def test_a_signed_but_malformed_manifest_is_refused(tmp_path, keys, bad):
    """Even the key holder cannot make a counter write outside its release folder."""
    manifest = {"format": 1, "kind": rel.KIND, "project": "hailong", "version": "0.2.0", "python": PY,
                "arch": ARCH, "venv_options": [], "made": "x",
                "files": {"a.whl": {"sha256": "0" * 64, "size": 1}}} | bad
    data = json.dumps(manifest).encode()
    with pytest.raises(rel.BadManifest):
        rel.verify_manifest(data, rel.sign_manifest(data, keys[0]), keys[1], running=None, python=PY, arch=ARCH)


def test_version_order_is_numeric():
    assert rel.version_key("0.10.0") > rel.version_key("0.9.9") > rel.version_key("0.9")
    with pytest.raises(rel.BadManifest):
        rel.version_key("1.0.0a1")


def test_key_build_sign_and_the_bundle_carries_the_public_key(tmp_path, capsys):
    inv = ["--inventory", str(tmp_path / "inv")]
    assert provision([*inv, "release", "key"]) == 0
    assert (tmp_path / "inv" / "release-key").stat().st_mode & 0o077 == 0
    assert provision([*inv, "release", "key"]) == 1  # never replaced by accident
    wheel = tiny_wheel(tmp_path / "src", "hailong", "0.3.0")
    out = tmp_path / "rel"
    assert provision(["release", "build", "--out", str(out), "--python", PY, "--arch", ARCH,
                      "--wheel", str(wheel), "--version", "0.3.0"]) == 0
    assert provision([*inv, "release", "sign", str(out)]) == 0
    public = rel.read_key((tmp_path / "inv" / "release-key.pub").read_text())
    assert _verify(out, public)["version"] == "0.3.0"

    assert provision([*inv, "site", "add", "s1", "--broker-host", "localhost"]) == 0
    assert provision([*inv, "device", "add", "--site", "s1", "--counter", "1", "--id", "d1"]) == 0
    toml = tomllib.loads((tmp_path / "inv" / "bundles" / "d1" / "device.toml").read_text())
    assert rel.read_key(toml["update"]["public_key"]) == public
