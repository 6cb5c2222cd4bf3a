"""The counter state machine, driven by inputs and a hand-held clock (no I/O)."""
import pytest

from device.counter import (
    Beep, Counter, CounterSettings, Finalize, Led, Officer, Remember, Show, Store,
)

ANNA = Officer("anna", "Nguyễn Thị An", "07")
BINH = Officer("binh", "Trần Văn Bình", "12")


def stores(effects):
    return [e for e in effects if isinstance(e, Store)]


def shows(effects):
    return [e.text for e in effects if isinstance(e, Show)]


def ratings(effects):
    return [(e.fields["score"], e.fields["flags"], e.fields["ticket"]) for e in stores(effects) if e.type == "rating"]


class Rig:
    """A counter plus a clock; every call records effects."""

    def __init__(self, **settings):
        self.c = Counter(CounterSettings(**settings), badges={"AB12": ANNA, "CD34": BINH}, online=True)
        self.now = 1000.0
        self.log = list(self.c.start(self.now))

    def at(self, dt):
        self.now += dt
        return self

    def do(self, method, *args):
        out = getattr(self.c, method)(*args, self.now)
        self.log += out
        return out

    def click(self, button):
        return self.do("press", button) + self.do("release", button)

    def advance(self, seconds, step=0.05):
        """Run the clock forward, firing timers the way the runtime does."""
        out = []
        end = self.now + seconds
        while True:
            deadline = self.c.next_deadline()
            if deadline is None or deadline > end:
                break
            self.now = max(self.now, deadline)
            out += self.c.tick(self.now)
        self.now = end
        out += self.c.tick(self.now)
        self.log += out
        return out

    def call_next(self, answer=None, seq=1):
        out = self.click("next")
        call = stores(out)[0]
        assert (call.type, call.fields["action"]) == ("call", "next")
        self.c.stored({"type": "call", "action": "next", "seq": seq})
        if answer is not None:
            out += self.do("ticket_answer", answer, seq)
        return out


def test_first_frame_is_dashes_and_store_precedes_feedback():
    r = Rig()
    assert shows(r.log) == ["----"]
    out = r.click("3")
    assert isinstance(out[0], Store)
    assert out[0].type == "rating" and out[0].fields == {
        "officer": None, "ticket": None, "score": 3, "scale": 4, "flags": [], "reason": None,
    }
    assert out[0].held is False
    assert Led(3, True) in out and Beep() in out
    assert shows(out) == ["-3-"[-4:].rjust(4)]
    # The animation plays and the display returns to its base text, LED off.
    later = r.advance(2)
    assert shows(later)[-1] == "----"
    assert Led(3, False) in later


def test_one_counted_rating_per_ticket_then_repeats_are_flagged():
    r = Rig()
    r.call_next(answer="1042")
    assert r.c.ticket == "1042" and shows(r.log)[-1] == "1042"
    r.advance(30)  # grace for the (absent) previous ticket is long over
    out = r.click("4") + r.at(5).click("1") + r.at(60).click("2")
    assert ratings(out) == [(4, [], "1042"), (1, ["repeat"], "1042"), (2, ["repeat"], "1042")]


def test_without_tickets_repeat_gap_decides():
    r = Rig(repeat_gap_s=15)
    out = r.click("4") + r.at(3).click("4") + r.at(11.9).click("1") + r.at(0.2).click("2")
    # 15.1 s after the counted press: counted again.
    assert ratings(out) == [(4, [], None), (4, ["repeat"], None), (1, ["repeat"], None), (2, [], None)]


def test_chord_of_two_buttons_flags_the_second():
    r = Rig()
    out = r.do("press", "1") + r.do("press", "4") + r.do("release", "1") + r.do("release", "4")
    assert ratings(out) == [(1, [], None), (4, ["repeat", "chord"], None)]
    # A button held down (a bag leaning on it) makes any other press a chord.
    r.at(20).do("press", "2")
    out = r.at(20).do("press", "3")
    assert ratings(out) == [(3, ["chord"], None)]

def test_chord_does_not_use_up_the_tickets_vote():
    r = Rig()
    r.call_next(answer="31")
    r.advance(30)
    r.do("press", "1")
    out = r.do("press", "2")
    assert ratings(out) == [(2, ["repeat", "chord"], "31")]


def test_late_rating_after_next_goes_to_previous_ticket_within_grace():
    r = Rig(grace_s=10)
    r.call_next(answer="7", seq=1)
    r.advance(30)
    r.call_next(answer="8", seq=2)
    out = r.at(4).click("4") + r.at(1).click("4")
    assert ratings(out) == [(4, [], "7"), (4, ["repeat"], "7")]
    # After the grace window, presses belong to the ticket being served now.
    out = r.at(10).click("3")
    assert ratings(out) == [(3, [], "8")]


