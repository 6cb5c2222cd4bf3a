"""The ticket kiosk's logic: a pure state machine, like device/counter.py.

A citizen presses a queue's button; the kiosk asks the service for a number (`Request` take)
and waits up to `number_timeout_s`; without an answer (or offline) it takes the next number of
a block the service reserved for it ahead of time. Either way the `take` event is stored
durably *before* the ticket is printed: a printed ticket is the kiosk's "thank you", so it must
never exist without the event that makes it a waiting citizen at the service.

Block numbers are used at most once, ever: what is left of each block is remembered in the
ledger's meta table in the same transaction as the `take` event that used a number (`Store.meta`),
so a power cut cannot separate "printed A041" from "A041 is used".

No I/O here: every method takes `now` (monotonic seconds) and returns effects in order.
`today()` (the site-local date) and `new_id()` (request ids) are injected.
"""
from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from typing import Callable, Mapping, Union

from device.effects import Remember, Show, Store
from protocol.tickets import format_ticket

PRIORITY = "priority"
BLOCK_RETRY_S = 30.0  # ask again for a block the service did not answer
ERROR_S = 3.0
PRINTER_TEXT = {"paper_out": "PAPR", "missing": "noPr", "error": "PErr"}


@dataclass(frozen=True)
class Request:
    """Publish on the kiosk's `request` topic (QoS 1)."""

    body: dict


@dataclass(frozen=True)
class Print:
    """Print this ticket (its `take` event is already stored)."""

    ticket: dict


@dataclass(frozen=True)
class Alarm:
    """The printer-trouble LED (and the display text carries the reason)."""

    on: bool


Effect = Union[Store, Remember, Show, Request, Print, Alarm]


@dataclass(frozen=True)
class KioskSettings:
    queues: Mapping[str, str]  # queue id -> name printed on the ticket
    number_timeout_s: float = 3.0
    block_low: int = 5
    priority_window_s: float = 10.0
    width: int = 4


@dataclass
class _Pending:
    queue: str
    priority: bool
    since: float


@dataclass
class _Blocks:
    """Numbers reserved for this kiosk, per queue: {queue: {"date", "prefix", "ranges": [[next, last]]}}."""

    by_queue: dict[str, dict] = field(default_factory=dict)

    def remaining(self, queue: str, today: str) -> int:
        b = self.by_queue.get(queue)
        if b is None or b["date"] != today:
            return 0
        return sum(last - nxt + 1 for nxt, last in b["ranges"])

    def take(self, queue: str, today: str) -> tuple[str, int] | None:
        """(prefix, number) of the next unused number, consumed; None if there is none for today."""
        if self.remaining(queue, today) == 0:
            return None
        b = self.by_queue[queue]
        nxt, last = b["ranges"][0]
        if nxt == last:
            b["ranges"].pop(0)
        else:
            b["ranges"][0] = [nxt + 1, last]
        return b["prefix"], nxt

    def add(self, queue: str, prefix: str, date: str, first: int, last: int) -> bool:
        b = self.by_queue.get(queue)
        if b is None or b["date"] != date:  # a block of another day is void
            b = self.by_queue[queue] = {"date": date, "prefix": prefix, "ranges": [], "seen": []}
        if first in b["seen"]:  # the same block again (a redelivered command): never reuse it
            return False
        b["seen"].append(first)
        b["prefix"] = prefix
        b["ranges"].append([first, last])
        return True

    def dump(self) -> str:
        return json.dumps(self.by_queue, separators=(",", ":"), sort_keys=True)

    @classmethod
    def load(cls, text: str | None) -> "_Blocks":
        try:
            data = json.loads(text) if text else {}
        except ValueError:
            data = {}
        return cls(data if isinstance(data, dict) else {})


