"""Monthly satisfaction reports as files: an Excel workbook and a CSV. Pure functions, no I/O.

Both take the dict `Store.satisfaction` returns (the same one GET /api/v1/satisfaction
serves) and never recompute a row: every row figure is the API's. Only the totals row is
derived here, from sums:

* counts, ratings, satisfied, flagged and served are summed;
* rate = sum(satisfied) / sum(ratings) and the Wilson lower bound of those sums
  (never an average of the rows' rates);
* mean and index are the rows' values weighted by their ratings (exact up to the
  rows' own rounding; rows without ratings weigh nothing).

Numbers stay numbers. In the workbook a rate is the fraction with a percent format
("0.0%"), the mean "0.00", the index "0.0", counts integers. In the CSV (UTF-8 with a BOM so
Excel shows Vietnamese text, CRLF line endings, one header row, the totals as the last row
with an empty STT) a rate is the fraction with 4 decimals, the mean 3, the index 1, always
with a decimal point "."; an empty cell means "no ratings".

Text is safe where it lands: characters an XLSX (XML) cannot hold become U+FFFD, and a
name that a spreadsheet would read as a formula (starting with =, +, -, @, tab or CR) is a
string cell in the workbook and carries a leading apostrophe in the CSV (OWASP's
neutralising prefix). Names are validated on the way in as well; stored events never
change, so the reports must cope with whatever an older version let through.

Waiting columns follow (the queue, docs/queue.md): tickets, no-shows, the mean, median and 90th
percentile wait and the mean service time, in minutes. They come from `report["waiting"]`, the
store's `waiting_stats` rows by key (GET /api/v1/waiting), and the totals row's from
`report["waiting_total"]` (all tickets of the period together: a median cannot be summed). A row
without tickets has 0 tickets and empty times.

Level columns are named by the report's scale (3, 4 or 5 levels, as on the counters).
When a period mixes scales, `counts` has more levels than `scale` and the level columns
are named "Mức 1".."Mức N" instead (level 1 is always the worst button).
"""
from __future__ import annotations

import csv
import io
import re
from copy import copy
from datetime import date, datetime

from broker.stats import wilson_lower
from common.periods import month_range
from broker.i18n import level_label  # one catalogue for level names: dashboard and reports
from protocol.events import SCALES

__all__ = ["satisfaction_csv", "satisfaction_xlsx"]

DEFAULT_SCALE = 4  # the column layout of an empty report (no ratings, so no scale)

TEXT = {
    "vi": {
        "title": "Báo cáo mức độ hài lòng",
        "by": {"officer": "theo cán bộ", "counter": "theo quầy", "site": "theo trung tâm"},
        "sheet": {"officer": "Theo cán bộ", "counter": "Theo quầy", "site": "Theo trung tâm"},
        "period": "Kỳ báo cáo: Tháng {m:02d}/{y} ({first} – {last})",
        "site": "Điểm tiếp nhận: {site}",
        "generated": "Thời điểm lập: {at}",
        "no": "STT",
        "who": {"officer": "Cán bộ", "counter": "Quầy", "site": "Trung tâm"},
        "ratings": "Số lượt đánh giá",
        "level": "Mức {k}",
        "satisfied": "Hài lòng (số lượt)",
        "rate": "Tỷ lệ hài lòng",
        "mean": "Điểm trung bình",
        "index": "Chỉ số hài lòng (0–100)",
        "wilson": "Cận dưới Wilson 95%",
        "flagged": "Lượt bấm bị gắn cờ",
        "served": "Lượt phục vụ",
        "tickets": "Số phiếu xếp hàng",
        "no_show": "Vắng mặt khi gọi",
        "wait_mean": "Chờ trung bình (phút)",
        "wait_p50": "Chờ trung vị (phút)",
        "wait_p90": "90% chờ dưới (phút)",
        "service_mean": "Phục vụ trung bình (phút)",
        "total": "Tổng cộng",
    },
    "en": {
        "title": "Citizen satisfaction report",
        "by": {"officer": "by officer", "counter": "by counter", "site": "by centre"},
        "sheet": {"officer": "By officer", "counter": "By counter", "site": "By centre"},
        "period": "Period: {m:02d}/{y} ({first} – {last})",
        "site": "Site: {site}",
        "generated": "Generated: {at}",
        "no": "No.",
        "who": {"officer": "Officer", "counter": "Counter", "site": "Centre"},
        "ratings": "Ratings",
        "level": "Level {k}",
        "satisfied": "Satisfied (ratings)",
        "rate": "Satisfaction rate",
        "mean": "Mean score",
        "index": "Satisfaction index (0–100)",
        "wilson": "Wilson 95% lower bound",
        "flagged": "Flagged presses",
        "served": "Citizens served",
        "tickets": "Queue tickets",
        "no_show": "No-shows",
        "wait_mean": "Mean wait (min)",
        "wait_p50": "Median wait (min)",
        "wait_p90": "90% waited under (min)",
        "service_mean": "Mean service time (min)",
        "total": "Total",
    },
}

