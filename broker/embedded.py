"""An in-process MQTT 3.1.1 broker (amqtt) for small sites and the all-in-one demo.

Where mosquitto is not installed, this lets one machine host everything
with `pip install 'hailong[broker]'` and no system packages.

    with EmbeddedBroker(port=0) as broker:
        ...connect paho clients to 127.0.0.1:broker.port...

amqtt 0.12.1 behaviour worth knowing (pinned in tests/test_embedded_broker.py):
  * MQTT 3.1.1 only; MQTT 5 clients are refused at CONNECT.
  * Sessions, retained messages and offline queues live in memory only:
    stop() or a crash forgets them all.
  * Its anonymous-auth plugin flags sessions "anonymous", and anonymous
    sessions lose their queue at disconnect even with clean_session=False.
    Our _PasswordFile plugin admits only the accounts of a Mosquitto password
    file and never sets the flag, so persistent sessions work.
  * Topic rules come from a plugin's topic_filtering (publish, subscribe,
    receive); _AclFile applies a Mosquitto ACL file to each, as Mosquitto does.
  * It never enforces keepalive; _EnforceKeepAlive does, so a counter that
    loses power gets its last will published and its messages queued.
  * A QoS 1 message in flight when the subscriber's connection drops, or
    not acknowledged within 5 s, is forgotten rather than redelivered.
  * Messages queued for an offline client arrive with RETAIN set: receivers
    must not read RETAIN as "old state".
  * amqtt sends every connecting client the retained messages matching
    *anyone's* subscriptions, without asking the topic plugins: officer names
    to anyone who connects. _Broker sends them only for the client's own
    subscriptions, and only what its ACL lets it read.

Without a password file and an ACL the broker does not start, unless the caller
asks for `allow_anonymous=True` (tests of amqtt itself): a small site must not be
open to its LAN. Both files are re-read when they change, at the next connection.
"""
from __future__ import annotations

import asyncio
import errno
import logging
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.errors import ConfigError
from common.mqtt_access import Acl, read_acl, read_passwd, verify_password

_AUTH_PLUGIN = f"{__name__}._AcceptAll"
_PASSWD_PLUGIN = f"{__name__}._PasswordFile"
_ACL_PLUGIN = f"{__name__}._AclFile"
_QUEUE_PLUGIN = f"{__name__}._CapOfflineQueue"
_KEEPALIVE_PLUGIN = f"{__name__}._EnforceKeepAlive"
_LAST_SEEN = "hailong.last_seen"
_DROPPED = "hailong.dropped"
_REAP_INTERVAL = 0.5  # seconds; how late past 1.5 x keepalive a dead client may be noticed


class EmbeddedBrokerError(RuntimeError):
    """The embedded broker could not start or stop."""


