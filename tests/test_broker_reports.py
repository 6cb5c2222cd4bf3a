"""Monthly report files: the pure builders (broker/reports.py) and the two download routes end to end."""
from __future__ import annotations

import csv
import io
from datetime import date, datetime
from zoneinfo import ZoneInfo

import openpyxl
import pytest

from broker.api import add_principal_resolver
from broker.auth import Principal
from broker.reports import satisfaction_csv, satisfaction_xlsx
from common.periods import month_range
from broker.stats import wilson_lower
from tests.test_broker_api import NOW, TZ, Counter, counters, seed, service  # noqa: F401 - fixtures

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
AT = datetime(2026, 12, 1, 8, 5, tzinfo=ZoneInfo("Asia/Ho_Chi_Minh"))
HEAD = 6  # the table's header row when no site is named: 4 header lines, a blank row, then the titles
TAIL = ["Hài lòng (số lượt)", "Tỷ lệ hài lòng", "Điểm trung bình", "Chỉ số hài lòng (0–100)",
        "Cận dưới Wilson 95%", "Lượt bấm bị gắn cờ", "Lượt phục vụ",
        # the queue's waiting columns (tests/test_hall_waiting.py checks their values)
        "Số phiếu xếp hàng", "Vắng mặt khi gọi", "Chờ trung bình (phút)", "Chờ trung vị (phút)",
        "90% chờ dưới (phút)", "Phục vụ trung bình (phút)"]
NO_QUEUE = [0, 0, None, None, None, None]  # the waiting columns of a row without queue tickets
NO_QUEUE_CSV = ["0", "0", "", "", "", ""]
LABELS = {
    3: ["Không hài lòng", "Hài lòng", "Rất hài lòng"],
    4: ["Không hài lòng", "Bình thường", "Hài lòng", "Rất hài lòng"],
    5: ["Rất không hài lòng", "Không hài lòng", "Bình thường", "Hài lòng", "Rất hài lòng"],
}


def row(key, name, counts, *, satisfied, rate, mean, index, wl, flagged=0, served=0):
    return {"key": key, "name": name, "ratings": sum(counts), "counts": {str(i): n for i, n in enumerate(counts, 1)},
            "satisfied": satisfied, "rate": rate, "mean": mean, "index": index, "wilson_lower": wl,
            "flagged": flagged, "served": served}


# Two officers, ranked by Wilson; A: 1 of 1 satisfied, B: 1 of 3. An average of the rates would be 0.6667;
# the totals row must say 2 of 4 = 0.5.
REPORT = {"scale": 4, "group": "officer", "from": "2026-11-01", "to": "2026-11-30", "rows": [
    row("o2", "Trần Văn Bình", [1, 1, 0, 1], satisfied=1, rate=0.3333, mean=2.333, index=44.4, wl=0.0615,
        flagged=2, served=7),
    row("o1", "Nguyễn Thị Lan", [0, 0, 0, 1], satisfied=1, rate=1.0, mean=4.0, index=100.0, wl=0.2065, served=3),
    row(None, "(không rõ)", [0, 0, 0, 0], satisfied=0, rate=None, mean=None, index=None, wl=0.0, flagged=1),
]}


def sheet(data: bytes):
    return openpyxl.load_workbook(io.BytesIO(data)).active


def table(ws, head: int = HEAD) -> list[list]:
    return [list(r) for r in ws.iter_rows(min_row=head, values_only=True)]


def csv_rows(data: bytes) -> list[list[str]]:
    assert data.startswith(b"\xef\xbb\xbf")
    return list(csv.reader(io.StringIO(data[3:].decode("utf-8"), newline="")))


# ----- month_range ---------------------------------------------------------------------------


def test_month_range_gives_first_and_last_day():
    assert month_range("2026-11") == (date(2026, 11, 1), date(2026, 11, 30))
    assert month_range("2024-02") == (date(2024, 2, 1), date(2024, 2, 29))
    assert month_range("2026-12") == (date(2026, 12, 1), date(2026, 12, 31))


@pytest.mark.parametrize("bad", ["2026-13", "2026-00", "2026-1", "26-11", "2026/11", "2026-11-01", "", "٢٠٢٦-١١"])
def test_month_range_rejects_anything_else_clearly(bad):
    with pytest.raises(ValueError, match="month: expected a month YYYY-MM"):
        month_range(bad)


# ----- the workbook ------------------------------------------------------------------------------


