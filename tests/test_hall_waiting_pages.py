"""The waiting page, the officer page's queue figures and the report's waiting columns, checked against
known tickets written into the real store (the times a test could not get from real calls in minutes)."""
from __future__ import annotations

import io
import re

import openpyxl
import pytest

from tests.test_broker_api import NOW
from tests.test_web_dashboard import dash, dash_clock  # noqa: F401  (fixtures)

SITE = "kien-thuy"
DAY = NOW.date().isoformat()


def at(hh: int, mm: int) -> int:
    return int(NOW.replace(hour=hh, minute=mm, second=0).timestamp() * 1000)


# (queue, ticket, taken, called, done, status, counter, officer, rated)
TICKETS = [
    ("A", "A001", at(8, 0), at(8, 5), at(8, 9), "done", "1", "o1", True),      # wait 5, service 4
    ("A", "A002", at(8, 30), at(8, 45), at(8, 53), "done", "2", "o2", False),  # wait 15, service 8
    ("B", "B001", at(9, 10), at(9, 20), at(9, 26), "done", "1", "o1", False),  # wait 10, service 6
    ("B", "B002", at(9, 20), at(9, 50), at(9, 50), "noshow", "2", "o2", False),  # wait 30, no service
    ("A", "A003", at(10, 0), None, None, "waiting", None, None, False),
]


@pytest.fixture
def tickets(dash):  # noqa: F811
    store = dash.store
    store.upsert_site(SITE, "Kiến Thụy", "Asia/Ho_Chi_Minh")
    store.upsert_queue(SITE, "A", "Đất đai", "A")
    store.upsert_queue(SITE, "B", "Tư pháp – Hộ tịch", "B")
    store.upsert_officer("o1", "Nguyễn Thị Lan")
    store.upsert_officer("o2", "Trần Văn Bình")
    with store._write() as db:  # as the ingest batch and the calls write them (broker.store.tickets)
        for seq, (queue, ticket, taken, called, done, status, counter, officer, rated) in enumerate(TICKETS, 1):
            db.execute("INSERT INTO queue_tickets (site, day, queue, ticket, number, priority, taken_ts, device,"
                       " ledger, seq, source, status, counter, officer, called_ts, done_ts, rating_event)"
                       " VALUES (?, ?, ?, ?, ?, 0, ?, 'kiosk-1', 'l', ?, 'service', ?, ?, ?, ?, ?, ?)",
                       (SITE, DAY, queue, ticket, int(ticket[1:]), taken, seq, status, counter, officer, called,
                        done, 1000 + seq if rated else None))


def attrs(html: str, tag_re: str) -> list[dict[str, str]]:
    """The data-* attributes (digits allowed in their names) of every opening tag matching tag_re."""
    return [dict(re.findall(r'data-([a-z0-9-]+)="([^"]*)"', m.group(0))) for m in re.finditer(tag_re, html)]


def minutes(*values):
    return [str(v * 60) if v is not None else "" for v in values]


def test_the_waiting_page_by_queue_and_by_hour(dash, tickets):  # noqa: F811
    c = dash.login("viewer")
    try:
        html = c.get("/waiting").text
    finally:
        c.close()
    keys = ("tickets", "served", "no-show", "wait-mean", "wait-p50", "wait-p90", "service-mean")
    by_queue = {r["queue"]: [r[k] for k in keys] for r in attrs(html, r'<tr data-queue="[^"]*"[^>]*>')}
    assert by_queue == {
        f"{SITE}/A": ["3", "2", "0", *minutes(10.0, 10.0, 14.0, 6.0)],
        f"{SITE}/B": ["2", "1", "1", *minutes(20.0, 20.0, 28.0, 6.0)],
    }
    by_hour = {r["hour"]: [r[k] for k in keys] for r in attrs(html, r'<tr data-hour="[^"]*"[^>]*>')}
    assert by_hour == {"8": ["2", "2", "0", *minutes(10.0, 10.0, 14.0, 6.0)],
                       "9": ["2", "1", "1", *minutes(20.0, 20.0, 28.0, 6.0)],
                       "10": ["1", "0", "0", "", "", "", ""]}
    assert "Đất đai" in html and "Tư pháp – Hộ tịch" in html


def test_the_officer_page_shows_service_times_and_the_share_rated(dash, tickets):  # noqa: F811
    c = dash.login("viewer")
    try:
        o1 = attrs(c.get("/officers/o1").text, r'<section class="card" id="officer-queue"[^>]*>')[0]
        o2 = attrs(c.get("/officers/o2").text, r'<section class="card" id="officer-queue"[^>]*>')[0]
    finally:
        c.close()
    assert (o1["served"], o1["service-mean"], o1["rated"], o1["rated-share"]) == ("2", "300.0", "1", "0.5")
    assert (o2["served"], o2["no-show"], o2["service-mean"], o2["rated-share"]) == ("1", "1", "480.0", "0.0")
    # The same counts as the store's own figures (GET /api/v1/waiting?group=officer).
    api = {r["key"]: r for r in dash.store.waiting_stats("officer", DAY, DAY)}
    assert [(int(o["served"]), int(o["rated"])) for o in (o1, o2)] == [(api[k]["served"], api[k]["rated"])
                                                                       for k in ("o1", "o2")]


def test_the_report_s_waiting_columns_match_the_tickets_and_the_api(dash, tickets):  # noqa: F811
    token = dash.auth.create_token("viewer", "reports")
    with dash.client() as c:
        c.headers["Authorization"] = f"Bearer {token}"
        r = c.get("/api/v1/reports/satisfaction.xlsx", params={"group": "officer", "month": DAY[:7]})
        assert r.status_code == 200, r.text
        api = {w["key"]: w for w in c.get("/api/v1/waiting", params={"group": "officer", "from": DAY,
                                                                     "to": DAY}).json()["rows"]}
        csv_text = c.get("/api/v1/reports/satisfaction.csv",
                         params={"group": "officer", "month": DAY[:7]}).content.decode("utf-8-sig")
    ws = openpyxl.load_workbook(io.BytesIO(r.content)).active
    rows = [list(v) for v in ws.iter_rows(min_row=6, values_only=True)]
    head, *body, total = rows
    assert head[-6:][0] == "Số phiếu xếp hàng"
    # No ratings this month: each officer who called tickets still gets a row, with its waiting figures.
    assert {row[1]: row[-6:] for row in body} == {
        "Nguyễn Thị Lan": [2, 0, 7.5, 7.5, 9.5, 5.0],
        "Trần Văn Bình": [2, 1, 22.5, 22.5, 28.5, 8.0],
    }
    for row in body:  # the same figures GET /api/v1/waiting gives, in minutes
        key = "o1" if row[1] == "Nguyễn Thị Lan" else "o2"
        assert row[-6:] == [api[key]["tickets"], api[key]["no_show"]] + [
            round(api[key][k] / 60, 1) for k in ("wait_mean_s", "wait_p50_s", "wait_p90_s", "service_mean_s")]
    # The totals: every ticket of the month, the one still waiting included; its median over all waits.
    assert total[-6:] == [5, 1, 15.0, 12.5, 25.5, 6.0]
    assert csv_text.splitlines()[-1].endswith(",5,1,15.0,12.5,25.5,6.0")
