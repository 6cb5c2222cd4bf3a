"""Which events go out when: seq order, bounded window, resend on reconnect and on timeout."""
import pytest

from device.ledger import Ledger
from device.outbox import Outbox


@pytest.fixture
def ledger(tmp_path):
    lg = Ledger.open(tmp_path / "ledger.db")
    yield lg
    lg.close()


def fill(ledger, n):
    return [ledger.append({"type": "rating", "ledger": None, "seq": None, "score": 3}) for _ in range(n)]


class Wire:
    def __init__(self):
        self.sent = []
        self.up = True

    def __call__(self, event):
        if self.up:
            self.sent.append(event["seq"])
        return self.up


def test_sends_in_seq_order_up_to_the_window(ledger):
    fill(ledger, 10)
    wire = Wire()
    box = Outbox(ledger, wire, window=4, ack_timeout_s=10)
    assert box.pump(0) == 0  # not connected yet
    box.connection_up()
    assert box.pump(0) == 4 and wire.sent == [1, 2, 3, 4]
    assert box.pump(1) == 0  # window full
    assert box.acked(ledger.ledger_id, [1, 2]) == [1, 2]
    box.pump(2)
    assert wire.sent == [1, 2, 3, 4, 5, 6]
    assert ledger.backlog() == 8


def test_reconnect_resends_everything_unacked_from_the_oldest(ledger):
    fill(ledger, 5)
    wire = Wire()
    box = Outbox(ledger, wire, window=10)
    box.connection_up()
    box.pump(0)
    box.acked(ledger.ledger_id, [2])
    box.connection_down()
    fill(ledger, 1)
    assert box.pump(1) == 0
    box.connection_up()
    box.pump(2)
    assert wire.sent == [1, 2, 3, 4, 5, 1, 3, 4, 5, 6]


def test_missing_ack_times_out_and_resends(ledger):
    fill(ledger, 3)
    wire = Wire()
    box = Outbox(ledger, wire, window=10, ack_timeout_s=5)
    box.connection_up()
    box.pump(0)
    assert box.next_deadline() == 5
    box.acked(ledger.ledger_id, [1])
    assert box.pump(4.9) == 0
    assert box.pump(5.0) == 2 and wire.sent == [1, 2, 3, 2, 3]


def test_uplink_refusal_stops_the_pump_and_keeps_order(ledger):
    fill(ledger, 3)
    wire = Wire()
    box = Outbox(ledger, wire, window=10)
    box.connection_up()
    wire.up = False
    assert box.pump(0) == 0 and box.in_flight == 0
    wire.up = True
    box.pump(1)
    assert wire.sent == [1, 2, 3]


def test_ack_for_another_ledger_deletes_nothing(ledger):
    fill(ledger, 2)
    box = Outbox(ledger, Wire(), window=10)
    assert box.acked("0123456789abcdef", [1, 2]) == []
    assert ledger.backlog() == 2


def test_held_event_blocks_later_ones_until_released(ledger):
    ledger.append({"type": "rating", "ledger": None, "seq": None}, held=True)
    fill(ledger, 2)
    wire = Wire()
    box = Outbox(ledger, wire, window=10)
    box.connection_up()
    assert box.pump(0) == 0
    ledger.finalize_held({"reason": "Chờ lâu"})
    box.pump(1)
    assert wire.sent == [1, 2, 3]


def test_budget_and_waiting_input_cut_a_pass_short(ledger):
    fill(ledger, 50)
    wire = Wire()
    box = Outbox(ledger, wire, window=100)
    box.connection_up()
    assert box.pump(0, budget=10) == 10 and box.more
    # A press is waiting: send at least one event per pass, then give way.
    assert box.pump(0, yield_to=lambda: True) == 1 and box.more
    assert box.pump(0) == 39 and not box.more
    assert wire.sent == list(range(1, 51))
