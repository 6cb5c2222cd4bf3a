"""Alerts: the open ones and the recent history, acknowledged by a named manager; each site's opening hours.

The same actions as `POST /api/v1/alerts/{id}/ack` and `PUT /api/v1/sites/{id}/hours`, for a
manager; anyone logged in sees the page. The open count is the badge in every page's menu.
"""
# No `from __future__ import annotations`: FastAPI reads the dependency annotations as objects.

import logging
import re
from datetime import datetime, timedelta

from fastapi import APIRouter
from fastapi.responses import RedirectResponse

from broker.alerts.hours import Hours
from broker.alerts.messages import describe, title
from broker.api.alerts import EMAIL_PATTERN, default_hours_of, hours_view
from broker.web.page import ActingPage, Form, UserPage

__all__ = ["router"]

log = logging.getLogger("hailong.web")

router = APIRouter(include_in_schema=False)

MESSAGES = ("acked", "hours_saved", "bad_hours")
HISTORY_DAYS = 7
MAX_RECIPIENTS = 50


def _rows(alerts: list[dict], lang: str) -> list[dict]:
    return [{**a, "title": title(a["rule"], lang), "line": describe(a, lang)} for a in alerts]


@router.get("/alerts")
def alerts_page(page: UserPage, msg: str | None = None, site: str = ""):
    dash = page.dash
    since = datetime.combine(dash.today() - timedelta(days=HISTORY_DAYS), datetime.min.time(), dash.tz)
    shown = page.sites  # a scoped user's sites, or the one picked
    history = [a for a in dash.store.alerts("all", int(since.timestamp() * 1000), sites=shown)
               if a["state"] == "resolved"]
    default = default_hours_of(page.request)
    sites = [{**s, **hours_view(dash.store, s["id"], default)} for s in dash.store.sites()
             if shown is None or s["id"] in shown]
    return page.render("alerts.html", open_alerts=_rows(dash.store.open_alerts(shown), page.lang),
                       history=_rows(history, page.lang), sites=sites, history_days=HISTORY_DAYS,
                       message=msg if msg in MESSAGES else None, message_site=site[:64])


@router.post("/alerts/{alert_id}/ack")
def ack(page: ActingPage, alert_id: int):
    alert = page.dash.store.alert(alert_id)
    if alert is None or not page.scope.sees(alert["site"]):
        return page.error(404, "error.not_found")
    if page.dash.store.ack_alert(alert_id, page.session.user, page.dash.now_ms()) is None:
        return page.error(404, "error.not_found")
    log.info("dashboard: %s acknowledged alert %d", page.session.user, alert_id)
    return RedirectResponse("/alerts?msg=acked", status_code=303)


def _list(text: str) -> list[str]:
    return [part.strip() for part in text.replace(";", ",").replace("\n", ",").split(",") if part.strip()]


@router.post("/alerts/hours")
def save_hours(page: ActingPage, form: Form):
    site = form.get("site", "")
    store = page.dash.store
    try:
        if store.site(site) is None or not page.scope.sees(site):
            raise ValueError("no such site")
        hours = Hours.from_text(form.get("weekly", ""), closed=_list(form.get("closed", "")))
        email_to = _list(form.get("email_to", ""))
        if len(email_to) > MAX_RECIPIENTS or not all(re.fullmatch(EMAIL_PATTERN, a) for a in email_to):
            raise ValueError("bad recipients")
    except ValueError:
        return RedirectResponse("/alerts?msg=bad_hours#hours", status_code=303)
    store.set_site_hours(site, hours.to_json(), email_to, page.dash.now_ms(), page.session.user)
    log.info("dashboard: %s set the opening hours of %s", page.session.user, site)
    return RedirectResponse("/alerts?msg=hours_saved#hours", status_code=303)