def test_xlsx_header_block_and_titles():
    ws = sheet(satisfaction_xlsx(REPORT, centre="Trung tâm Phục vụ hành chính công tỉnh Hà Giang",
                                 group="officer", month="2026-11", generated_at=AT))
    assert [ws.cell(r, 1).value for r in range(1, HEAD)] == [
        "Trung tâm Phục vụ hành chính công tỉnh Hà Giang",
        "Báo cáo mức độ hài lòng theo cán bộ",
        "Kỳ báo cáo: Tháng 11/2026 (01/11/2026 – 30/11/2026)",
        "Thời điểm lập: 01/12/2026 08:05 (GMT+07:00)",
        None,
    ]
    assert ws.cell(1, 1).font.bold and ws.cell(2, 1).font.bold
    assert table(ws)[0] == ["STT", "Cán bộ", "Số lượt đánh giá", *LABELS[4], *TAIL]
    assert all(ws.cell(HEAD, c).font.bold for c in range(1, 21))
    assert ws.freeze_panes == f"A{HEAD + 1}"
    assert ws.auto_filter.ref == f"A{HEAD}:T{HEAD + 3}"  # header and data rows; the totals stay last
    assert ws.column_dimensions["B"].width >= len("Trần Văn Bình")
    assert ws.title == "Theo cán bộ"

    by_counter = sheet(satisfaction_xlsx({**REPORT, "group": "counter"}, centre="TT", group="counter",
                                         month="2026-11", generated_at=AT, site="Bộ phận một cửa huyện"))
    assert by_counter.cell(2, 1).value == "Báo cáo mức độ hài lòng theo quầy"
    assert by_counter.cell(4, 1).value == "Điểm tiếp nhận: Bộ phận một cửa huyện"
    assert table(by_counter, HEAD + 1)[0][:3] == ["STT", "Quầy", "Số lượt đánh giá"]


@pytest.mark.parametrize("scale", [3, 4, 5])
def test_level_columns_are_named_by_the_scale(scale):
    report = {"scale": scale, "group": "officer", "from": "2026-11-01", "to": "2026-11-30", "rows": [
        row("o1", "A", [0] * (scale - 1) + [2], satisfied=2, rate=1.0, mean=float(scale), index=100.0, wl=0.3424)]}
    titles = ["STT", "Cán bộ", "Số lượt đánh giá", *LABELS[scale], *TAIL]
    ws = sheet(satisfaction_xlsx(report, centre="TT", group="officer", month="2026-11", generated_at=AT))
    assert table(ws)[0] == titles
    assert csv_rows(satisfaction_csv(report, centre="TT", group="officer", month="2026-11"))[0] == titles


def test_mixed_scales_get_neutral_level_titles():
    # Stated on 4, but a 5-button counter contributed: its level 5 needs a column too.
    report = {**REPORT, "rows": [row("o1", "A", [0, 0, 0, 1, 1], satisfied=2, rate=1.0, mean=4.0, index=87.5,
                                     wl=0.3424)]}
    ws = sheet(satisfaction_xlsx(report, centre="TT", group="officer", month="2026-11", generated_at=AT))
    assert table(ws)[0][3:8] == ["Mức 1", "Mức 2", "Mức 3", "Mức 4", "Mức 5"]
    assert table(ws)[1][3:8] == [0, 0, 0, 1, 1]


def test_xlsx_numbers_are_real_numbers_with_formats_and_a_totals_row():
    ws = sheet(satisfaction_xlsx(REPORT, centre="TT", group="officer", month="2026-11", generated_at=AT))
    _, o2, o1, nobody, total = table(ws)
    assert o2 == [1, "Trần Văn Bình", 3, 1, 1, 0, 1, 1, 0.3333, 2.333, 44.4, 0.0615, 2, 7, *NO_QUEUE]
    assert o1 == [2, "Nguyễn Thị Lan", 1, 0, 0, 0, 1, 1, 1.0, 4.0, 100.0, 0.2065, 0, 3, *NO_QUEUE]
    assert nobody == [3, "(không rõ)", 0, 0, 0, 0, 0, 0, None, None, None, 0.0, 1, 0, *NO_QUEUE]
    # Sums; the rate from the sums (2/4), not the rows' average (0.6667); mean and index weighted by ratings.
    assert total == [None, "Tổng cộng", 4, 1, 1, 0, 2, 2, 0.5, round((2.333 * 3 + 4.0) / 4, 3),
                     round((44.4 * 3 + 100.0) / 4, 1), round(wilson_lower(2, 4), 4), 3, 10, *NO_QUEUE]
    assert ws.cell(HEAD + 4, 2).font.bold

    formats = {c: ws.cell(HEAD + 1, c).number_format for c in range(1, 15)}
    assert formats[3] == formats[4] == formats[8] == formats[13] == formats[14] == "#,##0"
    assert formats[9] == formats[12] == "0.0%"  # the cell holds the fraction
    assert formats[10] == "0.00" and formats[11] == "0.0"
    assert ws.cell(HEAD + 4, 9).number_format == "0.0%"
    assert all(isinstance(ws.cell(HEAD + 1, c).value, (int, float)) for c in range(3, 15))


