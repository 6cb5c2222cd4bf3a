"""The kiosk's state machine: requests, timeouts, reserved blocks, the store-before-print order."""
from __future__ import annotations

import itertools

from device.counter import Remember, Show, Store
from device.kiosk import Alarm, Kiosk, KioskSettings, Print, Request

QUEUES = {"A": "Đất đai", "B": "Tư pháp – Hộ tịch"}
TODAY = "2026-11-30"


def make(online=True, blocks=None, today=TODAY, **kw) -> Kiosk:
    ids = (f"{i:016x}" for i in itertools.count(1))
    settings = KioskSettings(queues=QUEUES, number_timeout_s=3.0, block_low=kw.pop("block_low", 2), **kw)
    return Kiosk(settings, today=lambda: today, blocks=blocks, online=online, new_id=lambda: next(ids))


def of(effects, kind):
    return [e for e in effects if isinstance(e, kind)]


def give_block(k: Kiosk, first=41, last=45, queue="A", date=TODAY, now=0.0):
    return k.block({"cmd": "block", "queue": queue, "prefix": queue, "date": date, "first": first, "last": last}, now)


def test_press_asks_the_service_and_prints_its_number_after_storing_it():
    k = make(blocks=None)
    effects = k.press("A", 0.0)
    (req,) = [r for r in of(effects, Request) if r.body["op"] == "take"]
    assert req.body == {"req": req.body["req"], "op": "take", "queue": "A", "priority": False}
    assert not of(effects, Store) and not of(effects, Print)
    effects = k.number({"cmd": "number", "req": req.body["req"], "queue": "A", "ticket": "A012", "ahead": 3,
                        "date": TODAY}, 1.0)
    kinds = [type(e) for e in effects if isinstance(e, (Store, Print))]
    assert kinds == [Store, Print]  # the promise: stored, then printed
    store, printed = of(effects, Store)[0], of(effects, Print)[0]
    assert store.type == "take"
    assert store.fields == {"officer": None, "ticket": "A012", "queue": "A", "priority": False,
                            "source": "service", "date": TODAY}
    assert printed.ticket["ticket"] == "A012" and printed.ticket["ahead"] == 3
    assert printed.ticket["name"] == "Đất đai"
    assert Show("A012") in effects


def test_priority_button_then_queue_asks_for_a_priority_ticket():
    k = make()
    k.press("priority", 0.0)
    (req,) = [r for r in of(k.press("B", 1.0), Request) if r.body["op"] == "take"]
    assert req.body["priority"] is True and req.body["queue"] == "B"
    # The priority press is used up by one ticket.
    (req2,) = [r for r in of(k.press("B", 2.0), Request) if r.body["op"] == "take"]
    assert req2.body["priority"] is False


def test_priority_press_expires():
    k = make(priority_window_s=5.0)
    k.press("priority", 0.0)
    k.tick(6.0)
    (req,) = [r for r in of(k.press("A", 6.1), Request) if r.body["op"] == "take"]
    assert req.body["priority"] is False


def test_no_answer_within_the_timeout_prints_from_the_block():
    k = make()
    give_block(k, 41, 45)
    k.press("A", 0.0)
    assert k.next_deadline() == 3.0
    assert not of(k.tick(2.9), Store)
    effects = k.tick(3.0)
    (store,) = of(effects, Store)
    assert store.fields["ticket"] == "A041" and store.fields["source"] == "block"
    # What is left of the block is written with the event itself, not after it.
    meta = dict(store.meta)
    assert '"ranges":[[42,45]]' in meta["kiosk_blocks"]
    assert [type(e) for e in effects if isinstance(e, (Store, Print))] == [Store, Print]
    assert of(effects, Print)[0].ticket["ahead"] is None


def test_a_late_answer_is_ignored_after_the_block_number_was_printed():
    k = make()
    give_block(k)
    (req,) = [r for r in of(k.press("A", 0.0), Request) if r.body["op"] == "take"]
    k.tick(3.0)
    late = k.number({"cmd": "number", "req": req.body["req"], "queue": "A", "ticket": "A013", "ahead": 0,
                     "date": TODAY}, 4.0)
    assert not of(late, Store) and not of(late, Print)


def test_offline_prints_unique_numbers_from_blocks_and_never_reuses_one():
    k = make(online=False)
    give_block(k, 41, 43)
    give_block(k, 41, 43)  # the same block redelivered (QoS 1): no second life for its numbers
    give_block(k, 90, 91)
    tickets = []
    for i in range(5):
        effects = k.press("A", float(i))
        tickets += [s.fields["ticket"] for s in of(effects, Store)]
    assert tickets == ["A041", "A042", "A043", "A090", "A091"]
    # The sixth press had no number left: nothing stored, nothing printed, the display says so.
    effects = k.press("A", 10.0)
    assert not of(effects, Store) and not of(effects, Print) and Show(" Err") in effects