GROUPS = ("officer", "counter", "site")  # site: the province's monthly ranking of its centres
WAIT_TIMES = ("wait_mean", "wait_p50", "wait_p90", "service_mean")  # columns in minutes, from *_s seconds


# ----- text that is safe in a spreadsheet ----------------------------------------------------

_ILLEGAL_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]|[\ud800-\udfff]")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_text(value: str) -> str:
    """The text with characters XML 1.0 cannot hold replaced by U+FFFD."""
    return _ILLEGAL_XML.sub("\ufffd", value)


def looks_like_formula(value: str) -> bool:
    return value.startswith(_FORMULA_START)


# ----- the table, shared by both formats --------------------------------------------------


def _text(lang: str) -> dict:
    if lang not in TEXT:
        raise ValueError(f"lang must be one of {', '.join(TEXT)}, got {lang!r}")
    return TEXT[lang]


def _check_group(group: str) -> None:
    if group not in GROUPS:
        raise ValueError(f"group must be one of {', '.join(GROUPS)}, got {group!r}")


def _scale(report: dict) -> int:
    return report.get("scale") or DEFAULT_SCALE


def _levels(report: dict) -> int:
    """Level columns: the scale's, or more when a period mixed in counters with a larger scale."""
    widest = max((len(r.get("counts") or {}) for r in report["rows"]), default=0)
    return max(_scale(report), widest)


def _level_titles(report: dict, lang: str) -> list[str]:
    levels = _levels(report)
    if levels in SCALES and levels == _scale(report):
        return [level_label(levels, k, lang) for k in range(1, levels + 1)]
    return [TEXT[lang]["level"].format(k=k) for k in range(1, levels + 1)]


def _columns(report: dict, group: str, lang: str) -> list[tuple[str, str]]:
    """(title, kind) per column; kind picks the number format."""
    t = _text(lang)
    return ([(t["no"], "int"), (t["who"][group], "text"), (t["ratings"], "int")]
            + [(title, "int") for title in _level_titles(report, lang)]
            + [(t["satisfied"], "int"), (t["rate"], "pct"), (t["mean"], "mean"), (t["index"], "index"),
               (t["wilson"], "pct"), (t["flagged"], "int"), (t["served"], "int"),
               (t["tickets"], "int"), (t["no_show"], "int")]
            + [(t[k], "minutes") for k in WAIT_TIMES])


def _minutes(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds / 60, 1)


def _row_values(n: int | None, name: str, row: dict, levels: int, waiting: dict | None) -> list:
    counts = row.get("counts") or {}
    w = waiting or {}
    return ([n, name, row["ratings"]] + [int(counts.get(str(k), 0)) for k in range(1, levels + 1)]
            + [row["satisfied"], row.get("rate"), row.get("mean"), row.get("index"),
               row.get("wilson_lower"), row.get("flagged", 0), row.get("served", 0),
               int(w.get("tickets") or 0), int(w.get("no_show") or 0)]
            + [_minutes(w.get(f"{k}_s")) for k in WAIT_TIMES])


