"""The counter's logic: a pure state machine fed by inputs and a clock reading.

No I/O happens here. Every method takes `now` (monotonic seconds) and returns a list of
effects for the runtime to carry out in order. The order is the promise: a `Store` comes
before any `Show`/`Led`/`Beep` it causes, so the runtime has committed the vote to the
ledger before the citizen sees "thank you".
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from device.effects import Beep, Effect, Finalize, Led, Remember, Show, Store  # noqa: F401 - re-exported

STAFF_BUTTONS = ("next", "recall")
ERROR_S = 3.0  # how long "Err" stays when a press could not be stored
_CURRENT = object()  # "the ticket on the display now", distinct from an explicit None


@dataclass(frozen=True)
class Officer:
    id: str
    name: str = ""
    code: str = ""




@dataclass(frozen=True)
class CounterSettings:
    scale: int = 4
    width: int = 4
    repeat_gap_s: float = 15.0
    grace_s: float = 10.0
    feedback_s: float = 1.5
    reasons: tuple[str, ...] = ()
    ask_reason_max_score: int = 1
    reason_window_s: float = 6.0
    hold_close_s: float = 3.0
    hold_noshow_s: float = 1.5
    ticket_timeout_s: float = 2.0
    recall_blinks: int = 3
    blink_s: float = 0.3


@dataclass
class _Frames:
    """A short display animation played over the base text, then dropped."""

    frames: list[tuple[float, str]] = field(default_factory=list)  # (until, text)


class Counter:
    """State of one counter: current ticket, officer, pending questions, display and LEDs."""

    def __init__(
        self,
        settings: CounterSettings,
        *,
        badges: Mapping[str, Officer] | None = None,
        officer: Officer | None = None,
        fallback_next: int = 1,
        online: bool = False,
    ):
        self.s = settings
        self.badges = {k.upper(): v for k, v in (badges or {}).items()}
        self.officer = officer
        self.online = online
        self.fallback_next = fallback_next
        self.ticket: str | None = None
        self.closed = False
        self._ticket_rated = False
        self._prev_ticket: str | None = None
        self._prev_rated = False
        self._prev_until = 0.0
        self._last_counted_at: float | None = None
        self._held: set[int] = set()
        self._next_down_at: float | None = None
        self._recall_down_at: float | None = None
        self.idle = False  # the service said nobody is waiting for this counter
        self._awaiting_since: float | None = None  # NEXT sent, service's number not yet here
        self._last_call_seq: int | None = None
        self._reason_until: float | None = None
        self._frames: list[tuple[float, str]] = []
        self._led_off: dict[int, float] = {}
        self._identify_until: float | None = None
        self._identify_phase = False
        self._identify_toggle_at = 0.0
        self._shown: str | None = None

    # ----- what the display shows -------------------------------------------------

    def fit(self, text: str) -> str:
        """Right-align to the display width (the rightmost characters win when too long)."""
        return text.rjust(self.s.width)[-self.s.width:]

    def base_text(self) -> str:
        if self.closed:
            return self.fit("OFF")
        if self.ticket is None:
            return self.fit("IdLE") if self.idle and self.s.width >= 4 else "-" * self.s.width
        return self.fit(self.ticket)

    def _render(self, now: float) -> list[Effect]:
        while self._frames and self._frames[0][0] <= now:
            self._frames.pop(0)
        if self._identify_until is not None:
            text = ("8" * self.s.width) if self._identify_phase else " " * self.s.width
        elif self._frames:
            text = self._frames[0][1]
        else:
            text = self.base_text()
        if text == self._shown:
            return []
        self._shown = text
        return [Show(text)]

    def _play(self, now: float, texts: list[str], each: float) -> None:
        self._frames = [(now + each * (i + 1), self.fit(t)) for i, t in enumerate(texts)]

    def start(self, now: float) -> list[Effect]:
        """First frame after boot."""
        return self._render(now)

    # ----- inputs -----------------------------------------------------------------

    def press(self, button: str, now: float) -> list[Effect]:
        if button in STAFF_BUTTONS:
            return self._staff_press(button, now)
        index = int(button)
        if not 1 <= index <= self.s.scale:
            return []
        chord = bool(self._held - {index})
        self._held.add(index)
        if self._reason_until is not None:
            return self._choose_reason(index, now)
        return self._rate(index, chord, now)

    def release(self, button: str, now: float) -> list[Effect]:
        if button == "next":
            return self._next_release(now)
        if button == "recall":
            return self._recall_release(now)
        if button not in STAFF_BUTTONS:
            self._held.discard(int(button))
        return []

    def badge(self, uid: str, now: float) -> list[Effect]:
        uid = uid.upper()
        known = self.badges.get(uid)
        effects: list[Effect] = self._end_reason(now)
        leaving = self.officer
        same = leaving is not None and known is not None and known.id == leaving.id
        if leaving is not None:
            effects.append(self._store("signout", now, method="badge", badge=uid))
            self.officer = None
        if not same:
            # An unknown badge is recorded too (officer null): the service may resolve it.
            self.officer = known
            effects.append(self._store("signin", now, method="badge", badge=uid))
        effects += self._remember_officer()
        effects += self._announce_officer(now)
        return effects

    def set_officer(self, officer: Officer | None, now: float) -> list[Effect]:
        """Officer set centrally (retained assignment or `officer` command)."""
        if (officer.id if officer else None) == (self.officer.id if self.officer else None):
            if officer != self.officer:  # same person, new name or code
                self.officer = officer
                return self._remember_officer() + self._announce_officer(now)
            return []
        effects: list[Effect] = self._end_reason(now)
        if self.officer is not None:
            effects.append(self._store("signout", now, method="central"))
        self.officer = officer
        if officer is not None:
            effects.append(self._store("signin", now, method="central"))
        return effects + self._remember_officer() + self._announce_officer(now)

    def snapshot(self) -> dict:
        """All of the counter's state, to `restore` if the effects of a step cannot be carried out."""
        return {k: v.copy() if isinstance(v, (list, dict, set)) else v for k, v in vars(self).items()}

    def restore(self, state: dict) -> None:
        shown = self._shown  # what the display shows now is a fact, whatever the step had planned
        self.__dict__.update({k: v.copy() if isinstance(v, (list, dict, set)) else v for k, v in state.items()})
        self._shown = shown

    def refused(self, now: float) -> list[Effect]:
        """The ledger refused to store (full or failing disk): say so instead of "thank you"."""
        self._play(now, ["Err"], ERROR_S)
        return self._render(now)

    def stored(self, event: Mapping) -> None:
        """The runtime tells us the seq a `call next` got, to match the service's answer."""
        if event.get("type") == "call" and event.get("action") in ("next", "noshow"):
            self._last_call_seq = event.get("seq")

    def ticket_answer(self, ticket: str, seq: int, now: float) -> list[Effect]:
        """The service's number for our call `seq`. Answers to older calls are stale."""
        return self._answer(ticket, seq, now)

    def idle_answer(self, seq: int, now: float) -> list[Effect]:
        """The service's answer to our call `seq`: nobody is waiting in this counter's queues."""
        return self._answer(None, seq, now)

    def _answer(self, ticket: str | None, seq: int, now: float) -> list[Effect]:
        if seq != self._last_call_seq or self.closed:
            return []
        self._awaiting_since = None
        self._last_call_seq = None
        self.idle = ticket is None
        self._new_ticket(ticket, now, keep_grace=False)
        return self._render(now)

    def display_ticket(self, ticket: str, now: float) -> list[Effect]:
        """A third-party queue system put a number on this counter."""
        self._awaiting_since = None
        self.closed = False
        self.idle = False
        self._new_ticket(ticket, now, keep_grace=True)
        return self._render(now)

    def identify(self, seconds: float, now: float) -> list[Effect]:
        self._identify_until = now + seconds
        self._identify_phase = True
        self._identify_toggle_at = now + self.s.blink_s
        return [Led(0, True)] + self._render(now)

    def set_online(self, online: bool, now: float) -> list[Effect]:
        self.online = online
        if not online and self._awaiting_since is not None:
            return self._fallback(now)
        return []

    # ----- time ---------------------------------------------------------------------

    def busy(self) -> bool:
        """A citizen or officer is mid-way: a reason question open, an event held, NEXT down or its
        ticket awaited. No software switch may happen now."""
        return (self._reason_until is not None or bool(self._held) or self._next_down_at is not None
                or self._awaiting_since is not None)

    def next_deadline(self) -> float | None:
        times = [t for t, _ in self._frames[:1]]
        times += self._led_off.values()
        if self._next_down_at is not None:
            times.append(self._next_down_at + self.s.hold_close_s)
        if self._recall_down_at is not None:
            times.append(self._recall_down_at + self.s.hold_noshow_s)
        if self._awaiting_since is not None:
            times.append(self._awaiting_since + self.s.ticket_timeout_s)
        if self._reason_until is not None:
            times.append(self._reason_until)
        if self._identify_until is not None:
            times.append(min(self._identify_until, self._identify_toggle_at))
        return min(times) if times else None

    def tick(self, now: float) -> list[Effect]:
        effects: list[Effect] = []
        if self._next_down_at is not None and now >= self._next_down_at + self.s.hold_close_s:
            self._next_down_at = None
            effects += self._close(now)
        if self._recall_down_at is not None and now >= self._recall_down_at + self.s.hold_noshow_s:
            self._recall_down_at = None
            effects += self._call_next(now, "noshow")
        if self._awaiting_since is not None and now >= self._awaiting_since + self.s.ticket_timeout_s:
            effects += self._fallback(now)
        if self._reason_until is not None and now >= self._reason_until:
            effects += self._end_reason(now)
        if self._identify_until is not None:
            if now >= self._identify_until:
                self._identify_until = None
                effects.append(Led(0, False))
            elif now >= self._identify_toggle_at:
                self._identify_phase = not self._identify_phase
                self._identify_toggle_at = now + self.s.blink_s
                effects.append(Led(0, self._identify_phase))
        for index, off_at in sorted(self._led_off.items()):
            if now >= off_at:
                del self._led_off[index]
                effects.append(Led(index, False))
        return effects + self._render(now)

    # ----- rating -------------------------------------------------------------------

    def _rate(self, score: int, chord: bool, now: float) -> list[Effect]:
        flags: list[str] = []
        in_grace = self._prev_ticket is not None and now < self._prev_until
        if in_grace:
            # Just after NEXT, presses belong to the citizen who is leaving, not the one arriving.
            target = self._prev_ticket
            counted_before = self._prev_rated
        elif self.ticket is not None:
            target = self.ticket
            counted_before = self._ticket_rated
        else:
            target = None
            last = self._last_counted_at
            counted_before = last is not None and now - last < self.s.repeat_gap_s
        if counted_before:
            flags.append("repeat")
        if chord:
            flags.append("chord")
        if not flags:
            if in_grace:
                self._prev_rated = True
            elif target is not None:
                self._ticket_rated = True
            else:
                self._last_counted_at = now
        ask = (
            not flags
            and bool(self.s.reasons)
            and score <= self.s.ask_reason_max_score
        )
        effects: list[Effect] = [
            self._store(
                "rating", now, ticket=target, score=score, scale=self.s.scale,
                flags=flags, reason=None, held=ask,
            )
        ]
        effects += self._feedback(score, now)
        if ask:
            self._reason_until = now + self.s.reason_window_s
            n = len(self.s.reasons)
            self._frames = [(self._reason_until, self.fit(f"?1-{n}" if n > 1 else "?"))]
            for i in range(1, n + 1):
                if i != score:
                    effects.append(Led(i, True))
                self._led_off[i] = self._reason_until
        return effects + self._render(now)

    def _feedback(self, score: int, now: float) -> list[Effect]:
        self._led_off[score] = now + self.s.feedback_s
        third = self.s.feedback_s / 3
        self._play(now, [f"-{score}-", f"={score}=", f"-{score}-"], third)
        return [Led(score, True), Beep()]

    def _choose_reason(self, index: int, now: float) -> list[Effect]:
        self._reason_until = None
        if index > len(self.s.reasons):
            return self._release_reason_leds(now) + [Finalize({})] + self._rate(index, False, now)
        effects: list[Effect] = self._release_reason_leds(now)
        effects.append(Finalize({"reason": self.s.reasons[index - 1]}))
        effects += self._feedback(index, now)
        return effects + self._render(now)

    def _end_reason(self, now: float) -> list[Effect]:
        if self._reason_until is None:
            return []
        self._reason_until = None
        self._frames = []
        return self._release_reason_leds(now) + [Finalize({})]

    def _release_reason_leds(self, now: float) -> list[Effect]:
        effects: list[Effect] = []
        for i in range(1, len(self.s.reasons) + 1):
            if self._led_off.pop(i, None) is not None:
                effects.append(Led(i, False))
        return effects

    # ----- staff ---------------------------------------------------------------------

    def _staff_press(self, button: str, now: float) -> list[Effect]:
        effects = self._end_reason(now)
        if button == "next":
            # Act on release: a long hold means "close the counter", not "next".
            self._next_down_at = now
            return effects
        # Also on release: a long hold of RECALL means "no-show, call the next one".
        self._recall_down_at = now
        return effects

    def _recall_release(self, now: float) -> list[Effect]:
        if self._recall_down_at is None:  # the hold already marked a no-show
            return []
        self._recall_down_at = None
        effects: list[Effect] = [self._store("call", now, action="recall")]
        if self.ticket is not None:
            blank = " " * self.s.width
            texts = [self.base_text(), blank] * self.s.recall_blinks
            self._play(now, [blank] + texts[:-1], self.s.blink_s)
        return effects + self._render(now)

    def _next_release(self, now: float) -> list[Effect]:
        if self._next_down_at is None:  # the hold already closed the counter
            return []
        self._next_down_at = None
        return self._call_next(now, "next")

    def _call_next(self, now: float, action: str) -> list[Effect]:
        self.closed = False
        self.idle = False
        effects: list[Effect] = [self._store("call", now, action=action)]
        if action == "noshow":  # its citizen never came: no grace window to rate the ticket
            self.ticket = None
        self._retire_ticket(now)
        self._frames = []
        self._awaiting_since = now
        if not self.online:
            effects += self._fallback(now)
        return effects + self._render(now)

    def _close(self, now: float) -> list[Effect]:
        effects: list[Effect] = [self._store("call", now, action="close")]
        self._retire_ticket(now)
        self._awaiting_since = None
        self._last_call_seq = None
        self.closed = True
        self._frames = []
        return effects + self._render(now)

    def _fallback(self, now: float) -> list[Effect]:
        """No answer from the service: show a counter-local number at once ("L" = local)."""
        self._awaiting_since = None
        n = self.fallback_next
        self.fallback_next += 1
        digits = max(1, self.s.width - 1)
        self._new_ticket(f"L{n % 10 ** digits:0{digits}d}", now, keep_grace=False)
        return [Remember("fallback_next", str(self.fallback_next))] + self._render(now)

    def _retire_ticket(self, now: float) -> None:
        """The served ticket keeps a grace window for its citizen's (late or repeated) press."""
        if self.ticket is not None:
            self._prev_ticket = self.ticket
            self._prev_rated = self._ticket_rated
            self._prev_until = now + self.s.grace_s
        self.ticket = None
        self._ticket_rated = False

    def _new_ticket(self, ticket: str | None, now: float, *, keep_grace: bool) -> None:
        if keep_grace:
            self._retire_ticket(now)
        self.ticket = ticket
        self._ticket_rated = False
        self._frames = []

    # ----- officer --------------------------------------------------------------------

    def _remember_officer(self) -> list[Effect]:
        o = self.officer
        value = "" if o is None else "\x1f".join((o.id, o.name, o.code))
        return [Remember("officer", value)]

    def _announce_officer(self, now: float) -> list[Effect]:
        text = f"P{self.officer.code}" if self.officer and self.officer.code else "P--"
        self._play(now, [text], self.s.feedback_s)
        return self._render(now)

    @staticmethod
    def officer_from_memory(value: str | None) -> Officer | None:
        if not value:
            return None
        parts = value.split("\x1f")
        return Officer(*parts[:3]) if len(parts) >= 3 else None

    # ----- events ---------------------------------------------------------------------

    def _store(self, type_: str, now: float, *, ticket: object = _CURRENT, held: bool = False, **fields) -> Store:
        body = {
            "officer": self.officer.id if self.officer else None,
            "ticket": self.ticket if ticket is _CURRENT else ticket,
        }
        body.update(fields)
        return Store(type_, body, held=held)