class EmbeddedBroker:
    """amqtt running on its own event loop in a daemon thread."""

    def __init__(self, host: str = "127.0.0.1", port: int = 1883, *, max_queued: int = 100000,
                 passwd_file: str | Path | None = None, acl_file: str | Path | None = None,
                 allow_anonymous: bool = False) -> None:
        if not allow_anonymous and (passwd_file is None or acl_file is None):
            raise EmbeddedBrokerError("the embedded broker needs a password file and an ACL file "
                                      "(mqtt.passwd_file and mqtt.acl_file; `hailong provision mosquitto export` "
                                      "writes both)")
        self.host = host
        self.port = port
        self.max_queued = max_queued
        self.access = None if allow_anonymous else _Access(Path(passwd_file), Path(acl_file))
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested: asyncio.Event | None = None

    @classmethod
    def from_config(cls, mqtt) -> EmbeddedBroker:
        """The broker a service config's [mqtt] section asks for (embedded = true)."""
        return cls(mqtt.embedded_bind, mqtt.port, passwd_file=mqtt.passwd_file, acl_file=mqtt.acl_file)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, timeout: float = 10) -> EmbeddedBroker:
        if self.running:
            return self
        broker_cls = _import_amqtt()
        if self.access is not None:
            self.access.load()  # a bad file is a clear error now, not a refused login later
        if self.port == 0:
            # amqtt does not report the port it bound, so choose one up front.
            self.port = _free_port(self.host)
        # amqtt would log a full traceback at ERROR before failing; check first
        # so the common mistake gets a one-line answer.
        _check_port_free(self.host, self.port)

        ready = threading.Event()
        failure: list[BaseException] = []
        self._loop = asyncio.new_event_loop()
        # Created here rather than in the thread so stop() always has something
        # to set, however early it is called.
        self._stop_requested = asyncio.Event()
        self._thread = threading.Thread(
            target=self._run,
            args=(self._loop, broker_cls, ready, failure),
            name=f"hailong-broker-{self.port}",
            daemon=True,
        )
        self._thread.start()

        if not ready.wait(timeout):
            self.stop(timeout)
            raise EmbeddedBrokerError(f"broker on {self.host}:{self.port} did not start within {timeout}s")
        if failure:
            self.stop(timeout)
            raise _startup_error(self.host, self.port, failure[0]) from failure[0]
        return self

    def stop(self, timeout: float = 10) -> None:
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        if thread.is_alive():
            assert self._stop_requested is not None
            loop.call_soon_threadsafe(self._stop_requested.set)
            thread.join(timeout)
            if thread.is_alive():
                raise EmbeddedBrokerError(f"broker on {self.host}:{self.port} did not stop within {timeout}s")
        self._thread = None
        self._loop = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _config(self) -> dict[str, Any]:
        return {
            # No [brackets] for IPv6: amqtt splits on the last colon and would
            # pass the brackets on to getaddrinfo.
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            # An explicit plugin list also keeps amqtt's $SYS publisher and
            # per-packet loggers out: they cost throughput and nothing uses them.
            "plugins": {
                **({_AUTH_PLUGIN: {}} if self.access is None else
                   {_PASSWD_PLUGIN: {"key": self._access_key()}, _ACL_PLUGIN: {"key": self._access_key()}}),
                _QUEUE_PLUGIN: {"max_queued": self.max_queued},
                _KEEPALIVE_PLUGIN: {},
            },
        }

    def _access_key(self) -> str:
        # amqtt builds plugins from plain config values; they find this broker's files by key.
        key = f"{id(self)}"
        _ACCESS[key] = self.access
        return key

    def _run(
        self, loop: asyncio.AbstractEventLoop, broker_cls: type, ready: threading.Event, failure: list[BaseException]
    ) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve(broker_cls, ready, failure))
        finally:
            _cancel_leftover_tasks(loop)
            loop.close()

    async def _serve(self, broker_cls: type, ready: threading.Event, failure: list[BaseException]) -> None:
        assert self._stop_requested is not None
        try:
            broker = broker_cls(self._config())
            await broker.start()
        except BaseException as exc:  # handed to start() in the caller's thread
            failure.append(exc)
            ready.set()
            return
        ready.set()
        await self._stop_requested.wait()
        await broker.shutdown()


class _Access:
    """A site's Mosquitto password file and ACL, re-read when either file changes."""

    def __init__(self, passwd_file: Path, acl_file: Path) -> None:
        self.files = (passwd_file, acl_file)
        self._stamp: tuple | None = None
        self.users: dict[str, str] = {}
        self.acl = Acl()

    def load(self) -> None:
        try:
            stamp = tuple((f.stat().st_mtime_ns, f.stat().st_size) for f in self.files)
            if stamp != self._stamp:
                self.users, self.acl = read_passwd(self.files[0]), read_acl(self.files[1])
                self._stamp = stamp
        except OSError as e:
            raise EmbeddedBrokerError(f"cannot read {e.filename}: {e.strerror}") from None
        except ConfigError as e:
            raise EmbeddedBrokerError(str(e)) from None

    def login(self, username: str | None, password: str | None, client_id: str | None = None) -> bool:
        try:
            self.load()
        except EmbeddedBrokerError as e:
            logging.getLogger(__name__).error("keeping the previous logins and ACL: %s", e)
        if client_id is not None and client_id != username and client_id in self.users:
            # amqtt resumes a session by client id before it authenticates, and replays its queue
            # without asking the ACL: nobody may take the client id of another account.
            return False
        hashed = self.users.get(username or "")
        return hashed is not None and password is not None and verify_password(password, hashed)


