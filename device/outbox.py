"""Which ledger events to (re)send now: in seq order, a bounded window in flight.

The ledger is the outbox. Nothing here is durable on purpose: after a crash or a
reconnect we simply start again from the oldest unacknowledged event, and the
service's idempotent acks make the duplicates harmless.
"""
from __future__ import annotations

from typing import Callable, Iterable, Protocol


class LedgerView(Protocol):
    ledger_id: str

    def pending(self, after_seq: int = 0, limit: int = 100) -> list[dict]: ...

    def acknowledge(self, ledger_id: str, seqs: Iterable[int]) -> list[int]: ...


class Outbox:
    def __init__(
        self,
        ledger: LedgerView,
        send: Callable[[dict], bool],
        *,
        window: int = 100,
        ack_timeout_s: float = 15.0,
    ):
        if window < 1:
            raise ValueError("window must be at least 1")
        self.ledger = ledger
        self.send = send  # returns False when the uplink cannot take it now
        self.window = window
        self.ack_timeout_s = ack_timeout_s
        self.connected = False
        self._in_flight: dict[int, float] = {}  # seq -> last sent at (monotonic)
        self._high = 0  # highest seq sent on this connection
        self.more = False  # the last pump stopped early with events still due

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def connection_up(self) -> None:
        # Whatever was in flight may or may not have arrived: send it all again, oldest first.
        self.connected = True
        self._in_flight.clear()
        self._high = 0

    def connection_down(self) -> None:
        self.connected = False
        self._in_flight.clear()
        self._high = 0

    def acked(self, ledger_id: str, seqs: Iterable[int]) -> list[int]:
        """Delete what the service committed; returns the seqs actually removed."""
        seqs = list(seqs)
        for seq in seqs:
            self._in_flight.pop(seq, None)
        return self.ledger.acknowledge(ledger_id, seqs)

    def pump(self, now: float, *, budget: int | None = None,
             yield_to: Callable[[], bool] = lambda: False) -> int:
        """Send what is due; returns how many events were handed to the uplink.

        At most `budget` events per call, and none once `yield_to()` says something more
        urgent (a citizen's press) is waiting: a backlog must not delay anyone's feedback.
        `more` tells the caller whether to call again soon.
        """
        self.more = False
        if not self.connected:
            return 0
        sent = 0
        expired = sorted(s for s, t in self._in_flight.items() if now - t >= self.ack_timeout_s)
        if expired:
            # An ack went missing: go back and resend from the oldest unacknowledged event.
            self._in_flight.clear()
            self._high = 0
        room = self.window - len(self._in_flight)
        while room > 0:
            batch = self.ledger.pending(after_seq=self._high, limit=room)
            if not batch:
                break
            for event in batch:
                if (budget is not None and sent >= budget) or (sent and yield_to()):
                    self.more = True
                    return sent
                if not self.send(event):
                    return sent
                self._in_flight[event["seq"]] = now
                self._high = event["seq"]
                sent += 1
            room = self.window - len(self._in_flight)
        return sent

    def next_deadline(self) -> float | None:
        if not self._in_flight:
            return None
        return min(self._in_flight.values()) + self.ack_timeout_s
