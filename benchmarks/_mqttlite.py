"""Just enough MQTT (3.1.1 and 5) over asyncio streams for thousands of simulated counters.

paho costs a thread and ~1 MiB per client; this costs a coroutine and a few KiB, so one
process can hold 10,000 connections. It speaks what a counter speaks (device/uplink.py):
CONNECT with credentials, a persistent session and a retained QoS 1 will; SUBSCRIBE at
QoS 1; PUBLISH at QoS 0 and 1; PUBACK for what it receives; PINGREQ. No QoS 2, no auth
exchange, no topic aliases: nothing a counter uses.
"""
from __future__ import annotations

import asyncio
import struct

CONNECT, CONNACK, PUBLISH, PUBACK = 1, 2, 3, 4
SUBSCRIBE, SUBACK, PINGREQ, PINGRESP, DISCONNECT = 8, 9, 12, 13, 14
SESSION_EXPIRY = 0x11  # MQTT 5 property id


class MqttError(Exception):
    """The broker refused us or broke the protocol; the caller reconnects."""


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = n >> 7, n & 0x7F
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def utf8(s: str | bytes) -> bytes:
    data = s.encode() if isinstance(s, str) else s
    return struct.pack("!H", len(data)) + data


def packet(kind: int, flags: int, body: bytes) -> bytes:
    return bytes([kind << 4 | flags]) + varint(len(body)) + body


def connect_packet(client_id: str, *, v5: bool, keepalive_s: int, username: str | None = None,
                   password: str | None = None, will: tuple[str, bytes] | None = None,
                   session_expiry_s: int = 604800) -> bytes:
    """A persistent session (clean start off), as the counter keeps: QoS 1 acks survive a reconnect."""
    flags = 0
    if username is not None:
        flags |= 0x80
    if password is not None:
        flags |= 0x40
    if will is not None:
        flags |= 0x20 | 0x08 | 0x04  # retained, QoS 1
    body = utf8("MQTT") + bytes([5 if v5 else 4, flags]) + struct.pack("!H", keepalive_s)
    if v5:
        props = bytes([SESSION_EXPIRY]) + struct.pack("!I", session_expiry_s)
        body += varint(len(props)) + props
    body += utf8(client_id)
    if will is not None:
        body += (b"\x00" if v5 else b"") + utf8(will[0]) + utf8(will[1])
    if username is not None:
        body += utf8(username)
    if password is not None:
        body += utf8(password)
    return packet(CONNECT, 0, body)


def subscribe_packet(pid: int, topics: list[str], *, v5: bool) -> bytes:
    body = struct.pack("!H", pid) + (b"\x00" if v5 else b"")
    for topic in topics:
        body += utf8(topic) + b"\x01"
    return packet(SUBSCRIBE, 2, body)


def publish_packet(topic: str, payload: bytes, *, qos: int, pid: int = 0, retain: bool = False,
                   v5: bool) -> bytes:
    body = utf8(topic) + (struct.pack("!H", pid) if qos else b"") + (b"\x00" if v5 else b"") + payload
    return packet(PUBLISH, qos << 1 | int(retain), body)


def puback_packet(pid: int) -> bytes:
    return packet(PUBACK, 0, struct.pack("!H", pid))  # v5 allows leaving out "success"


PINGREQ_PACKET = packet(PINGREQ, 0, b"")
DISCONNECT_PACKET = packet(DISCONNECT, 0, b"")


async def read_packet(reader: asyncio.StreamReader) -> tuple[int, int, bytes]:
    """(type, flags, body) of the next packet; IncompleteReadError at EOF."""
    head = (await reader.readexactly(1))[0]
    length, shift = 0, 0
    while True:
        b = (await reader.readexactly(1))[0]
        length |= (b & 0x7F) << shift
        if not b & 0x80:
            break
        shift += 7
        if shift > 21:
            raise MqttError("malformed remaining length")
    return head >> 4, head & 0x0F, await reader.readexactly(length) if length else b""


def _skip_varint(body: bytes, i: int) -> int:
    """Index after the properties block that starts at i (a varint length, then that many bytes)."""
    length, shift = 0, 0
    while True:
        b = body[i]
        i += 1
        length |= (b & 0x7F) << shift
        if not b & 0x80:
            return i + length
        shift += 7


def parse_publish(flags: int, body: bytes, *, v5: bool) -> tuple[str, int, int, bytes]:
    """(topic, qos, packet id or 0, payload) of an incoming PUBLISH."""
    qos = (flags >> 1) & 3
    (n,) = struct.unpack_from("!H", body)
    topic = body[2:2 + n].decode()
    i = 2 + n
    pid = 0
    if qos:
        (pid,) = struct.unpack_from("!H", body, i)
        i += 2
    if v5:
        i = _skip_varint(body, i)
    return topic, qos, pid, body[i:]


def connack_code(body: bytes) -> int:
    """The CONNACK's return code (3.1.1) or reason code (5): 0 is success."""
    if len(body) < 2:
        raise MqttError("short CONNACK")
    return body[1]


def suback_refused(body: bytes, *, v5: bool) -> bool:
    codes = body[2:]
    if v5:
        codes = body[_skip_varint(body, 2):]
    return any(c >= 0x80 for c in codes)