def test_used_numbers_survive_a_restart_through_the_stored_meta():
    k = make(online=False)
    give_block(k, 41, 45)
    stored = of(k.press("A", 0.0), Store)[0]
    after_restart = make(online=False, blocks=dict(stored.meta)["kiosk_blocks"])
    assert of(after_restart.press("A", 1.0), Store)[0].fields["ticket"] == "A042"


def test_a_block_for_another_day_is_void_and_yesterdays_block_is_not_used():
    k = make(online=False)
    assert give_block(k, date="2026-11-29") == []
    assert not of(k.press("A", 0.0), Store)
    k2 = make(online=False, blocks=make_with_block_dump(date="2026-11-29"))
    assert not of(k2.press("A", 0.0), Store)


def make_with_block_dump(date):
    k = make(today=date, online=False)
    return of(give_block(k, date=date), Remember)[0].value


def test_going_offline_turns_waiting_requests_into_block_numbers():
    k = make()
    give_block(k)
    k.press("A", 0.0)
    effects = k.set_online(False, 0.5)
    assert [s.fields["ticket"] for s in of(effects, Store)] == ["A041"]


def test_asks_for_a_block_when_low_and_online_only():
    k = make(online=False, block_low=3)
    assert not of(k.set_online(False, 0.0), Request)
    effects = k.set_online(True, 0.0)
    assert sorted(r.body["queue"] for r in of(effects, Request)) == ["A", "B"]
    assert all(r.body["op"] == "block" and r.body["date"] == TODAY for r in of(effects, Request))
    give_block(k, 1, 3)  # three left: not low
    effects = k.press("A", 1.0)
    assert [r.body["op"] for r in of(effects, Request)] == ["take"]  # B was asked < 30 s ago
    k.set_online(False, 2.0)  # the take falls back to the block: two left, below block_low
    effects = k.set_online(True, 3.0)
    assert sorted(r.body["queue"] for r in of(effects, Request)) == ["A", "B"]


def test_service_error_falls_back_to_the_block_or_prints_nothing():
    k = make()
    (req,) = [r for r in of(k.press("A", 0.0), Request) if r.body["op"] == "take"]
    effects = k.number({"cmd": "number", "req": req.body["req"], "error": "unknown queue"}, 1.0)
    assert not of(effects, Store) and Show(" Err") in effects
    assert not of(k.tick(5.0), Store)
    give_block(k)
    (req,) = [r for r in of(k.press("A", 6.0), Request) if r.body["op"] == "take"]
    effects = k.number({"cmd": "number", "req": req.body["req"], "error": "sequence exhausted"}, 7.0)
    assert [s.fields["ticket"] for s in of(effects, Store)] == ["A041"]


def test_printer_trouble_shows_lights_the_alarm_and_refuses_presses():
    k = make()
    give_block(k)
    effects = k.printer_state("paper_out", 0.0)
    assert Alarm(True) in effects and Show("PAPR") in effects
    assert k.press("A", 1.0) == []  # no number handed out for a ticket that cannot be printed
    effects = k.printer_state("ok", 2.0)
    assert Alarm(False) in effects
    assert of(k.press("A", 3.0), Request)


def test_snapshot_restore_undoes_a_refused_take():
    k = make(online=False)
    give_block(k, 41, 45)
    before = k.snapshot()
    k.press("A", 0.0)
    k.restore(before)  # the runtime does this when the ledger refused the Store
    assert of(k.press("A", 1.0), Store)[0].fields["ticket"] == "A041"


def test_unknown_button_does_nothing():
    assert make().press("Z", 0.0) == []


def test_a_lost_block_answer_is_asked_again_and_a_new_day_asks_anew():
    day = ["2026-11-30"]
    ids = (f"{i:016x}" for i in itertools.count(1))
    k = Kiosk(KioskSettings(queues={"A": "Đất đai"}, block_low=2), today=lambda: day[0], new_id=lambda: next(ids))
    assert [r.body["op"] for r in of(k.set_online(True, 0.0), Request)] == ["block"]
    assert not of(k.tick(29.0), Request)
    assert [r.body["date"] for r in of(k.tick(30.0), Request)] == ["2026-11-30"]  # the answer never came
    give_block(k, 1, 10, date="2026-11-30", now=31.0)
    assert not of(k.tick(100.0), Request)
    day[0] = "2026-12-01"
    assert [r.body["date"] for r in of(k.tick(101.0), Request)] == ["2026-12-01"]