class Kiosk:
    def __init__(self, settings: KioskSettings, *, today: Callable[[], str],
                 blocks: str | None = None, online: bool = False,
                 new_id: Callable[[], str] = lambda: secrets.token_hex(8)):
        self.s = settings
        self.today = today
        self.new_id = new_id
        self.online = online
        self.blocks = _Blocks.load(blocks)
        self.printer = "ok"
        self.last_ticket: str | None = None
        self._pending: dict[str, _Pending] = {}
        self._priority_until: float | None = None
        self._block_asked: dict[str, float] = {}
        self._error_until: float | None = None
        self._shown: str | None = None

    # ----- display ----------------------------------------------------------------------

    def _text(self, now: float) -> str:
        if self.printer in PRINTER_TEXT:
            return PRINTER_TEXT[self.printer]
        if self._error_until is not None and now < self._error_until:
            return "Err"
        if self._priority_until is not None:
            return "UT"
        if self._pending:
            return "...."
        return self.last_ticket or "----"

    def _render(self, now: float) -> list[Effect]:
        text = self._text(now).rjust(self.s.width)[-self.s.width:]
        if text == self._shown:
            return []
        self._shown = text
        return [Show(text)]

    def start(self, now: float) -> list[Effect]:
        return self._render(now)

    # ----- inputs -----------------------------------------------------------------------

    def press(self, button: str, now: float) -> list[Effect]:
        if button == PRIORITY:
            self._priority_until = now + self.s.priority_window_s
            return self._render(now)
        if button not in self.s.queues:
            return []
        if self.printer != "ok":  # no number for a ticket we cannot print
            return self._render(now)
        priority = self._priority_until is not None
        self._priority_until = None
        if not self.online:
            return self._from_block(button, priority, now)
        req = self.new_id()
        self._pending[req] = _Pending(button, priority, now)
        effects: list[Effect] = [Request({"req": req, "op": "take", "queue": button, "priority": priority})]
        return effects + self._render(now)

    def release(self, button: str, now: float) -> list[Effect]:
        return []

    def number(self, cmd: Mapping, now: float) -> list[Effect]:
        """The service's `number` answer; one for a request we no longer wait on is a gap, ignored."""
        pending = self._pending.pop(cmd.get("req"), None)
        if pending is None:
            return []
        if cmd.get("error") or not cmd.get("ticket"):
            # Refused (unknown queue, sequence exhausted, ...): a reserved number, if the service
            # gave us any for this queue, is still ours to print.
            return self._from_block(pending.queue, pending.priority, now)
        return self._take(pending, cmd["ticket"], cmd.get("ahead"), "service", cmd.get("date") or self.today(),
                          now, meta={})

    def block(self, cmd: Mapping, now: float) -> list[Effect]:
        """A block the service reserved for us; one for another day is void."""
        queue = cmd.get("queue")
        self._block_asked.pop(queue, None)
        if cmd.get("date") != self.today() or queue not in self.s.queues:
            return []
        if not self.blocks.add(queue, cmd["prefix"], cmd["date"], int(cmd["first"]), int(cmd["last"])):
            return []
        return [Remember("kiosk_blocks", self.blocks.dump())]

    def set_online(self, online: bool, now: float) -> list[Effect]:
        self.online = online
        effects: list[Effect] = []
        if not online:
            self._block_asked.clear()
            for req in list(self._pending):
                p = self._pending.pop(req)
                effects += self._from_block(p.queue, p.priority, now)
        else:
            effects += self._ask_blocks(now)
        return effects + self._render(now)

    def printer_state(self, state: str, now: float) -> list[Effect]:
        was_ok = self.printer == "ok"
        self.printer = state
        effects: list[Effect] = [Alarm(state != "ok")] if was_ok != (state == "ok") else []
        return effects + self._render(now)

    def printed(self, ticket: dict, state: str, now: float) -> list[Effect]:
        return self.printer_state(state, now)

    # ----- the counter's interface the runtime also calls --------------------------------

    def stored(self, event: Mapping) -> None:
        pass

    def busy(self) -> bool:
        """A citizen waits for a number: no software switch may happen now."""
        return bool(self._pending)

    def badge(self, uid: str, now: float) -> list[Effect]:
        return []

    def set_officer(self, officer, now: float) -> list[Effect]:
        return []

    def snapshot(self) -> dict:
        state = {k: v for k, v in vars(self).items() if k != "blocks"}
        state = {k: v.copy() if isinstance(v, (dict, list)) else v for k, v in state.items()}
        state["blocks"] = self.blocks.dump()
        return state

    def restore(self, state: dict) -> None:
        shown = self._shown
        state = dict(state)
        self.blocks = _Blocks.load(state.pop("blocks"))
        self.__dict__.update(state)
        self._shown = shown

    def refused(self, now: float) -> list[Effect]:
        self._error_until = now + ERROR_S
        return self._render(now)

    # ----- time -------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        times = [p.since + self.s.number_timeout_s for p in self._pending.values()]
        times += [t for t in (self._priority_until, self._error_until) if t is not None]
        return min(times) if times else None

    def tick(self, now: float) -> list[Effect]:
        effects: list[Effect] = []
        for req, p in list(self._pending.items()):
            if now >= p.since + self.s.number_timeout_s:
                del self._pending[req]
                effects += self._from_block(p.queue, p.priority, now)
        if self._priority_until is not None and now >= self._priority_until:
            self._priority_until = None
        if self._error_until is not None and now >= self._error_until:
            self._error_until = None
        # A lost block answer is asked again; at midnight yesterday's blocks are void and today's are asked.
        effects += self._ask_blocks(now)
        return effects + self._render(now)

    # ----- taking a number --------------------------------------------------------------

    def _from_block(self, queue: str, priority: bool, now: float) -> list[Effect]:
        today = self.today()
        taken = self.blocks.take(queue, today)
        if taken is None:  # no number no other kiosk could print: say so, print nothing
            self._error_until = now + ERROR_S
            return self._ask_blocks(now) + self._render(now)
        prefix, n = taken
        pending = _Pending(queue, priority, now)
        return self._take(pending, format_ticket(prefix, n), None, "block", today, now,
                          meta={"kiosk_blocks": self.blocks.dump()})

    def _take(self, p: _Pending, ticket: str, ahead: int | None, source: str, date: str, now: float,
              *, meta: dict) -> list[Effect]:
        fields = {"officer": None, "ticket": ticket, "queue": p.queue, "priority": p.priority,
                  "source": source, "date": date}
        self.last_ticket = ticket
        printed = {"ticket": ticket, "queue": p.queue, "name": self.s.queues[p.queue], "ahead": ahead,
                   "priority": p.priority, "date": date, "source": source}
        effects: list[Effect] = [Store("take", fields, meta=tuple(meta.items())), Print(printed)]
        return effects + self._ask_blocks(now) + self._render(now)

    def _ask_blocks(self, now: float) -> list[Effect]:
        if not self.online:
            return []
        today = self.today()
        effects: list[Effect] = []
        for queue in self.s.queues:
            asked = self._block_asked.get(queue)
            if self.blocks.remaining(queue, today) >= max(1, self.s.block_low):
                continue
            if asked is not None and now < asked + BLOCK_RETRY_S:
                continue
            self._block_asked[queue] = now
            effects.append(Request({"req": self.new_id(), "op": "block", "queue": queue, "date": today}))
        return effects