def test_grace_does_not_give_a_rated_ticket_a_second_vote():
    r = Rig(grace_s=10)
    r.call_next(answer="7", seq=1)
    r.advance(30)
    r.click("4")
    r.call_next(answer="8", seq=2)
    assert ratings(r.at(1).click("4")) == [(4, ["repeat"], "7")]


def test_next_online_waits_for_service_number_then_falls_back():
    r = Rig(ticket_timeout_s=2)
    r.do("display_ticket", "1042")
    out = r.click("next")
    assert stores(out)[0].fields["action"] == "next" and stores(out)[0].fields["ticket"] == "1042"
    assert shows(out) == ["----"]  # waiting for the service's number
    r.c.stored({"type": "call", "action": "next", "seq": 5})
    assert r.advance(1.9) == []
    out = r.advance(2.5)
    assert shows(out) == ["L001"]
    assert Remember("fallback_next", "2") in out
    # A late answer to that same call still replaces the local number.
    assert shows(r.do("ticket_answer", "1043", 5)) == ["1043"]
    # An answer to an older call is stale and ignored.
    assert r.do("ticket_answer", "9999", 4) == []


def test_next_offline_shows_local_number_at_once():
    r = Rig()
    r.do("set_online", False)
    out = r.click("next")
    kinds = [type(e) for e in out]
    assert kinds.index(Store) < kinds.index(Show)
    assert shows(out) == ["L001"]
    assert shows(r.at(1).click("next")) == ["L002"]


def test_hold_next_closes_the_counter_and_release_does_nothing_more():
    r = Rig(hold_close_s=3)
    r.call_next(answer="12")
    r.do("press", "next")
    out = r.advance(3.1)
    assert [(s.type, s.fields["action"], s.fields["ticket"]) for s in stores(out)] == [("call", "close", "12")]
    assert shows(out)[-1] == " OFF"
    assert r.do("release", "next") == []
    # NEXT reopens.
    out = r.click("next")
    assert stores(out)[0].fields["action"] == "next" and not r.c.closed


def test_recall_records_and_blinks_the_current_ticket():
    r = Rig()
    r.call_next(answer="55")
    out = r.click("recall")
    assert [(s.type, s.fields["action"], s.fields["ticket"]) for s in stores(out)] == [("call", "recall", "55")]
    frames = shows(out) + shows(r.advance(3))
    assert frames.count("    ") == 3 and frames[-1] == "  55"


def test_low_rating_asks_for_a_reason_and_holds_the_event_until_answered():
    reasons = ("Chờ lâu", "Thái độ", "Hướng dẫn chưa rõ", "Khác")
    r = Rig(reasons=reasons, ask_reason_max_score=1, reason_window_s=6)
    out = r.click("1")
    st = stores(out)
    assert len(st) == 1 and st[0].held and st[0].fields["reason"] is None
    assert shows(out)[-1] == "?1-4"
    out = r.at(2).click("2")
    assert stores(out) == [] and Finalize({"reason": "Thái độ"}) in out
    # A good rating never asks.
    r.advance(30)
    assert not stores(r.click("4"))[0].held


def test_reason_window_expires_with_no_reason():
    r = Rig(reasons=("a", "b"), reason_window_s=6)
    r.click("1")
    out = r.advance(6.5)
    assert Finalize({}) in out
    assert shows(out)[-1] == "----"


def test_staff_action_ends_the_reason_question_first():
    r = Rig(reasons=("a", "b"))
    r.click("1")
    out = r.click("recall")
    assert Finalize({}) in out and Led(2, False) in out
    assert out.index(Finalize({})) < out.index(stores(out)[0])


def test_badge_signin_switch_and_signout():
    r = Rig()
    out = r.do("badge", "ab12")
    assert [(s.type, s.fields) for s in stores(out)] == [
        ("signin", {"officer": "anna", "ticket": None, "method": "badge", "badge": "AB12"})
    ]
    assert shows(out) == [" P07"]
    # Every later event carries the officer.
    assert stores(r.at(2).click("4"))[0].fields["officer"] == "anna"
    out = r.do("badge", "CD34")
    assert [(s.type, s.fields["officer"]) for s in stores(out)] == [("signout", "anna"), ("signin", "binh")]
    out = r.do("badge", "CD34")
    assert [(s.type, s.fields["officer"]) for s in stores(out)] == [("signout", "binh")]
    assert r.c.officer is None and Remember("officer", "") in out


