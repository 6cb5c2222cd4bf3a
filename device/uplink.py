"""Our small interface to MQTT; paho stays behind it.

We run paho's network loop in our own thread instead of `loop_start()` so reconnects
follow our backoff policy (with jitter) rather than paho's fixed schedule, and so they can
move on to the next broker when several are configured (device.backoff.BrokerRotation).
One paho client serves every broker: its will, subscriptions and our `online` status go to
each broker as it is connected (CONNECT carries the will; `_on_connect` subscribes; the
runtime publishes the status on every connect).
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Callable

from common.mqtt import ClientSettings, connect_args, make_client
from device.backoff import BrokerRotation

log = logging.getLogger("hailong.uplink")


@dataclass(frozen=True)
class UplinkSettings:
    client_id: str
    host: str
    port: int = 1883
    username: str | None = None
    password: str | None = None
    protocol: str = "5"  # or "3.1.1"
    keepalive_s: int = 30
    session_expiry_s: int = 604800
    tls: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    backoff_min_s: float = 1.0
    backoff_max_s: float = 60.0
    connect_timeout_s: float = 10.0
    max_inflight: int = 100
    will: tuple[str, bytes] | None = None  # retained, QoS 1
    subscriptions: tuple[tuple[str, int], ...] = field(default_factory=tuple)
    hosts: tuple[tuple[str, int], ...] = ()  # several brokers to fail over between; empty: host and port
    stable_s: float = 10.0  # a connection that held this long starts a fresh round of brokers when lost

    @property
    def brokers(self) -> tuple[tuple[str, int], ...]:
        return self.hosts or ((self.host, self.port),)


class MqttUplink:
    """Connects, keeps the session, calls back on connect/disconnect/message.

    Callbacks run on the uplink thread; keep them short (put work on a queue).
    """

    def __init__(
        self,
        settings: UplinkSettings,
        *,
        on_connect: Callable[[], None] = lambda: None,
        on_disconnect: Callable[[str], None] = lambda reason: None,
        on_message: Callable[[str, bytes], None] = lambda topic, payload: None,
        rand: Callable[[], float] | None = None,
        clock: Callable[[], float] | None = None,
    ):
        self.settings = settings
        self.on_connect = on_connect
        self.on_disconnect = on_disconnect
        self.on_message = on_message
        self._rotation = BrokerRotation(
            settings.brokers, base=settings.backoff_min_s, cap=settings.backoff_max_s, stable_s=settings.stable_s,
            **({"rand": rand} if rand else {}), **({"clock": clock} if clock else {}),
        )
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._down = threading.Event()
        self._thread: threading.Thread | None = None
        self._client = self._make_client()
        self.last_error: str | None = None

    # ----- public -------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def broker(self) -> tuple[str, int]:
        """The broker we are connected to, or will try next."""
        return self._rotation.current

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="mqtt-uplink", daemon=True)
        self._thread.start()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> bool:
        """Hand a message to the connection; False if we are not connected right now."""
        if not self.connected:
            return False
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        return info.rc == 0

    def stop(self, last_words: tuple[str, bytes] | None = None, timeout: float = 5.0) -> None:
        """Disconnect cleanly, publishing `last_words` (retained) first if connected.

        A clean DISCONNECT suppresses the will, so offline status must be said explicitly.
        """
        if last_words and self.connected:
            try:
                info = self._client.publish(last_words[0], last_words[1], qos=1, retain=True)
                info.wait_for_publish(min(timeout, 2.0))
            except (RuntimeError, ValueError) as e:
                log.warning("could not publish offline status: %s", e)
        if self.connected:
            # Let our loop thread write the DISCONNECT before it stops, else the broker
            # sees a dropped socket and publishes the will on top of our last words.
            self._client.disconnect()
            self._down.wait(min(timeout, 2.0))
        self._stop.set()
        try:
            self._client.disconnect()
        except Exception:  # noqa: BLE001 - socket may already be gone; we are leaving anyway
            pass
        if self._thread is not None:
            self._thread.join(timeout)

    # ----- paho ---------------------------------------------------------------------

    def _client_settings(self) -> ClientSettings:
        s = self.settings
        host, port = self._rotation.current
        return ClientSettings(
            client_id=s.client_id, host=host, port=port, protocol=s.protocol,
            username=s.username, password=s.password,
            tls=s.tls, ca_file=s.ca_file, cert_file=s.cert_file, key_file=s.key_file,
            keepalive_s=s.keepalive_s, session_expiry_s=s.session_expiry_s, will=s.will,
            max_inflight=s.max_inflight, connect_timeout_s=s.connect_timeout_s,
        )

    def _make_client(self):
        client = make_client(self._client_settings())
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        # Only our loop thread may write to the socket: without this, paho's publish()
        # writes directly from the caller's thread, and two threads writing one socket can
        # interleave partial packets when the send buffer fills (e.g. draining a backlog).
        # With it, publish() queues the packet and wakes our loop(), which writes it.
        client.on_socket_register_write = lambda client, userdata, sock: None
        return client

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            self.last_error = f"broker refused connection: {reason_code}"
            log.warning("%s", self.last_error)
            return
        self.last_error = None
        self._down.clear()
        # Without TCP_NODELAY, Nagle holds small publishes back: the event->ack round trip was
        # ~27 ms on loopback instead of ~3 ms, which also delays the ticket number after NEXT.
        sock = client.socket()
        if sock is not None:
            import socket

            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        # Subscribing again is harmless with a resumed session and needed with a fresh one.
        for topic, qos in self.settings.subscriptions:
            client.subscribe(topic, qos=qos)
        self._connected.set()
        self.on_connect()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        was = self._connected.is_set()
        self._connected.clear()
        self._down.set()
        if was:
            self.on_disconnect(str(reason_code))

    def _on_message(self, client, userdata, msg):
        try:
            self.on_message(msg.topic, msg.payload)
        except Exception:  # noqa: BLE001 - a bad message must never kill the network loop
            log.exception("message handler failed for %s", msg.topic)

    def _run(self) -> None:
        while not self._stop.is_set():
            host, port = self._rotation.current
            self.last_error = None
            try:
                self._client.connect(**connect_args(self._client_settings()))
            except (OSError, ValueError) as e:
                self.last_error = f"cannot reach {host}:{port}: {e}"
                log.info("%s", self.last_error)
            else:
                self._serve(host, port)
            if self._stop.is_set():
                break
            delay = self._rotation.failed()
            if len(self._rotation.brokers) > 1:
                log.info("next broker: %s:%s in %.1f s", *self._rotation.current, delay)
            self._stop.wait(delay)

    def _serve(self, host: str, port: int) -> None:
        """Run the network loop of one connection until it ends (or we stop)."""
        import paho.mqtt.client as mqtt

        accepted = False
        rc = mqtt.MQTT_ERR_SUCCESS
        while not self._stop.is_set():
            rc = self._client.loop(timeout=0.5)
            if self._connected.is_set() and not accepted:
                accepted = True
                self._rotation.connected()
                log.info("connected to broker %s:%s", host, port)
            if rc != mqtt.MQTT_ERR_SUCCESS:
                break
        if self._connected.is_set():
            self._connected.clear()
            self.on_disconnect(mqtt.error_string(rc))
        elif not accepted and not self._stop.is_set() and self.last_error is None:
            # E.g. TLS 1.3: a broker that rejects our client certificate hangs up
            # only after the handshake, so connect() itself succeeded.
            self.last_error = f"{host}:{port} closed the connection before accepting us: {mqtt.error_string(rc)}"
            log.info("%s", self.last_error)