def test_an_empty_month_still_makes_a_table():
    empty = {"scale": None, "group": "officer", "from": "2026-11-01", "to": "2026-11-30", "rows": []}
    ws = sheet(satisfaction_xlsx(empty, centre="TT", group="officer", month="2026-11", generated_at=AT))
    head, total = table(ws)
    assert head[3:7] == LABELS[4]
    assert total == [None, "Tổng cộng", 0, 0, 0, 0, 0, 0, None, None, None, None, 0, 0,
                     *NO_QUEUE]  # no Wilson without ratings
    assert csv_rows(satisfaction_csv(empty, centre="TT", group="officer", month="2026-11"))[1] == \
        ["", "Tổng cộng", "0", "0", "0", "0", "0", "0", "", "", "", "", "0", "0", *NO_QUEUE_CSV]


def test_builders_refuse_bad_arguments():
    for bad in ({"group": "unit"}, {"month": "2026-13"}, {"lang": "fr"}):
        args = {"centre": "TT", "group": "officer", "month": "2026-11", **bad}
        with pytest.raises(ValueError):
            satisfaction_xlsx(REPORT, generated_at=AT, **args)
        with pytest.raises(ValueError):
            satisfaction_csv(REPORT, **args)


# ----- the CSV ----------------------------------------------------------------------------------


def test_csv_is_utf8_with_bom_crlf_and_the_same_numbers():
    data = satisfaction_csv(REPORT, centre="TT", group="officer", month="2026-11")
    assert data.startswith(b"\xef\xbb\xbfSTT,")
    text = data[3:].decode("utf-8")
    assert text.endswith("\r\n") and text.count("\r\n") == 5 and "\n" not in text.replace("\r\n", "")
    rows = csv_rows(data)
    assert rows[0] == ["STT", "Cán bộ", "Số lượt đánh giá", *LABELS[4], *TAIL]
    assert rows[1] == ["1", "Trần Văn Bình", "3", "1", "1", "0", "1", "1", "0.3333", "2.333", "44.4", "0.0615",
                       "2", "7", *NO_QUEUE_CSV]
    assert rows[2] == ["2", "Nguyễn Thị Lan", "1", "0", "0", "0", "1", "1", "1.0000", "4.000", "100.0", "0.2065",
                       "0", "3", *NO_QUEUE_CSV]
    assert rows[3] == ["3", "(không rõ)", "0", "0", "0", "0", "0", "0", "", "", "", "0.0000", "1", "0",
                       *NO_QUEUE_CSV]
    assert rows[4] == ["", "Tổng cộng", "4", "1", "1", "0", "2", "2", "0.5000", "2.750", "58.3",
                       f"{wilson_lower(2, 4):.4f}", "3", "10", *NO_QUEUE_CSV]


def test_csv_quotes_names_with_commas_and_quotes():
    report = {**REPORT, "rows": [{**REPORT["rows"][0], "name": 'Quầy 1, "tầng 2"'}]}
    data = satisfaction_csv(report, centre="TT", group="counter", month="2026-11")
    assert '"Quầy 1, ""tầng 2"""' in data.decode("utf-8-sig")
    assert csv_rows(data)[1][1] == 'Quầy 1, "tầng 2"'


# ----- end to end ---------------------------------------------------------------------------------


def _month_of(counter: Counter) -> str:
    return datetime.fromtimestamp(counter.t0 / 1000, TZ).strftime("%Y-%m")