def _totals(report: dict, levels: int) -> dict:
    rows = report["rows"]
    ratings = sum(r["ratings"] for r in rows)
    satisfied = sum(r["satisfied"] for r in rows)
    counts = {str(k): sum(int((r.get("counts") or {}).get(str(k), 0)) for r in rows) for k in range(1, levels + 1)}
    mean = index = rate = wilson = None
    if ratings:
        rate = round(satisfied / ratings, 4)
        wilson = round(wilson_lower(satisfied, ratings), 4)
        mean, index = _total_mean_index(report, rows, counts, levels)
    return {
        "ratings": ratings, "counts": counts,
        "satisfied": satisfied, "rate": rate, "mean": mean, "index": index, "wilson_lower": wilson,
        "flagged": sum(r.get("flagged", 0) for r in rows),
        "served": sum(r.get("served", 0) for r in rows),
    }


def _total_mean_index(report: dict, rows: list[dict], counts: dict, levels: int) -> tuple:
    """Mean and index of all rows together: exact from the level counts when every rating is
    on the report's scale (so grouping by officer or by counter gives the same total), else the
    rows' values weighted by their ratings."""
    scale, n = _scale(report), sum(counts.values())
    if levels == scale and n == sum(r["ratings"] for r in rows):
        score_sum = sum(int(k) * c for k, c in counts.items())
        return round(score_sum / n, 3), round((score_sum - n) / (scale - 1) / n * 100, 1)
    weighed = [r for r in rows if r["ratings"] and r.get("mean") is not None]
    if not weighed:
        return None, None
    w = sum(r["ratings"] for r in weighed)
    return (round(sum(r["mean"] * r["ratings"] for r in weighed) / w, 3),
            round(sum(r["index"] * r["ratings"] for r in weighed) / w, 1))


def _table(report: dict, group: str, lang: str) -> tuple[list[tuple[str, str]], list[list], list]:
    """Columns, data rows (in the report's order) and the totals row."""
    _check_group(group)
    columns = _columns(report, group, lang)
    levels = _levels(report)
    waiting = report.get("waiting") or {}
    rows = [_row_values(i, safe_text(r.get("name") or r.get("key") or ""), r, levels, waiting.get(r.get("key")))
            for i, r in enumerate(report["rows"], start=1)]
    total = _row_values(None, TEXT[lang]["total"], _totals(report, levels), levels, report.get("waiting_total"))
    return columns, rows, total


def _day_text(d: date) -> str:
    return d.strftime("%d/%m/%Y")


