"""Waiting and service times from tickets (broker.waiting) and the report's waiting columns."""
from __future__ import annotations

import io
from datetime import datetime
from zoneinfo import ZoneInfo

import openpyxl
import pytest

from broker.reports import satisfaction_csv, satisfaction_xlsx
from broker.waiting import by_hour, grouped, percentile, summarize

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
MIN = 60_000


def at(hh: int, mm: int, ss: int = 0) -> int:
    return int(datetime(2026, 11, 30, hh, mm, ss, tzinfo=TZ).timestamp() * 1000)


def ticket(taken, called=None, done=None, status="waiting", rated=False, counter=None, officer=None):
    return {"site": "kt", "taken_ts": taken, "called_ts": called, "done_ts": done, "status": status,
            "rated": rated, "counter": counter, "officer": officer}


# Known tickets: waits 5, 15, 10 and 30 minutes (the last a no-show); services 4 and 8 minutes; one waiting.
TICKETS = [
    ticket(at(8, 0), at(8, 5), at(8, 9), "done", rated=True, counter="1", officer="o1"),
    ticket(at(8, 30), at(8, 45), at(8, 53), "done", counter="2", officer="o2"),
    ticket(at(9, 10), at(9, 20), None, "called", counter="1", officer="o1"),
    ticket(at(9, 20), at(9, 50), at(9, 50), "noshow", counter="2", officer="o2"),
    ticket(at(9, 55)),
]


def test_percentiles_interpolate_between_ranks():
    assert percentile([], 50) is None
    assert percentile([7], 90) == 7
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([10, 0, 20], 90) == pytest.approx(18)


def test_summary_of_known_tickets():
    s = summarize(TICKETS)
    assert s == {"tickets": 5, "served": 2, "no_show": 1, "wait_mean_s": 15 * 60, "wait_p50_s": 12.5 * 60,
                 "wait_p90_s": pytest.approx(25.5 * 60), "service_mean_s": 6 * 60, "rated": 1, "rated_share": 0.5}
    assert summarize([])["wait_mean_s"] is None and summarize([])["rated_share"] is None


def test_by_hour_uses_the_site_s_hour_the_ticket_was_taken():
    hours = by_hour(TICKETS, TZ)
    assert [(h["hour"], h["tickets"], h["wait_mean_s"]) for h in hours] == [(8, 2, 10 * 60), (9, 3, 20 * 60)]


def test_grouped_by_officer_and_counter_skips_tickets_nobody_called():
    by_officer = grouped(TICKETS, "officer")
    assert set(by_officer) == {"o1", "o2"}
    assert by_officer["o2"]["no_show"] == 1 and by_officer["o2"]["served"] == 1
    assert set(grouped(TICKETS, "counter")) == {"kt/1", "kt/2"}
    with pytest.raises(ValueError):
        grouped(TICKETS, "queue")


def test_reports_carry_the_waiting_columns_in_minutes():
    row = {"key": "o1", "name": "Lan", "ratings": 1, "counts": {"4": 1}, "satisfied": 1, "rate": 1.0, "mean": 4.0,
           "index": 100.0, "wilson_lower": 0.2, "flagged": 0, "served": 2}
    report = {"scale": 4, "rows": [row], "waiting": grouped(TICKETS, "officer"), "waiting_total": summarize(TICKETS)}
    ws = openpyxl.load_workbook(io.BytesIO(satisfaction_xlsx(
        report, centre="TT", group="officer", month="2026-11", generated_at=datetime(2026, 12, 1, tzinfo=TZ)))).active
    values = [list(r) for r in ws.iter_rows(min_row=6, values_only=True)]
    head, o1, total = values
    assert head[-6:] == ["Số phiếu xếp hàng", "Vắng mặt khi gọi", "Chờ trung bình (phút)", "Chờ trung vị (phút)",
                         "90% chờ dưới (phút)", "Phục vụ trung bình (phút)"]
    # o1: waits 5 and 10 minutes, one service of 4.
    assert o1[-6:] == [2, 0, 7.5, 7.5, 9.5, 4.0]
    assert total[-6:] == [5, 1, 15.0, 12.5, 25.5, 6.0]
    assert ws.cell(7, len(head) - 3).number_format == "0.0"
    csv_total = satisfaction_csv(report, centre="TT", group="officer", month="2026-11").decode("utf-8-sig")
    assert csv_total.splitlines()[-1].endswith(",5,1,15.0,12.5,25.5,6.0")