def test_downloads_match_the_satisfaction_endpoint(service, counters):
    c1, _ = seed(service, counters)
    admin = service.client("admin")
    assert admin.put("/api/v1/officers/o1", json={"name": "Nguyễn Thị Lan", "code": "NTL"}).status_code == 200
    assert admin.put("/api/v1/officers/o2", json={"name": "Trần Văn Bình", "code": "TVB"}).status_code == 200
    month = _month_of(c1)
    first, last = month_range(month)
    api = service.client("viewer")

    for group in ("officer", "counter"):
        figures = api.get("/api/v1/satisfaction",
                          params={"group": group, "from": first.isoformat(), "to": last.isoformat()}).json()
        assert len(figures["rows"]) == 2 and figures["scale"] == 4

        r = api.get("/api/v1/reports/satisfaction.xlsx", params={"group": group, "month": month})
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == XLSX
        assert r.headers["content-disposition"] == \
            f'attachment; filename="hailong-satisfaction-{group}-{month}.xlsx"'
        ws = sheet(r.content)
        assert ws.cell(1, 1).value == "Trung tâm Phục vụ hành chính công"  # service.name's default
        assert ws.cell(2, 1).value.endswith("theo cán bộ" if group == "officer" else "theo quầy")
        assert ws.cell(3, 1).value == (f"Kỳ báo cáo: Tháng {first:%m/%Y} "
                                       f"({first:%d/%m/%Y} – {last:%d/%m/%Y})")
        assert ws.cell(4, 1).value == f"Thời điểm lập: {NOW:%d/%m/%Y %H:%M} (GMT+07:00)"  # the service's clock
        head, *rows, total = table(ws)
        assert head[3:7] == LABELS[4]

        c = api.get("/api/v1/reports/satisfaction.csv", params={"group": group, "month": month})
        assert c.status_code == 200, c.text
        assert c.headers["content-type"] == "text/csv; charset=utf-8"
        assert c.headers["content-disposition"] == \
            f'attachment; filename="hailong-satisfaction-{group}-{month}.csv"'
        assert c.content.startswith(b"\xef\xbb\xbf") and b"\r\n" in c.content
        csv_head, *csv_body, csv_total = csv_rows(c.content)
        assert csv_head == head

        assert len(rows) == len(csv_body) == len(figures["rows"])
        for i, (x, s, want) in enumerate(zip(rows, csv_body, figures["rows"]), start=1):  # same order: Wilson
            expect = [i, want["name"], want["ratings"], *(want["counts"][str(k)] for k in range(1, 5)),
                      want["satisfied"], want["rate"], want["mean"], want["index"], want["wilson_lower"],
                      want["flagged"], want["served"]]
            assert x[:14] == expect  # then the waiting columns: no queue tickets here
            assert [int(v) for v in s[2:8]] == expect[2:8] and s[0] == str(i) and s[1] == want["name"]
            assert [float(v) for v in s[8:12]] == pytest.approx(expect[8:12])
            assert [int(v) for v in s[12:14]] == expect[12:]
        ratings = sum(w["ratings"] for w in figures["rows"])
        satisfied = sum(w["satisfied"] for w in figures["rows"])
        assert total[2] == ratings == 6 and total[7] == satisfied == 3
        assert total[8] == round(satisfied / ratings, 4) == 0.5 and float(csv_total[8]) == 0.5
        assert total[12:14] == [1, 1]  # one flagged press, one NEXT call

    names = [r[1] for r in table(sheet(api.get("/api/v1/reports/satisfaction.xlsx",
                                               params={"group": "officer", "month": month}).content))[1:-1]]
    assert names == ["Nguyễn Thị Lan", "Trần Văn Bình"]  # Vietnamese names survive the round trip

    # A site filter reaches the store; a month without events gives an empty table.
    only = api.get("/api/v1/reports/satisfaction.csv", params={"group": "counter", "month": month, "site": "nope"})
    assert [r[1] for r in csv_rows(only.content)[1:]] == ["Tổng cộng"]
    past = api.get("/api/v1/reports/satisfaction.xlsx", params={"group": "officer", "month": "2001-01"})
    assert past.status_code == 200 and len(table(sheet(past.content))) == 2  # titles and a zero totals row