def _moment_text(at: datetime) -> str:
    text = at.strftime("%d/%m/%Y %H:%M")
    offset = at.utcoffset()
    if offset is not None:
        minutes = int(offset.total_seconds() // 60)
        sign = "+" if minutes >= 0 else "-"
        text += f" (GMT{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d})"
    return text


# ----- Excel ---------------------------------------------------------------------------------

_FORMATS = {"int": "#,##0", "pct": "0.0%", "mean": "0.00", "index": "0.0", "minutes": "0.0", "text": "@"}


def satisfaction_xlsx(report: dict, *, centre: str, group: str, month: str, generated_at: datetime,
                      lang: str = "vi", site: str | None = None) -> bytes:
    """The report as an .xlsx workbook: a header block, then the table and a totals row.

    Header block (column A): the centre's name, the title, the period, the site when the
    report covers only one (`site`: its display name), the time it was generated. The table
    header row follows one blank row; panes are frozen below it and an autofilter covers
    it and the data rows (not the totals, so sorting keeps them last).
    """
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Border, Font, PatternFill, Side
    from openpyxl.utils import get_column_letter

    t = _text(lang)
    _check_group(group)
    first, last = month_range(month)
    columns, rows, total = _table(report, group, lang)

    wb = Workbook()
    ws = wb.active
    ws.title = t["sheet"][group]
    wb.properties.creator = "hailong"
    wb.properties.title = f"{t['title']} {t['by'][group]} {month}"
    naive = generated_at.replace(tzinfo=None)
    wb.properties.created = wb.properties.modified = naive

    header = [
        (centre, Font(bold=True, size=12)),
        (f"{t['title']} {t['by'][group]}", Font(bold=True, size=14)),
        (t["period"].format(m=first.month, y=first.year, first=_day_text(first), last=_day_text(last)), Font()),
    ]
    if site is not None:
        header.append((t["site"].format(site=site), Font()))
    header.append((t["generated"].format(at=_moment_text(generated_at)), Font(italic=True)))
    for r, (value, font) in enumerate(header, start=1):
        cell = _text_cell(ws, r, 1, value)
        cell.font = font

    head = len(header) + 2  # one blank row between the block and the table
    thin = Side(style="thin", color="999999")
    border = Border(left=thin, right=thin, top=thin, bottom=thin)
    fill = PatternFill("solid", fgColor="DDEBF7")
    for c, (title, _) in enumerate(columns, start=1):
        cell = ws.cell(row=head, column=c, value=title)
        cell.font = Font(bold=True)
        cell.fill = fill
        cell.border = border
        cell.alignment = Alignment(horizontal="center", vertical="center", wrap_text=True)

    # Styling a cell makes openpyxl hash whole style objects (70 % of the build for 250 officers):
    # each combination is styled once, and later cells take a copy of its style ids.
    styles: dict[tuple, object] = {}

    def put(r: int, values: list, bold: bool = False) -> None:
        for c, ((_, kind), value) in enumerate(zip(columns, values), start=1):
            cell = _text_cell(ws, r, c, value) if kind == "text" else ws.cell(row=r, column=c, value=value)
            key = (kind, bold, value is None)
            if key in styles:
                cell._style = copy(styles[key])
                continue
            cell.border = border
            if value is not None and kind != "text":
                cell.number_format = _FORMATS[kind]
            if bold:
                cell.font = Font(bold=True)
            styles[key] = copy(cell._style)

    for i, values in enumerate(rows, start=head + 1):
        put(i, values)
    totals_at = head + len(rows) + 1
    put(totals_at, total, bold=True)

    ws.freeze_panes = ws.cell(row=head + 1, column=1)
    ws.auto_filter.ref = f"A{head}:{get_column_letter(len(columns))}{head + len(rows)}"
    ws.row_dimensions[head].height = 45
    for c, (title, kind) in enumerate(columns, start=1):
        if kind == "text":
            longest = max([len(str(v[c - 1])) for v in rows + [total]] + [len(title)])
            width = min(max(longest + 2, 18), 50)
        elif c == 1:
            width = 6
        else:
            width = 14
        ws.column_dimensions[get_column_letter(c)].width = width

    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def _text_cell(ws, row: int, column: int, value):
    """A cell holding `value` as text, never as a formula, whatever it starts with."""
    cell = ws.cell(row=row, column=column, value=safe_text(value) if isinstance(value, str) else value)
    if isinstance(value, str):
        cell.data_type = "s"
    return cell


# ----- CSV -------------------------------------------------------------------------------------


def _csv_cell(value, kind: str) -> str | int:
    if value is None:
        return ""
    if kind == "pct":
        return f"{value:.4f}"
    if kind == "mean":
        return f"{value:.3f}"
    if kind in ("index", "minutes"):
        return f"{value:.1f}"
    if isinstance(value, str) and looks_like_formula(value):
        return "'" + value
    return value


def satisfaction_csv(report: dict, *, centre: str, group: str, month: str, lang: str = "vi") -> bytes:
    """The report's table as CSV: UTF-8 with a BOM, CRLF, one header row, totals as the last row.

    `centre` and `month` are validated but not written: the file is one plain table for
    spreadsheets and scripts; the name the API gives it carries the group and month.
    """
    _text(lang)
    month_range(month)
    if not isinstance(centre, str):
        raise TypeError("centre must be a string")
    columns, rows, total = _table(report, group, lang)
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow([title for title, _ in columns])
    for values in rows + [total]:
        writer.writerow([_csv_cell(v, kind) for (_, kind), v in zip(columns, values)])
    return out.getvalue().encode("utf-8-sig")
