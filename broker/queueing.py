"""The queue's service side (issue 13): kiosk requests, and calls at counters that serve queues.

The ingest worker hands over each `request` message and each counted call event it has just
committed; everything here is a store transaction, then a command to the device. Numbers are
handed out to requests (a `number`, or a `block` for offline use), but a ticket waits only once
its `take` event is stored (broker.store.tickets, inside the ingest batch): a number handed
out but never printed is a gap, never a citizen. Counters that serve no queue keep the site's
daily number (broker.ingest).
"""
from __future__ import annotations

import logging
from datetime import date, timedelta
from typing import Callable

from broker.store import QueueRefusal
from common.periods import DEFAULT_TZ, local_day, zone
from protocol import ProtocolError
from protocol.tickets import decode_request

__all__ = ["BLOCK_SIZE", "IDLE", "QueueDesk"]

log = logging.getLogger("hailong.queue")

BLOCK_SIZE = 10  # numbers per reserved block: a kiosk asks for the next one before it runs out
IDLE = "----"  # what a counter shows when nobody waits in its queues


class QueueDesk:
    """`command(device, cmd, **fields)` sends a cmd (False if it could not be built); `now_ms` is the clock."""

    def __init__(self, store, command: Callable[..., bool], now_ms: Callable[[], int], block_size: int = BLOCK_SIZE):
        self.store = store
        self._command = command
        self._now_ms = now_ms
        self.block_size = block_size

    # ----- kiosk requests ---------------------------------------------------------------------

    def request(self, device: str, payload: bytes) -> None:
        """Answer a kiosk's request with a `number` or a `block` command; a malformed one is logged and dropped."""
        try:
            req = decode_request(payload)
        except ProtocolError as e:
            log.warning("ignoring malformed request from %s: %s", device, e)
            return
        try:
            site, today = self._site_of(device)
            if req["op"] == "take":
                self._take(device, req, site, today)
            else:
                self._block(device, req, site, today)
        except ValueError as e:  # QueueRefusal, or anything else about this request: never a reason to stop ingest
            log.warning("refused %s request %s of %s: %s", req["op"], req["req"], device, e)
            if req["op"] == "take":  # a block has no refusal on the wire: the kiosk simply asks again
                self._command(device, "number", req=req["req"], error=str(e)[:200])

    def _site_of(self, device: str) -> tuple[str, str]:
        """The site a kiosk is registered at, and that site's today; QueueRefusal for an unknown kiosk."""
        row = self.store.device(device)
        if row is None or not row["registered"] or not row["site"]:
            raise QueueRefusal(f"device {device!r} is not registered at a site")
        site = self.store.site(row["site"])
        tz = zone(site["tz"] if site else DEFAULT_TZ)
        return row["site"], local_day(self._now_ms(), tz)

    def _take(self, device: str, req: dict, site: str, today: str) -> None:
        got = self.store.allocate_number(device, req["req"], site, today, req["queue"], req["priority"],
                                         self._now_ms())
        self._command(device, "number", req=req["req"], queue=req["queue"], ticket=got["ticket"],
                      ahead=got["ahead"], date=got["day"])

    def _block(self, device: str, req: dict, site: str, today: str) -> None:
        tomorrow = (date.fromisoformat(today) + timedelta(days=1)).isoformat()
        if req["date"] not in (today, tomorrow):
            raise QueueRefusal(f"a block is reserved for today ({today}) or tomorrow, not {req['date']}")
        got = self.store.reserve_block(device, req["req"], site, req["date"], req["queue"], self.block_size,
                                       self._now_ms())
        self._command(device, "block", req=req["req"], queue=got["queue"], prefix=got["prefix"], date=got["day"],
                      first=got["first"], last=got["last"])

    # ----- calls at counters ------------------------------------------------------------------

    def call(self, ev: dict, live: bool) -> bool:
        """Apply a counted call event if its counter serves queues, answering a live one; False if it serves none."""
        if not self.store.counter_queues(ev["site"], ev["counter"]):
            return False  # a read: most calls are at counters without queues, and need no write here
        result = self.store.queue_call(ev["device"], ev["ledger"], ev["seq"], live)
        if result is None:
            return False
        if not live or ev["action"] == "close" or (result.get("again") and result["ticket"] is None):
            return True  # nothing to show (an applied call's idle sign or finish is not worth repeating)
        if result["ticket"] is None:
            self._command(ev["device"], "ticket", ticket=IDLE, seq=ev["seq"], idle=True)
        else:
            self._command(ev["device"], "ticket", ticket=result["ticket"], seq=ev["seq"])
        return True
