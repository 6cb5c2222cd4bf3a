"""Property-based tests of the serial console's framing (protocol/serialframe.py).

Whatever the line delivers, split wherever the port's reads happen to split it, the
incremental decoder never raises, finds every intact frame, and drops the damaged ones.
"""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.serialframe import (
    MAX_PAYLOAD, START, FrameDecoder, FrameError, crc16_ccitt_false, decode_frame, encode_frame,
)
from tests.fuzz_strategies import fuzz_settings, json_objects, json_scalars, json_text

kinds = st.integers(min_value=0, max_value=255)
# Small objects for the stream tests, where the framing is what varies; any object for the round trip.
messages = st.tuples(kinds, st.dictionaries(json_text, json_scalars, max_size=4))


def framed(kind: int, obj: dict) -> bytes | None:
    try:
        return encode_frame(kind, obj)
    except FrameError:
        return None  # over MAX_PAYLOAD: refused at the sender


def feed_in_pieces(decoder: FrameDecoder, stream: bytes, cuts: list[int]) -> list:
    out, at = [], 0
    for cut in sorted({c % (len(stream) + 1) for c in cuts}) + [len(stream)]:
        out += decoder.feed(stream[at:cut])
        at = cut
    return out


def raw_frame(kind: int, payload: bytes) -> bytes:
    """A frame with a correct CRC around any payload bytes: what a hostile sender can make."""
    body = bytes((kind,)) + len(payload).to_bytes(2, "big") + payload
    body += crc16_ccitt_false(body).to_bytes(2, "big")
    stuffed = bytearray()
    for b in body:
        stuffed += bytes((0x7D, b ^ 0x20)) if b in (0x7D, 0x7E) else bytes((b,))
    return bytes((START,)) + bytes(stuffed)


@fuzz_settings(150)
@given(st.tuples(kinds, json_objects))
def test_a_frame_decodes_back_to_its_message(message):
    frame = framed(*message)
    if frame is not None:
        assert frame[0] == START and START not in frame[1:]
        assert decode_frame(frame) == message


@fuzz_settings(120)
@given(st.lists(messages, min_size=1, max_size=6), st.lists(st.binary(max_size=40), min_size=7, max_size=7),
       st.lists(st.integers(min_value=0), max_size=20))
def test_every_frame_is_found_among_garbage_split_anywhere(sent, garbage, cuts):
    frames = [(m, f) for m in sent if (f := framed(*m)) is not None]
    stream = b"".join(g + f for g, (_, f) in zip(garbage, frames)) + garbage[-1]
    # Trailing garbage may hold a START and leave a frame open: a last frame closes it.
    closing = encode_frame(1, {"end": True})
    decoder = FrameDecoder()
    got = feed_in_pieces(decoder, stream + closing, cuts)
    assert got == [m for m, _ in frames] + [(1, {"end": True})]
    assert decoder.frames == len(got)


@fuzz_settings(300)
@given(st.binary(max_size=600), st.lists(st.integers(min_value=0), max_size=20))
def test_line_noise_never_crashes_the_decoder(noise, cuts):
    decoder = FrameDecoder()
    got = feed_in_pieces(decoder, noise, cuts)
    for kind, obj in got:  # noise can only be read as a frame with a correct CRC around a JSON object
        assert 0 <= kind <= 255 and isinstance(obj, dict)
    # And it is still in step: the next frame is read.
    assert decoder.feed(encode_frame(2, {"after": "noise"})) == [(2, {"after": "noise"})]


@fuzz_settings(150)
@given(st.lists(messages, min_size=2, max_size=5), st.data())
def test_a_damaged_frame_is_dropped_and_the_others_still_arrive(sent, data):
    frames = [(m, f) for m in sent if (f := framed(*m)) is not None]
    if len(frames) < 2:
        return
    victim = data.draw(st.integers(0, len(frames) - 1), label="victim")
    frame = bytearray(frames[victim][1])
    at = data.draw(st.integers(0, len(frame) - 1), label="at")
    frame[at] ^= data.draw(st.integers(1, 255), label="xor")
    stream = b"".join(bytes(frame) if i == victim else f for i, (_, f) in enumerate(frames))
    decoder = FrameDecoder()
    got = feed_in_pieces(decoder, stream + encode_frame(1, {"end": True}),
                         data.draw(st.lists(st.integers(min_value=0), max_size=10), label="cuts"))
    expected = [m for i, (m, _) in enumerate(frames) if i != victim] + [(1, {"end": True})]
    assert got == expected
    # Counted as damage, or (a broken start byte) skipped as noise: never silently taken.
    assert decoder.dropped + decoder.garbage_bytes > 0


# Payloads a hostile sender wraps in a correct CRC: each is dropped, the decoder carries on.
HOSTILE = {
    "deep nesting": b'{"a":' + b"[" * 4000 + b"]" * 4000 + b"}",
    "not an object": b"[1, 2, 3]",
    "invalid UTF-8": b'{"a": "\xff\xfe"}',
    "not JSON": b"{not json",
    "empty": b"",
    "huge number": b'{"a": 1' + b"0" * 5000 + b"}",
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_hostile_payload_with_a_correct_crc_is_dropped(name):
    payload = HOSTILE[name]
    assert len(payload) <= MAX_PAYLOAD
    decoder = FrameDecoder()
    after = encode_frame(1, {"after": name})
    assert decoder.feed(raw_frame(1, payload) + after) == [(1, {"after": name})]
    assert decoder.malformed == 1
    with pytest.raises(FrameError):
        decode_frame(raw_frame(1, payload))