def test_unknown_badge_is_recorded_for_the_service_to_resolve():
    r = Rig()
    out = r.do("badge", "FFFF")
    assert [(s.type, s.fields["officer"], s.fields["badge"]) for s in stores(out)] == [("signin", None, "FFFF")]


def test_central_assignment_signs_in_once_and_is_idempotent():
    r = Rig()
    out = r.do("set_officer", ANNA)
    assert [(s.type, s.fields["method"], s.fields["officer"]) for s in stores(out)] == [("signin", "central", "anna")]
    assert r.do("set_officer", ANNA) == []  # retained assignment re-delivered on reconnect
    out = r.do("set_officer", None)
    assert [(s.type, s.fields["officer"]) for s in stores(out)] == [("signout", "anna")]
    remembered = [e for e in r.log if isinstance(e, Remember) and e.key == "officer"]
    assert Counter.officer_from_memory(remembered[0].value) == ANNA


def test_display_command_sets_ticket_and_keeps_grace_for_the_previous():
    r = Rig(grace_s=10)
    assert shows(r.do("display_ticket", "0201")) == ["0201"]
    r.advance(30)
    r.do("display_ticket", "0202")
    assert ratings(r.at(1).click("3")) == [(3, [], "0201")]


def test_identify_blinks_all_digits_and_leds_then_restores():
    r = Rig()
    out = r.do("identify", 2)
    assert Led(0, True) in out and shows(out) == ["8888"]
    out = r.advance(2.5)
    assert "    " in shows(out) and "8888" in shows(out) and shows(out)[-1] == "----"
    assert Led(0, False) in out and out.count(Led(0, False)) >= 2


@pytest.mark.parametrize("width,ticket,shown", [(4, "12345", "2345"), (8, "7", "       7"), (4, "L3", "  L3")])
def test_text_is_fitted_to_the_display(width, ticket, shown):
    r = Rig(width=width)
    assert shows(r.do("display_ticket", ticket)) == [shown]


def test_out_of_scale_button_is_ignored():
    r = Rig(scale=3)
    assert r.click("4") == [] and r.click("5") == []


def test_unknown_badge_while_signed_in_signs_out_and_records_the_tap():
    r = Rig()
    r.do("badge", "AB12")
    out = r.do("badge", "FFFF")
    assert [(s.type, s.fields["officer"], s.fields["badge"]) for s in stores(out)] == [
        ("signout", "anna", "FFFF"), ("signin", None, "FFFF")]
    assert r.c.officer is None


def test_long_press_of_recall_marks_a_noshow_and_calls_the_next():
    r = Rig(hold_noshow_s=1.5)
    r.call_next(answer="A012")
    assert r.do("press", "recall") == []  # nothing yet: a short press will be a recall
    assert r.advance(1.4) == []
    out = r.advance(0.2)
    assert [(s.type, s.fields["action"], s.fields["ticket"]) for s in stores(out)] == [("call", "noshow", "A012")]
    assert shows(out) == ["----"]  # waiting for the service's next ticket
    assert r.do("release", "recall") == []  # the hold did its work; no recall on top
    r.c.stored({"type": "call", "action": "noshow", "seq": 2})
    assert shows(r.do("ticket_answer", "A013", 2)) == ["A013"]
    # The no-show's ticket gets no grace window: a press now rates A013.
    assert ratings(r.at(1).click("4")) == [(4, [], "A013")]


def test_short_press_of_recall_is_still_a_recall():
    r = Rig(hold_noshow_s=1.5)
    r.call_next(answer="A012")
    r.do("press", "recall")
    out = r.at(1.0).do("release", "recall")
    assert [(s.fields["action"], s.fields["ticket"]) for s in stores(out)] == [("recall", "A012")]
    assert not stores(r.advance(3))


def test_noshow_offline_shows_a_local_number():
    r = Rig(hold_noshow_s=1.5)
    r.call_next(answer="A012")
    r.do("set_online", False)
    r.do("press", "recall")
    out = r.advance(1.6)
    assert [s.fields["action"] for s in stores(out)] == ["noshow"] and shows(out)[-1] == "L001"


def test_idle_answer_shows_the_idle_sign_until_the_next_ticket():
    r = Rig()
    r.call_next(answer="A012")
    r.click("next")
    r.c.stored({"type": "call", "action": "next", "seq": 2})
    assert r.do("idle_answer", 1) == []  # an answer to an older call is stale
    assert shows(r.do("idle_answer", 2)) == ["IdLE"]
    assert ratings(r.at(11).click("3")) == [(3, [], None)]  # nobody's ticket
    r.advance(2)
    r.call_next(answer="A013", seq=3)
    assert r.c.base_text() == "A013"
