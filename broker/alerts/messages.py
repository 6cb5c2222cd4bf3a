"""What an alert says: a title and a line per rule, in Vietnamese (first) and English.

Used by the e-mails, the webhook's body and the dashboard's alerts page, so each says the same.
"""
from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

__all__ = ["TITLES", "describe", "email_for", "summary_email", "title", "webhook_body"]

TITLES: dict[str, dict[str, str]] = {
    "offline": {"vi": "Thiết bị mất kết nối trong giờ làm việc", "en": "Device offline during opening hours"},
    "backlog": {"vi": "Thiết bị tồn nhiều đánh giá chưa gửi được", "en": "Device backlog growing"},
    "clock": {"vi": "Đồng hồ thiết bị chưa đồng bộ", "en": "Device clock not synchronised"},
    "salvage": {"vi": "Sổ ghi của thiết bị bị hỏng và đã cách ly", "en": "Device ledger quarantined"},
    "printer": {"vi": "Máy in phiếu của ki-ốt gặp sự cố", "en": "Kiosk printer needs attention"},
    "low_streak": {"vi": "Cán bộ nhận nhiều đánh giá không hài lòng liên tiếp",
                   "en": "Officer received lowest ratings in a row"},
    "low_rate": {"vi": "Tỷ lệ hài lòng của cán bộ thấp", "en": "Officer's satisfaction rate is low"},
    "flagged": {"vi": "Bấm bất thường tại quầy", "en": "Unusual presses at a counter"},
}
_STATE = {"open": {"vi": "CẢNH BÁO", "en": "ALERT"}, "resolve": {"vi": "ĐÃ HẾT", "en": "RESOLVED"}}
_PRINTER = {"paper_out": {"vi": "hết giấy", "en": "out of paper"},
            "missing": {"vi": "không tìm thấy máy in", "en": "printer missing"}}


def title(rule: str, lang: str = "vi") -> str:
    return TITLES.get(rule, {}).get(lang, rule)


def describe(alert: dict, lang: str = "vi") -> str:
    """One line naming the subject: the counter, the device, the officer, and the rule's figure."""
    d = alert.get("details") or {}
    vi = lang == "vi"
    where = f"{d.get('site_name') or d.get('site') or ''} / {'quầy' if vi else 'counter'} {d.get('counter_name') or ''}"
    rule = alert["rule"]
    if rule in ("low_streak", "low_rate"):
        who = f"{'Cán bộ' if vi else 'Officer'} {d.get('officer_name')} ({d.get('officer')}), {where}"
        if rule == "low_streak":
            return f"{who}: {d.get('streak')} {'lượt «Không hài lòng» liên tiếp' if vi else 'lowest ratings in a row'}"
        rate = f"{round(100 * float(d.get('rate') or 0))}%"
        return f"{who}: {rate} {'hài lòng trong' if vi else 'satisfied over the last'} {d.get('ratings')} " \
               f"{'lượt gần nhất' if vi else 'ratings'}"
    if rule == "flagged":
        return f"{where}: {d.get('flagged')} {'lượt bấm bị đánh dấu trong 1 giờ' if vi else 'flagged presses in an hour'}"
    device = f"{where}, {'thiết bị' if vi else 'device'} {d.get('device')}"
    if rule == "backlog":
        return f"{device}: {d.get('backlog')} {'sự kiện chưa gửi' if vi else 'events not yet delivered'}"
    if rule == "printer":
        return f"{device}: {_PRINTER.get(d.get('printer'), {}).get(lang, d.get('printer'))}"
    return device


def _when(ms: int | None, tz: ZoneInfo) -> str:
    return "—" if ms is None else datetime.fromtimestamp(ms / 1000, tz).strftime("%Y-%m-%d %H:%M")


def _lines(alert: dict, kind: str, lang: str, tz: ZoneInfo) -> list[str]:
    vi = lang == "vi"
    lines = [f"[{_STATE[kind][lang]}] {title(alert['rule'], lang)}", describe(alert, lang),
             f"{'Bắt đầu' if vi else 'Opened'}: {_when(alert['opened_ms'], tz)}"]
    if kind == "resolve":
        lines.append(f"{'Kết thúc' if vi else 'Resolved'}: {_when(alert['resolved_ms'], tz)}")
    return lines


def email_for(alert: dict, kind: str, tz: ZoneInfo, centre: str) -> tuple[str, str]:
    """(subject, text): Vietnamese first, English below."""
    subject = f"[hailong] {_STATE[kind]['vi']}: {title(alert['rule'])} — {describe(alert)}"
    text = "\n".join([centre, "", *_lines(alert, kind, "vi", tz), "", "— English —", *_lines(alert, kind, "en", tz),
                      "", f"#{alert['id']} {alert['rule']} {alert['subject']}"])
    return subject[:250], text + "\n"


def webhook_body(alert: dict, kind: str, tz: ZoneInfo) -> dict:
    return {"event": "alert.opened" if kind == "open" else "alert.resolved", "alert": alert,
            "text": "\n".join(_lines(alert, kind, "vi", tz)), "text_en": "\n".join(_lines(alert, kind, "en", tz))}


def summary_email(site_name: str, day: str, alerts: list[dict], centre: str) -> tuple[str, str]:
    """The day's alerts of a site, for its closing time."""
    subject = f"[hailong] Tổng hợp cảnh báo {day} — {site_name}"
    rows = [f"- {title(a['rule'])}: {describe(a)} ({'đang mở' if a['state'] == 'open' else 'đã hết'})"
            for a in alerts] or ["Không có cảnh báo nào trong ngày."]
    en = [f"- {title(a['rule'], 'en')}: {describe(a, 'en')} ({a['state']})" for a in alerts] or ["No alerts today."]
    text = "\n".join([centre, f"{site_name}, {day}: {len(alerts)} cảnh báo", *rows, "", "— English —",
                      f"{site_name}, {day}: {len(alerts)} alerts", *en])
    return subject, text + "\n"