_ACCESS: dict[str, _Access] = {}


def _import_amqtt() -> type:
    try:
        import amqtt.broker  # noqa: F401
    except ImportError as exc:
        raise EmbeddedBrokerError("the embedded broker needs amqtt: pip install 'hailong[broker]'") from exc
    _quieten_amqtt()
    return _build_plugins()["_Broker"]


def _quieten_amqtt() -> None:
    # amqtt logs every connection at INFO and `transitions` every state change;
    # respect a level someone set on purpose, silence only the defaults.
    for name in ("amqtt", "transitions"):
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.WARNING)


def __getattr__(name: str) -> type:
    # amqtt loads plugins by dotted path (the *_PLUGIN constants). Build them
    # on first lookup so that importing this module never imports amqtt.
    if name in ("_AcceptAll", "_PasswordFile", "_AclFile", "_CapOfflineQueue", "_EnforceKeepAlive", "_Broker"):
        globals().update(_build_plugins())
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _build_plugins() -> dict[str, type]:
    if "_Broker" in globals():
        return {k: globals()[k] for k in ("_AcceptAll", "_PasswordFile", "_AclFile", "_CapOfflineQueue",
                                          "_EnforceKeepAlive", "_Broker")}
    from amqtt.plugins.base import BaseAuthPlugin, BasePlugin
    classes = {**_access_plugins(), **_broker_class()}

    class _AcceptAll(BaseAuthPlugin):
        """Admit every client, leaving Session.is_anonymous False.

        amqtt discards anonymous sessions at disconnect; leaving the flag
        unset is what lets clean_session=False clients keep their queue.
        """

        async def authenticate(self, *, session: Any) -> bool:
            return True

    class _CapOfflineQueue(BasePlugin):
        """Bound each offline client's queue; amqtt's own is unbounded."""

        @dataclass
        class Config:
            max_queued: int = 100000

        async def on_broker_retained_message(self, *, client_id: str | None, retained_message: Any) -> None:
            if client_id is None:  # a topic's retained message, not an offline queue
                return
            session = self.context.get_session(client_id)
            if session is None:
                return
            queue = session.retained_messages
            # Drop the oldest, like an overflowing ring buffer.
            while queue.qsize() > self.config.max_queued:
                queue.get_nowait()
                dropped = session.attributes[_DROPPED] = session.attributes.get(_DROPPED, 0) + 1
                if dropped == 1 or dropped % 1000 == 0:  # a warning per message would flood the log
                    self.context.logger.warning(
                        "offline queue for %s is full (%d): %d oldest message(s) dropped so far",
                        client_id, self.config.max_queued, dropped,
                    )

    class _EnforceKeepAlive(BasePlugin):
        """Disconnect clients silent for 1.5x their keepalive [MQTT-3.1.2-24].

        amqtt 0.12.1 notices a read timeout and ignores it, so a counter that
        loses power or network stays "connected" forever: its last will never
        fires and messages meant for it go to a dead socket instead of its
        offline queue.
        """

        async def on_mqtt_packet_received(self, *, packet: Any, session: Any = None) -> None:
            if session is not None:
                session.attributes[_LAST_SEEN] = time.monotonic()

        async def on_broker_client_disconnected(self, *, client_id: str, client_session: Any) -> None:
            # A persistent session outlives its connection; forget the old
            # connection's timestamp so a reconnect is not judged by it.
            client_session.attributes.pop(_LAST_SEEN, None)

        async def on_broker_post_start(self) -> None:
            self._reaper = asyncio.create_task(self._reap())

        async def on_broker_pre_shutdown(self) -> None:
            self._reaper.cancel()

        async def _reap(self) -> None:
            # The broker keeps each session's protocol handler only in this
            # private map; amqtt is pinned to 0.12.1 so that is acceptable.
            sessions = self.context._broker_instance.sessions
            while True:
                await asyncio.sleep(_REAP_INTERVAL)
                now = time.monotonic()
                for session, handler in list(sessions.values()):
                    if session.keep_alive <= 0 or session.transitions.state != "connected":
                        continue
                    last_seen = session.attributes.setdefault(_LAST_SEEN, now)
                    if now - last_seen > 1.5 * session.keep_alive:
                        self.context.logger.warning("%s silent for %.0fs: disconnecting", session.client_id, now - last_seen)
                        # What amqtt's own session takeover does; from here it is
                        # the socket-EOF path: will published, session offline.
                        await handler.handle_connection_closed()

    classes.update(_AcceptAll=_AcceptAll, _CapOfflineQueue=_CapOfflineQueue, _EnforceKeepAlive=_EnforceKeepAlive)
    globals().update(classes)
    return classes


