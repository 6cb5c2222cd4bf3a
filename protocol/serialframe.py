"""Framed JSON messages over a serial line (UART or USB gadget serial): the console
a technician's laptop uses to provision and test a counter on the bench.

Frame on the wire (before byte stuffing)::

    0x7E | type (1) | length (2, big-endian) | payload (length bytes) | CRC (2, big-endian)

* payload: one UTF-8 JSON object, at most `MAX_PAYLOAD` (8 KiB) bytes;
* CRC: CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no xorout)
  over type + length + payload;
* byte stuffing: after the start byte, every 0x7E or 0x7D is sent as 0x7D followed
  by the byte XOR 0x20, so 0x7E only ever marks the start of a frame and a receiver
  resynchronises on it after garbage or a lost byte.

Standard library only, and no pyserial: this module is part of the wire contract.
"""
from __future__ import annotations

import json

__all__ = [
    "START", "ESCAPE", "MAX_PAYLOAD", "REQUEST", "RESPONSE", "EVENT", "KINDS", "OPS",
    "FrameError", "FrameTooLarge", "FrameCRCError", "FramePayloadError", "MessageError",
    "crc16_ccitt_false", "encode_frame", "decode_frame", "FrameDecoder",
    "check_message", "bundle_digest", "push_proof", "normalise_key", "BUNDLE_FILES",
    "REQUIRED_BUNDLE_FILES", "NONCE_TTL_S",
]

START = 0x7E
ESCAPE = 0x7D
_XOR = 0x20
MAX_PAYLOAD = 8 * 1024

REQUEST = 0x01   # client -> agent: {"id": str, "op": str, ...}
RESPONSE = 0x02  # agent -> client: {"id": str, "ok": bool, "error"?: str, "result"?: {...}}
EVENT = 0x03     # agent -> client, unsolicited: {"event": str, ...}
KINDS = {REQUEST: "request", RESPONSE: "response", EVENT: "event"}

OPS = ("info", "challenge", "push", "selftest.begin", "selftest.step", "selftest.end", "badge.read")

# Files of a provisioning bundle, by their name in the bundle directory.
BUNDLE_FILES = ("device.toml", "mqtt-password", "provisioning-key", "ca.crt")
REQUIRED_BUNDLE_FILES = ("device.toml", "mqtt-password", "provisioning-key")
NONCE_TTL_S = 60.0


class FrameError(ValueError):
    """Base class: a frame that cannot be built or read."""


class FrameTooLarge(FrameError):
    """Payload above MAX_PAYLOAD bytes."""


class FrameCRCError(FrameError):
    """CRC mismatch: the frame was damaged on the line."""


class FramePayloadError(FrameError):
    """CRC fine but the payload is not a UTF-8 JSON object (or the frame is malformed)."""


class MessageError(ValueError):
    """A well-formed frame whose message lacks a required field."""


def crc16_ccitt_false(data: bytes, crc: int = 0xFFFF) -> int:
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


def _stuff(data: bytes) -> bytes:
    out = bytearray()
    for b in data:
        if b == START or b == ESCAPE:
            out += bytes((ESCAPE, b ^ _XOR))
        else:
            out.append(b)
    return bytes(out)


def encode_frame(kind: int, obj: dict) -> bytes:
    """One complete, stuffed frame carrying `obj` as compact UTF-8 JSON."""
    if not isinstance(kind, int) or not 0 <= kind <= 0xFF:
        raise FrameError(f"frame type must be a byte, got {kind!r}")
    if not isinstance(obj, dict):
        raise FramePayloadError(f"payload must be a JSON object, got {type(obj).__name__}")
    payload = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    if len(payload) > MAX_PAYLOAD:
        raise FrameTooLarge(f"payload is {len(payload)} bytes, more than {MAX_PAYLOAD}")
    body = bytes((kind,)) + len(payload).to_bytes(2, "big") + payload
    return bytes((START,)) + _stuff(body + crc16_ccitt_false(body).to_bytes(2, "big"))