def test_report_routes_need_a_viewer_and_a_valid_month_and_group(service):
    anon = service.client(role=None)
    for ext in ("xlsx", "csv"):
        r = anon.get(f"/api/v1/reports/satisfaction.{ext}", params={"group": "officer", "month": "2026-11"})
        assert r.status_code == 401 and r.json() == {"detail": "missing bearer token"}
        assert r.headers["www-authenticate"] == "Bearer"

    api = service.client("viewer")
    for params, message in (
        ({"group": "officer", "month": "2026-13"}, "month: expected a month YYYY-MM with MM 01-12, got '2026-13'"),
        ({"group": "officer", "month": "11/2026"}, "month: expected a month YYYY-MM, got '11/2026'"),
        ({"group": "unit", "month": "2026-11"}, "group: Input should be 'officer', 'counter' or 'site'"),
        ({"group": "officer"}, "month: Field required"),
    ):
        for ext in ("xlsx", "csv"):
            r = api.get(f"/api/v1/reports/satisfaction.{ext}", params=params)
            assert r.status_code == 422, r.text
            assert r.json() == {"detail": message}

    # The dashboard's session seam works here as on every /api/v1 route.
    add_principal_resolver(service.app, lambda req: Principal("lan", "viewer", "session")
                           if req.cookies.get("hl_session") == "ok" else None)
    cookie = service.client(role=None)
    cookie.cookies.set("hl_session", "ok")
    r = cookie.get("/api/v1/reports/satisfaction.csv", params={"group": "officer", "month": "2026-11"})
    assert r.status_code == 200 and r.content.startswith(b"\xef\xbb\xbfSTT,")


# ----- text that is safe where it lands (outside review, findings 3, 4, 9) ----------------------------

HOSTILE = ["=HYPERLINK(\"http://x\",\"y\")", "+1+2", "-3", "@SUM(A1)", "\tTab", "\rCR", "Lan\u0001\u0008\u001f", "ok"]


def hostile_report() -> dict:
    return {**REPORT, "rows": [row(f"o{i}", name, [0, 0, 1, 0], satisfied=1, rate=1.0, mean=3.0, index=66.7, wl=0.2065)
                               for i, name in enumerate(HOSTILE)]}


def test_the_workbook_builds_with_control_characters_in_every_name():
    data = satisfaction_xlsx(hostile_report(), centre="TT\u0001", group="officer", month="2026-11",
                             generated_at=AT, site="Xã\u000b")
    ws = sheet(data)
    names = [r[1] for r in table(ws, HEAD + 1)[1:-1]]
    assert names[6] == "Lan\ufffd\ufffd\ufffd"
    assert ws["A1"].value == "TT\ufffd" and "Xã\ufffd" in ws["A4"].value


def test_formula_looking_names_stay_text_in_both_files():
    ws = sheet(satisfaction_xlsx(hostile_report(), centre="=1+1", group="officer", month="2026-11", generated_at=AT))
    assert ws["A1"].value == "=1+1" and ws["A1"].data_type == "s"
    cells = [r[1] for r in ws.iter_rows(min_row=HEAD + 1, max_row=HEAD + len(HOSTILE))]
    assert [c.data_type for c in cells] == ["s"] * len(HOSTILE)
    assert [c.value for c in cells][:4] == HOSTILE[:4]
    rows = csv_rows(satisfaction_csv(hostile_report(), centre="TT", group="officer", month="2026-11"))
    written = [r[1] for r in rows[1:-1]]
    assert written[:6] == ["'" + name for name in HOSTILE[:6]]
    assert written[7] == "ok"


def test_the_total_mean_does_not_depend_on_the_grouping():
    # The same 46 ratings, split once by officer and once by counter: rows round their own means,
    # and an average of those would say 2.566 one way and 2.565 the other; the exact figure is 2.565.
    from broker.stats import summarize

    def report(splits):
        rows = [{"key": f"k{i}", "name": f"k{i}", **summarize(dict(enumerate(c, 1)), 4), "served": 0}
                for i, c in enumerate(splits)]
        return {"scale": 4, "group": "officer", "from": "2026-11-01", "to": "2026-11-30", "rows": rows}

    by_officer = [[1, 5, 7, 0], [0, 7, 6, 2], [2, 5, 10, 1]]
    by_counter = [[2, 7, 13, 2], [1, 10, 10, 1]]
    assert [sum(x) for x in zip(*by_officer)] == [sum(x) for x in zip(*by_counter)]
    exact = summarize(dict(enumerate([sum(x) for x in zip(*by_officer)], 1)), 4)
    totals = [csv_rows(satisfaction_csv(report(s), centre="TT", group="officer", month="2026-11"))[-1]
              for s in (by_officer, by_counter)]
    assert totals[0] == totals[1]
    assert totals[0][9] == f"{exact['mean']:.3f}" == "2.565" and totals[0][10] == f"{exact['index']:.1f}"