def _access_plugins() -> dict[str, type]:
    from amqtt.contexts import Action
    from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin

    @dataclass
    class KeyConfig:
        key: str = ""

    class _PasswordFile(BaseAuthPlugin):
        """Admit the accounts of the site's Mosquitto password file, and no one else."""

        Config = KeyConfig

        async def authenticate(self, *, session: Any) -> bool:
            ok = _ACCESS[self.config.key].login(session.username, session.password, session.client_id)
            if not ok:
                self.context.logger.warning("refused login of %r as user %r", session.client_id, session.username)
            return ok

    class _AclFile(BaseTopicPlugin):
        """The site's Mosquitto ACL, applied to every publish, subscribe and delivery."""

        Config = KeyConfig

        async def topic_filtering(self, *, session: Any = None, topic: str | None = None,
                                  action: Any = None) -> bool:
            if session is None or topic is None:
                return False
            acl = _ACCESS[self.config.key].acl
            if action == Action.SUBSCRIBE:
                return acl.allows_subscription(session.username, session.client_id, topic)
            access = "write" if action == Action.PUBLISH else "read"
            return acl.allows(session.username, session.client_id, topic, access)

    return {"_PasswordFile": _PasswordFile, "_AclFile": _AclFile}


def _broker_class() -> dict[str, type]:
    from amqtt.broker import Broker
    from amqtt.contexts import Action

    class _Broker(Broker):
        async def _publish_retained_messages_for_subscription(self, subscription: tuple[str, int],
                                                              session: Any) -> None:
            # amqtt calls this at connect for every filter anyone subscribed to; answer only the
            # client's own subscriptions, at their QoS, with what it may read.
            topic_filter, _ = subscription
            own = [qos for s, qos in self._subscriptions.get(topic_filter, ()) if s.client_id == session.client_id]
            handler = self._get_handler(session)
            if not own or handler is None:
                return
            tasks = [asyncio.ensure_future(handler.mqtt_publish(r.topic, r.data, min(own[0], r.qos or own[0]),
                                                                retain=True))
                     for topic, r in list(self._retained_messages.items())
                     if self._matches(topic, topic_filter)
                     and await self._topic_filtering(session, topic, Action.RECEIVE)]
            if tasks:
                await asyncio.wait(tasks)

    return {"_Broker": _Broker}


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _check_port_free(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        # Same option amqtt uses, so a port in TIME_WAIT after stop() counts as free.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise _startup_error(host, port, exc) from exc


def _startup_error(host: str, port: int, exc: BaseException) -> EmbeddedBrokerError:
    # amqtt wraps the bind failure in its own BrokerError; look underneath.
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, OSError) and cause.errno == errno.EADDRINUSE:
            return EmbeddedBrokerError(f"port {port} on {host} is already in use")
        cause = cause.__cause__
    return EmbeddedBrokerError(f"broker on {host}:{port} failed to start: {exc}")


def _cancel_leftover_tasks(loop: asyncio.AbstractEventLoop) -> None:
    # What asyncio.run() does on exit: connection handlers may still be
    # winding down after shutdown(), and closing the loop under them warns.
    tasks = asyncio.all_tasks(loop)
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
    loop.run_until_complete(loop.shutdown_asyncgens())