def _parse_body(body: bytes) -> tuple[int, dict]:
    """type+length+payload+crc (unstuffed) -> (kind, obj); raises FrameError subclasses."""
    if len(body) < 5:
        raise FramePayloadError("frame too short")
    length = int.from_bytes(body[1:3], "big")
    if length > MAX_PAYLOAD:
        raise FrameTooLarge(f"declared payload length {length} is more than {MAX_PAYLOAD}")
    if len(body) != 5 + length:
        raise FramePayloadError(f"frame has {len(body) - 5} payload bytes, header says {length}")
    if crc16_ccitt_false(body[:-2]) != int.from_bytes(body[-2:], "big"):
        raise FrameCRCError("CRC mismatch")
    try:
        obj = json.loads(body[3:-2].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise FramePayloadError(f"payload is not UTF-8 JSON: {e}") from None
    except RecursionError:  # a CRC is no proof of good intent: "[[[[..." fits in 8 KiB
        raise FramePayloadError("payload is not UTF-8 JSON: nested too deeply") from None
    if not isinstance(obj, dict):
        raise FramePayloadError(f"payload must be a JSON object, got {type(obj).__name__}")
    return body[0], obj


def decode_frame(frame: bytes) -> tuple[int, dict]:
    """Strictly decode exactly one stuffed frame (starting with 0x7E)."""
    if not frame or frame[0] != START:
        raise FramePayloadError("frame must start with 0x7E")
    body = bytearray()
    it = iter(frame[1:])
    for b in it:
        if b == START:
            raise FramePayloadError("0x7E inside a frame")
        if b == ESCAPE:
            nxt = next(it, None)
            if nxt is None or nxt == START:
                raise FramePayloadError("dangling escape byte")
            b = nxt ^ _XOR
        body.append(b)
    return _parse_body(bytes(body))


class FrameDecoder:
    """Incremental decoder: feed it whatever the port returned, get whole messages.

    Never raises on line noise. Bytes outside a frame are skipped (`garbage_bytes`);
    a damaged frame is dropped and counted (`crc_errors`, `oversize`, `malformed`);
    `last_error` keeps the latest such error for diagnostics.
    """

    def __init__(self) -> None:
        self._body = bytearray()
        self._in_frame = False
        self._escaped = False
        self._need: int | None = None
        self.garbage_bytes = 0
        self.crc_errors = 0
        self.oversize = 0
        self.malformed = 0
        self.frames = 0
        self.last_error: FrameError | None = None

    @property
    def dropped(self) -> int:
        return self.crc_errors + self.oversize + self.malformed

    def reset(self) -> None:
        self._body.clear()
        self._in_frame = self._escaped = False
        self._need = None

    def _fail(self, err: FrameError) -> None:
        if isinstance(err, FrameCRCError):
            self.crc_errors += 1
        elif isinstance(err, FrameTooLarge):
            self.oversize += 1
        else:
            self.malformed += 1
        self.last_error = err
        self.reset()

    def feed(self, data: bytes) -> list[tuple[int, dict]]:
        out: list[tuple[int, dict]] = []
        for b in data:
            if b == START:
                if self._in_frame and self._body:
                    self._fail(FramePayloadError("frame cut short by a new start byte"))
                self.reset()
                self._in_frame = True
                continue
            if not self._in_frame:
                self.garbage_bytes += 1
                continue
            if self._escaped:
                self._escaped = False
                b ^= _XOR
            elif b == ESCAPE:
                self._escaped = True
                continue
            self._body.append(b)
            if self._need is None and len(self._body) == 3:
                length = int.from_bytes(self._body[1:3], "big")
                if length > MAX_PAYLOAD:
                    self._fail(FrameTooLarge(f"declared payload length {length} is more than {MAX_PAYLOAD}"))
                    continue
                self._need = 5 + length
            if self._need is not None and len(self._body) == self._need:
                try:
                    out.append(_parse_body(bytes(self._body)))
                    self.frames += 1
                except FrameError as e:
                    self._fail(e)
                    continue
                self.reset()
        return out


def check_message(kind: int, obj: dict) -> None:
    """Raise MessageError unless `obj` has the fields its kind requires."""
    if kind == REQUEST:
        if not isinstance(obj.get("id"), str) or not obj["id"]:
            raise MessageError("request needs a non-empty string 'id'")
        if not isinstance(obj.get("op"), str):
            raise MessageError("request needs a string 'op'")
    elif kind == RESPONSE:
        if not isinstance(obj.get("id"), str):
            raise MessageError("response needs a string 'id'")
        if not isinstance(obj.get("ok"), bool):
            raise MessageError("response needs a boolean 'ok'")
        if not obj["ok"] and not isinstance(obj.get("error"), str):
            raise MessageError("a failed response needs a string 'error'")
    elif kind == EVENT:
        if not isinstance(obj.get("event"), str):
            raise MessageError("event needs a string 'event'")
    else:
        raise MessageError(f"unknown message type 0x{kind:02x}")


# --- challenge-response for `push` ---------------------------------------------------------

def normalise_key(key: bytes) -> bytes:
    """The provisioning key as used in HMACs: file bytes without trailing whitespace."""
    key = key.rstrip(b" \t\r\n")
    if not key:
        raise ValueError("provisioning key is empty")
    return key


def bundle_digest(files: dict[str, str]) -> bytes:
    """sha256 of the canonical bundle: JSON of {name: base64} with sorted keys, compact,
    after re-encoding each file's bytes as standard padded base64."""
    import base64
    import hashlib

    canon = {}
    for name, b64 in files.items():
        try:
            raw = base64.b64decode(b64, validate=True)
        except (ValueError, TypeError) as e:
            raise MessageError(f"file {name!r} is not valid base64: {e}") from None
        canon[name] = base64.b64encode(raw).decode("ascii")
    text = json.dumps(canon, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).digest()


def push_proof(key: bytes, nonce: bytes, files: dict[str, str]) -> str:
    """HMAC-SHA256(key, nonce || sha256(canonical bundle)), hex."""
    import hashlib
    import hmac

    return hmac.new(normalise_key(key), nonce + bundle_digest(files), hashlib.sha256).hexdigest()

