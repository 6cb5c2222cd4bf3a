"""sd_notify(3) without libsystemd, for deploy/hailong-device.service.

With Type=notify systemd considers the counter started only once we send
READY=1, and with WatchdogSec= it restarts us when WATCHDOG=1 stops coming,
which is what turns a hung GPIO or MQTT loop into a restart instead of a
dead counter. Outside systemd every call is a harmless no-op.
"""
from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


def notify(state: str) -> bool:
    """Send one sd_notify datagram; True if systemd's socket accepted it.

    False when not started by systemd (no NOTIFY_SOCKET) or when sending
    fails. A failure is logged, not raised: losing a status line must never
    take down the counter, and a lost watchdog ping surfaces as a restart.
    """
    address = os.environ.get("NOTIFY_SOCKET", "")
    if address.startswith("@"):
        address = "\0" + address[1:]  # Linux abstract namespace
    elif not address.startswith("/"):
        return False  # unset, or a kind (vsock:) a Pi never gets
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(state.encode(), address)
    except OSError as exc:
        log.warning("sd_notify %r failed: %s", state, exc)
        return False
    return True


def ready() -> bool:
    return notify("READY=1")


def stopping() -> bool:
    return notify("STOPPING=1")


def status(text: str) -> bool:
    # One assignment per line is the protocol: a newline would end STATUS early.
    return notify("STATUS=" + " ".join(text.splitlines()))


def watchdog_ping() -> bool:
    return notify("WATCHDOG=1")


def watchdog_interval() -> float | None:
    """Seconds between watchdog pings, or None if systemd expects none from us.

    Half of WatchdogSec=, as sd_watchdog_enabled(3) recommends, so one late
    ping is not fatal. WATCHDOG_PID, when set, names the process the watchdog
    is for; a child that inherited the environment must not ping.
    """
    try:
        usec = int(os.environ.get("WATCHDOG_USEC", ""))
        pid = os.environ.get("WATCHDOG_PID")
        if pid is not None and int(pid) != os.getpid():
            return None
    except ValueError:
        return None
    if usec <= 0:
        return None
    return usec / 2_000_000
