"""The one place a paho MQTT client is built: the counter's uplink, the service's ingest and the doctor.

`make_client(settings)` returns a configured, unconnected paho client (callback API version 2);
`connect_args(settings)` the keywords for its `connect()` or `connect_async()`, which is where
paho takes the v5 clean-start flag and session properties. The callers attach their own
callbacks and run their own network loop.

A session is either clean (`session_expiry_s=None`: nothing survives the connection, as the
doctor wants) or persistent: MQTT 3.1.1 `clean_session=False`, MQTT 5 `clean_start=False` with
a Session Expiry Interval. Persistent sessions are how QoS 1 messages survive a reconnect.

paho is imported inside the functions: importing `common` stays cheap.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["ClientSettings", "PROTOCOLS", "connect_args", "make_client"]

PROTOCOLS = ("5", "3.1.1")


@dataclass(frozen=True)
class ClientSettings:
    """What a client needs to reach the broker; the defaults are paho's own."""

    client_id: str
    host: str
    port: int = 1883
    protocol: str = "5"  # or "3.1.1"
    username: str | None = None  # None: no credentials at all
    password: str | None = None
    tls: bool = False
    ca_file: str | None = None  # None with tls: the system's trusted CAs
    cert_file: str | None = None
    key_file: str | None = None
    keepalive_s: int = 60
    session_expiry_s: int | None = None  # None: a clean session
    will: tuple[str, bytes] | None = None  # (topic, payload), published retained with QoS 1
    max_inflight: int = 20
    connect_timeout_s: float = 5.0
    reconnect_delay_s: tuple[float, float] = (1, 120)  # (min, max) for paho's own loop
    manual_ack: bool = False  # PUBACK only when the caller calls client.ack()

    @property
    def v5(self) -> bool:
        return self.protocol == "5"


def make_client(s: ClientSettings) -> Any:
    """A paho client with everything of `s` set but the connection itself (see `connect_args`)."""
    import paho.mqtt.client as mqtt

    if s.protocol not in PROTOCOLS:
        raise ValueError(f"unknown MQTT protocol {s.protocol!r}; expected one of {PROTOCOLS}")
    kwargs: dict[str, Any] = dict(
        callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id=s.client_id,
        protocol=mqtt.MQTTv5 if s.v5 else mqtt.MQTTv311, manual_ack=s.manual_ack,
    )
    if not s.v5 and s.session_expiry_s is not None:
        kwargs["clean_session"] = False
    client = mqtt.Client(**kwargs)
    client.max_inflight_messages_set(s.max_inflight)
    client.max_queued_messages_set(0)  # 0: no limit; a publish is never dropped for a full queue
    client.connect_timeout = s.connect_timeout_s
    client.reconnect_delay_set(*s.reconnect_delay_s)
    if s.username is not None:
        client.username_pw_set(s.username, s.password)
    if s.tls:
        import ssl

        client.tls_set(ca_certs=s.ca_file, certfile=s.cert_file, keyfile=s.key_file,
                       cert_reqs=ssl.CERT_REQUIRED)
    if s.will:
        client.will_set(s.will[0], s.will[1], qos=1, retain=True)
    return client


def connect_args(s: ClientSettings) -> dict[str, Any]:
    """Keywords for `client.connect(**...)` / `client.connect_async(**...)`."""
    args: dict[str, Any] = dict(host=s.host, port=s.port, keepalive=s.keepalive_s)
    if s.v5 and s.session_expiry_s is not None:
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = s.session_expiry_s
        args.update(clean_start=False, properties=props)
    return args
