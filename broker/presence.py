"""Where each counter is: online or not, and on which broker, from its statuses on every broker.

With several brokers (`[mqtt] hosts`, docs/brokers.md) a counter is connected to one at a time,
but every broker keeps what it last heard from it, and the service hears them all:

- a counter that left broker A ungracefully (A unreachable from the counter, or A stopped while
  holding the counter's session) has its will, `offline`, published on A, possibly long after it
  said `online` on B. That late `offline` is not about where the counter is now: ignored.
- a broker that was stopped and restarted with its persistence still holds the counter's retained
  `online` from before the counter moved on. The service gets it again (a retained copy) when it
  subscribes there. A replayed `online` older (by the counter's `ts`) than the one that placed the
  counter on another broker is stale: ignored, or it would keep the counter online after it leaves.

What is not ignored: any status from the broker the counter is on; a live (not retained) `online`
from anywhere, since the counter just said it on that connection (also after a reboot whose clock
runs behind); a replayed `online` at least as new as the one the service holds.

One broker is the special case where nothing is ever ignored: the behaviour of a single broker.
Used by the ingest worker thread only; no locking.
"""
from __future__ import annotations

__all__ = ["Presence"]


class Presence:
    def __init__(self) -> None:
        self._on: dict[str, tuple[int, int]] = {}  # device -> (broker, ts of the online that put it there)
        self._last: dict[str, int] = {}  # device -> the broker it was last heard on

    def status(self, device: str, broker: int, online: bool, ts: int | None, *, replayed: bool) -> bool:
        """Apply a status heard on `broker`; False if it is stale and says nothing about the device now."""
        here = self._on.get(device)
        elsewhere = here is not None and here[0] != broker
        if online:
            if elsewhere and replayed and (ts or 0) < here[1]:
                return False
            self._on[device] = (broker, ts or 0)
        elif elsewhere:
            return False
        else:
            self._on.pop(device, None)
        self._last[device] = broker
        return True

    def heard(self, device: str, broker: int) -> None:
        """Anything but a status came from the device on `broker`: where its session is, if it goes offline."""
        self._last[device] = broker

    def online(self, device: str) -> bool:
        return device in self._on

    def broker(self, device: str) -> int | None:
        """The broker to reach the device on: the one it is online on, else the one last heard from."""
        here = self._on.get(device)
        return here[0] if here is not None else self._last.get(device)
