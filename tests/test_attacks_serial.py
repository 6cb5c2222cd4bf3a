"""Attacks on the serial console of a provisioned counter: a push without the provisioning key,
however it is dressed up, changes nothing; hostile frames do not silence the console.
"""
from __future__ import annotations

import base64
import os

import pytest

from protocol.serialframe import MAX_PAYLOAD, REQUEST, crc16_ccitt_false, push_proof
from provisioning.serial_client import RemoteError, read_bundle
from tests.test_serial_console import DEVICE_TOML, Rig, make_bundle

KEY = b"the-real-key"


@pytest.fixture
def device(tmp_path):
    """A counter provisioned with KEY, over a real pty; its installed files as they are."""
    rig = Rig(tmp_path)
    rig.client.push(make_bundle(tmp_path, "first", key=KEY), None)
    before = {p.name: p.read_bytes() for p in rig.etc.iterdir()}
    yield rig, before
    rig.close()


def evil_files(tmp_path, key: bytes = b"attacker-key") -> dict[str, str]:
    toml = DEVICE_TOML.format(id="dev-1", data="/tmp/evil")
    return read_bundle(make_bundle(tmp_path, f"evil-{os.urandom(4).hex()}", key=key, toml=toml))


def unchanged(rig, before) -> bool:
    return {p.name: p.read_bytes() for p in rig.etc.iterdir()} == before


def challenge(rig) -> bytes:
    return bytes.fromhex(rig.client.request("challenge")["nonce"])


def test_a_push_without_any_proof_is_refused(device, tmp_path):
    rig, before = device
    with pytest.raises(RemoteError, match="needs a proof"):
        rig.client.request("push", files=evil_files(tmp_path))
    with pytest.raises(RemoteError, match="needs a proof"):
        rig.client.request("push", files=evil_files(tmp_path), proof="")
    assert unchanged(rig, before)


def test_a_push_signed_with_another_key_is_refused(device, tmp_path):
    rig, before = device
    files = evil_files(tmp_path)
    for key in (b"attacker-key", b"", b"x", KEY + b"x", KEY[:-1]):
        proof = push_proof(key or b"?", challenge(rig), files)
        with pytest.raises(RemoteError, match="wrong proof"):
            rig.client.request("push", files=files, proof=proof)
    assert unchanged(rig, before)


def test_a_proof_for_one_bundle_does_not_install_another(device, tmp_path):
    rig, before = device
    signed, swapped = evil_files(tmp_path, key=KEY), evil_files(tmp_path)
    nonce = challenge(rig)
    with pytest.raises(RemoteError, match="wrong proof"):
        rig.client.request("push", files=swapped, proof=push_proof(KEY, nonce, signed))
    assert unchanged(rig, before)


def test_each_challenge_allows_one_guess_and_only_the_latest_counts(device, tmp_path):
    rig, before = device
    files = evil_files(tmp_path, key=KEY)
    nonce = challenge(rig)
    with pytest.raises(RemoteError, match="wrong proof"):
        rig.client.request("push", files=files, proof="0" * 64)
    # The nonce went with the wrong guess: even the right proof for it is refused now.
    with pytest.raises(RemoteError, match="no valid challenge"):
        rig.client.request("push", files=files, proof=push_proof(KEY, nonce, files))
    old = challenge(rig)
    challenge(rig)  # a newer challenge replaces it
    with pytest.raises(RemoteError, match="no valid challenge|wrong proof"):
        rig.client.request("push", files=files, proof=push_proof(KEY, old, files))
    # Without asking for a challenge at all.
    with pytest.raises(RemoteError, match="no valid challenge"):
        rig.client.request("push", files=files, proof=push_proof(KEY, os.urandom(32), files))
    assert unchanged(rig, before)


@pytest.mark.parametrize("files", [
    {"../../../tmp/hailong-pwned": base64.b64encode(b"x").decode()},
    {"device.toml": "not base64!", "mqtt-password": "", "provisioning-key": ""},
    "not a table", None, ["device.toml"],
])
def test_a_malformed_push_is_refused_before_any_proof_is_checked(device, files):
    rig, before = device
    with pytest.raises(RemoteError):
        rig.client.request("push", files=files)
    assert unchanged(rig, before) and not os.path.exists("/tmp/hailong-pwned")


def hostile_frame(payload: bytes) -> bytes:
    body = bytes((REQUEST,)) + len(payload).to_bytes(2, "big") + payload
    body += crc16_ccitt_false(body).to_bytes(2, "big")
    out = bytearray((0x7E,))
    for b in body:
        out += bytes((0x7D, b ^ 0x20)) if b in (0x7D, 0x7E) else bytes((b,))
    return bytes(out)


HOSTILE = {
    "deep nesting": b'{"id": "d", "op": ' + b"[" * 4000 + b"]" * 4000 + b"}",
    # An id so long that no answer quoting it fits in a frame.
    "huge id": b'{"id": "' + b"i" * (MAX_PAYLOAD - 40) + b'", "op": 1}',
    "huge id, unknown op": b'{"id": "' + b"i" * (MAX_PAYLOAD - 60) + b'", "op": "nope"}',
    "not an object": b"[1, 2]",
    "id of the wrong type": b'{"id": {"a": 1}, "op": "push"}',
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_frames_do_not_silence_the_console_nor_open_it(device, tmp_path, name):
    rig, before = device
    os.write(rig.slave, hostile_frame(HOSTILE[name]))
    # The agent is still there, still answers, and still wants the key.
    assert rig.client.info()["provisioned"] is True
    with pytest.raises(RemoteError, match="needs a proof"):
        rig.client.request("push", files=evil_files(tmp_path))
    assert unchanged(rig, before)
