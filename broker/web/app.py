"""The dashboard's routes: login, overview with a live feed, officers, devices, misuse, reports.

Server-rendered (Jinja2), every asset under /static, charts as inline SVG made here, so
the pages work on a centre's LAN with no internet. Handlers that touch SQLite or argon2
are plain `def`s, which FastAPI runs on its thread pool; only /live is async.
"""
# No `from __future__ import annotations`: FastAPI must see the local Annotated dependencies as objects.

import asyncio
import json
import logging
from calendar import monthrange
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Annotated
from urllib.parse import parse_qs, quote, unquote

import jinja2
from markupsafe import Markup, escape
from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from broker import stats
from broker.api import API, AssignmentIn, IdentifyIn, add_principal_resolver
from broker.auth import Principal
from common.periods import DEFAULT_TZ, zone
from broker.web.i18n import CATALOGUE, LANGS, level_label, pick_lang, translator
from broker.web.session import (
    LANG_COOKIE, PRE_COOKIE, SESSION_COOKIE, Session, Signer, load_or_create_secret, new_pre_session, safe_next,
)

__all__ = ["mount_dashboard", "DASHBOARD_PATHS"]

log = logging.getLogger("hailong.web")

HERE = Path(__file__).resolve().parent
MAX_FORM = 16 * 1024
LIVE_POLL_S = 1.0
LIVE_MAX_S = 30 * 60  # then the browser reconnects (with Last-Event-ID): no stream lives forever
FEED_SIZE = 20
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
MESSAGES = ("identify_sent", "assigned", "assigned_not_sent", "bad_request")
DASHBOARD_PATHS = ("/", "/officers", "/devices", "/misuse", "/reports")


class _LoginRequired(Exception):
    def __init__(self, target: str):
        self.target = target


# ----- small helpers -------------------------------------------------------------------


async def _form(request: Request) -> dict[str, str]:
    """An application/x-www-form-urlencoded body (python-multipart is not needed for that)."""
    body = await request.body()
    if len(body) > MAX_FORM:
        return {}
    parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {k: v[0] for k, v in parsed.items()}


Form = Annotated[dict, Depends(_form)]


def _month_bounds(month: str) -> tuple[str, str]:
    y, m = int(month[:4]), int(month[5:7])
    return date(y, m, 1).isoformat(), date(y, m, monthrange(y, m)[1]).isoformat()


def _shift_month(d: date, by: int) -> str:
    y, m = divmod(d.year * 12 + d.month - 1 + by, 12)
    return f"{y:04d}-{m + 1:02d}"


def _parse_period(text: str | None, today: date) -> tuple[str, str, str, str]:
    """("this-month"|"last-month"|"YYYY-MM", month, first day, last day); anything else is this month."""
    this = _shift_month(today, 0)
    if text == "last-month":
        month = _shift_month(today, -1)
        return text, month, *_month_bounds(month)
    if text and len(text) == 7 and text[4] == "-" and text[:4].isdigit() and text[5:].isdigit() \
            and 1 <= int(text[5:]) <= 12 and int(text[:4]) >= 2000:
        return (text if text != this else "this-month"), text, *_month_bounds(text)
    return "this-month", this, *_month_bounds(this)


def _num(value: float | None, lang: str, digits: int = 1) -> str:
    if value is None:
        return "—"
    text = f"{value:,.{digits}f}"
    if lang == "vi":  # 1.234,5 in Vietnamese
        text = text.replace(",", "\0").replace(".", ",").replace("\0", ".")
    return text


def _pct(rate: float | None, lang: str) -> str:
    return "—" if rate is None else _num(rate * 100, lang) + " %"


def _count(n: int | None, lang: str) -> str:
    return "0" if not n else _num(n, lang, 0)


def _hue(score: int, levels: int) -> int:
    """Red for the worst level to green for the best."""
    return round(120 * (score - 1) / max(1, levels - 1))


def _counter_value(site: str, counter: str) -> str:
    return f"{quote(site, safe='')}/{quote(counter, safe='')}"


def _trend_svg(days: list[dict], t) -> str:
    """Bars of daily counted ratings, a line of the daily satisfaction rate (0-100 %), inline SVG."""
    width, height, left, right, top, bottom = 720, 220, 40, 40, 12, 28
    plot_w, plot_h = width - left - right, height - top - bottom
    n = max(1, len(days))
    peak = max([d["ratings"] for d in days] + [1])
    step = plot_w / n
    bar_w = max(1.0, step * 0.7)
    parts = [f'<svg id="trend-chart" class="chart" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="{escape(t("officer.trend"))}" preserveAspectRatio="xMidYMid meet">']
    for frac in (0, 0.5, 1):
        y = top + plot_h * (1 - frac)
        parts.append(f'<line class="grid" x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(f'<text class="axis" x="{left - 4}" y="{y + 4:.1f}" text-anchor="end">{round(peak * frac)}</text>')
        parts.append(f'<text class="axis rate" x="{width - right + 4}" y="{y + 4:.1f}">{round(frac * 100)}%</text>')
    points = []
    for i, d in enumerate(days):
        x = left + i * step + (step - bar_w) / 2
        h = plot_h * d["ratings"] / peak
        parts.append(f'<rect class="bar" data-day="{d["day"]}" data-ratings="{d["ratings"]}" x="{x:.1f}" '
                     f'y="{top + plot_h - h:.1f}" width="{bar_w:.1f}" height="{h:.1f}">'
                     f'<title>{d["day"]}: {d["ratings"]}</title></rect>')
        if d["rate"] is not None:
            points.append(f"{left + i * step + step / 2:.1f},{top + plot_h * (1 - d['rate']):.1f}")
        if n <= 31 and (i % max(1, n // 8) == 0 or i == n - 1):
            parts.append(f'<text class="axis" x="{left + i * step + step / 2:.1f}" y="{height - 8}" '
                         f'text-anchor="middle">{d["day"][8:]}</text>')
    if points:
        parts.append(f'<polyline class="rate-line" points="{" ".join(points)}"/>')
        for p in points:
            x, y = p.split(",")
            parts.append(f'<circle class="rate-dot" cx="{x}" cy="{y}" r="2.5"/>')
    parts.append("</svg>")
    return "".join(parts)


# ----- mounting ----------------------------------------------------------------------------


def mount_dashboard(app: FastAPI, *, store, ingest, auth, cfg) -> None:
    """Add the dashboard's pages, /static and /live to `app`, and let its session authorise /api/v1."""
    try:
        signer = Signer(load_or_create_secret(cfg.session_secret_path))
    except OSError as e:
        raise RuntimeError(f"dashboard: cannot read or create the session secret {cfg.session_secret_path}: "
                           f"{e.strerror or e} (set service.data_dir or http.session_secret_file)") from None
    tz_name = getattr(cfg.service, "timezone", DEFAULT_TZ)
    tz = zone(tz_name)
    satisfied_from = getattr(cfg.service, "satisfied_from", 0) or None
    secure = bool(getattr(cfg.http, "cookie_secure", False))
    service_name = getattr(cfg.service, "name", "")
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(HERE / "templates")),
                             autoescape=jinja2.select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    def _api_endpoint(path: str, method: str):
        for route in app.routes:
            if getattr(route, "path", None) == path and method in getattr(route, "methods", ()):
                return route.endpoint
        raise RuntimeError(f"the API has no {method} {path}: mount the dashboard after create_app")

    # The API's own handlers, so the dashboard's actions behave exactly like the API's.
    api_assign = _api_endpoint(f"{API}/assignments", "POST")
    api_identify = _api_endpoint(f"{API}/devices/{{device_id}}/identify", "POST")

    # ----- sessions ----------------------------------------------------------------------

    def session_of(request: Request) -> Session | None:
        return signer.read(request.cookies.get(SESSION_COOKIE))

    def resolve(request: Request) -> Principal | None:
        """The dashboard session as an API principal. A state-changing API call made with the
        cookie must also carry the page's CSRF token in X-CSRF-Token."""
        s = session_of(request)
        if s is None:
            return None
        if request.method not in SAFE_METHODS and not signer.csrf_ok(s.sid, request.headers.get("x-csrf-token")):
            return None
        return Principal(s.user, s.role, "session")

    add_principal_resolver(app, resolve)

    def need(request: Request) -> Session:
        s = session_of(request)
        if s is None:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            raise _LoginRequired(safe_next(target))
        return s

    User = Annotated[Session, Depends(need)]

    def _to_login(request: Request, exc: _LoginRequired):
        return RedirectResponse(f"/login?next={quote(exc.target, safe='/')}", status_code=303)

    app.add_exception_handler(_LoginRequired, _to_login)

    def lang_of(request: Request) -> str:
        return pick_lang(request.cookies.get(LANG_COOKIE))

    def today() -> date:
        return datetime.now(tz).date()

    def local_time(ms: int | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
        if ms is None:
            return "—"
        return datetime.fromtimestamp(ms / 1000, tz).strftime(fmt)

    def render(request: Request, template: str, session: Session | None, status: int = 200, **ctx) -> HTMLResponse:
        lang = lang_of(request)
        tr = translator(lang)
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        html = env.get_template(template).render(
            t=tr, lang=lang, langs=LANGS, session=session, service_name=service_name, path=request.url.path,
            here=quote(safe_next(here), safe="/?=&-"), can_act=session is not None and session.role in ("manager", "admin"),
            csrf=signer.csrf_for(session.sid) if session else "",
            num=lambda v, d=1: _num(v, lang, d), pct=lambda r: _pct(r, lang), count=lambda n: _count(n, lang),
            level=lambda scale, score: level_label(scale, score, lang), hue=_hue, when=local_time, **ctx)
        response = HTMLResponse(html, status_code=status)
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "same-origin"
        return response

    def error(request: Request, session: Session | None, status: int, msg_id: str) -> HTMLResponse:
        return render(request, "error.html", session, status=status, message_id=msg_id)

    def set_cookie(response: Response, name: str, value: str, max_age: int | None, httponly: bool = True) -> None:
        response.set_cookie(name, value, max_age=max_age, path="/", httponly=httponly, samesite="lax", secure=secure)

    # ----- login -------------------------------------------------------------------------

    def login_page(request: Request, *, next_: str, message: str | None = None, status: int = 200,
                   user: str = "") -> HTMLResponse:
        pre = request.cookies.get(PRE_COOKIE)
        if not pre or len(pre) > 64:
            pre = new_pre_session()
        response = render(request, "login.html", None, status=status, login_csrf=signer.csrf_for("pre:" + pre),
                          next=next_, message=message, user=user)
        set_cookie(response, PRE_COOKIE, pre, max_age=3600)
        return response

    @app.get("/login", include_in_schema=False)
    def login_form(request: Request, next: str = "/"):
        if session_of(request) is not None:
            return RedirectResponse(safe_next(next), status_code=303)
        return login_page(request, next_=safe_next(next))

    @app.post("/login", include_in_schema=False)
    def login(request: Request, form: Form):
        tr = translator(lang_of(request))
        next_ = safe_next(form.get("next"))
        pre = request.cookies.get(PRE_COOKIE)
        if not signer.csrf_ok("pre:" + pre if pre else None, form.get("csrf")):
            return login_page(request, next_=next_, message=tr("login.expired"), status=403)
        name, password = form.get("user", "").strip(), form.get("password", "")
        who = auth.verify_password(name, password) if name and password else None
        if who is None:
            until = auth.locked_until_ms(name) if name else None
            if until is not None:
                message = tr("login.locked", until=local_time(until, "%H:%M"))
                log.warning("dashboard login refused: %r is locked", name)
            else:
                message = tr("login.wrong")
                log.info("dashboard login failed for %r", name)
            return login_page(request, next_=next_, message=message, status=401, user=name)
        cookie, _ = signer.issue(who.name, who.role)
        response = RedirectResponse(next_, status_code=303)
        set_cookie(response, SESSION_COOKIE, cookie, max_age=signer.ttl_s)
        response.delete_cookie(PRE_COOKIE, path="/")
        log.info("dashboard login: %s (%s)", who.name, who.role)
        return response

    @app.post("/logout", include_in_schema=False)
    def logout(request: Request, form: Form):
        s = session_of(request)
        if s is not None and not signer.csrf_ok(s.sid, form.get("csrf")):
            return error(request, s, 403, "error.csrf")
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/", secure=secure, httponly=True, samesite="lax")
        return response

    @app.get("/lang/{code}", include_in_schema=False)
    def set_lang(request: Request, code: str, next: str | None = None):
        target = safe_next(next) if next else "/"
        response = RedirectResponse(target, status_code=303)
        if code in LANGS:
            set_cookie(response, LANG_COOKIE, code, max_age=365 * 86400, httponly=False)
        return response

    # ----- overview and live feed --------------------------------------------------------

    def feed_item(r: dict, lang: str) -> dict:
        tr = translator(lang)
        return {"seq": r["id"], "ts": r["ts"], "time": local_time(r["ts"], "%H:%M:%S"),
                "day": local_time(r["ts"], "%Y-%m-%d"),
                "counter": f"{r['site']}/{r['counter']}", "counter_name": r["counter_name"] or f"{tr('live.counter')} {r['counter']}",
                "officer": r["officer"], "officer_name": r["officer_name"] or tr("unattributed"),
                "score": r["score"], "scale": r["scale"], "level": level_label(r["scale"], r["score"], lang),
                "flagged": r["flagged"], "flags": [tr(f"flag.{f}") if f"flag.{f}" in CATALOGUE else f
                                                   for f in r["flags"]]}

    @app.get("/", include_in_schema=False)
    def overview(request: Request, session: User):
        d = today()
        periods = [("period.today", d, d), ("period.week", d - timedelta(days=d.weekday()), d),
                   ("period.month", d.replace(day=1), d)]
        figures = [{"id": key.split(".")[1], "label": key, "from": a.isoformat(), "to": b.isoformat(),
                    **store.rating_totals(a.isoformat(), b.isoformat(), satisfied_from=satisfied_from)}
                   for key, a, b in periods]
        lang = lang_of(request)
        feed = [feed_item(r, lang) for r in store.latest_ratings(FEED_SIZE)]
        after = store.last_event_id()
        return render(request, "overview.html", session, figures=figures, feed=feed, after=after)

    @app.get("/live", include_in_schema=False)
    async def live(request: Request, after: int | None = None):
        s = session_of(request)
        if s is None:
            return PlainTextResponse("log in first", status_code=401)
        lang = lang_of(request)
        last_id = request.headers.get("last-event-id")
        if last_id and last_id.isdigit():
            after = int(last_id)
        if after is None:
            after = await run_in_threadpool(store.last_event_id)
        loop = asyncio.get_running_loop()

        async def stream():
            last = after
            started = idle = loop.time()
            yield "retry: 2000\n\n"
            while loop.time() - started < LIVE_MAX_S:
                rows = await run_in_threadpool(store.latest_ratings, 200, last)
                for r in rows:
                    last = r["id"]
                    data = json.dumps(feed_item(r, lang), ensure_ascii=False, separators=(",", ":"))
                    yield f"id: {r['id']}\ndata: {data}\n\n"
                if rows:
                    idle = loop.time()
                elif loop.time() - idle >= 15:
                    idle = loop.time()
                    yield ": keep-alive\n\n"  # finds a vanished client; keeps proxies from timing out
                if len(rows) < 200:
                    await asyncio.sleep(LIVE_POLL_S)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    # ----- officers ----------------------------------------------------------------------

    @app.get("/officers", include_in_schema=False)
    def officers(request: Request, session: User, period: str | None = None):
        d = today()
        chosen, month, first, last = _parse_period(period, d)
        result = store.satisfaction("officer", first, last, satisfied_from=satisfied_from)
        months = [_shift_month(d, -i) for i in range(0, 13)]
        return render(request, "officers.html", session, result=result, period=chosen, month=month,
                      first=first, last=last, months=months)

    @app.get("/officers/{officer_id}", include_in_schema=False)
    def officer(request: Request, session: User, officer_id: str, period: str | None = None):
        d = today()
        chosen, month, first, last = _parse_period(period, d)
        record = store.officer(officer_id)
        result = store.satisfaction("officer", first, last, satisfied_from=satisfied_from)
        row = next((r for r in result["rows"] if r["key"] == officer_id), None)
        if record is None and row is None:
            return error(request, session, 404, "error.not_found")
        scale = result["scale"] or 5
        per_day: dict[str, dict[int, dict[int, int]]] = {}
        for day, sc, score, flagged, n in store.officer_days(officer_id, first, last):
            if not flagged:
                per_day.setdefault(day, {}).setdefault(sc, {})[score] = n
        end = min(date.fromisoformat(last), d) if date.fromisoformat(first) <= d else date.fromisoformat(last)
        days = []
        cur = date.fromisoformat(first)
        while cur <= end:
            key = cur.isoformat()
            fig = stats.summarize_scales(per_day.get(key, {}), scale, 0, satisfied_from)
            days.append({"day": key, "ratings": fig["ratings"], "rate": fig["rate"]})
            cur += timedelta(days=1)
        tr = translator(lang_of(request))
        return render(request, "officer.html", session, officer_id=officer_id,
                      name=(record or {}).get("name") or (row or {}).get("name") or officer_id,
                      record=record, row=row, scale=scale, period=chosen, month=month, first=first, last=last,
                      reasons=store.low_reasons(officer_id, first, last),
                      calls=store.officer_calls(officer_id, first, last),
                      counters=store.officer_counters(officer_id, first, last),
                      trend=Markup(_trend_svg(days, tr)), days=days,
                      months=[_shift_month(d, -i) for i in range(0, 13)])

    # ----- counters and devices ----------------------------------------------------------

    @app.get("/devices", include_in_schema=False)
    def devices(request: Request, session: User, msg: str | None = None, device: str | None = None):
        counters = store.counters()
        names = {(c["site"], c["counter"]): c["name"] for c in counters}
        officers_ = store.officers()
        officer_names = {o["id"]: o["name"] for o in officers_}
        assigned = store.current_assignments()
        rows = []
        for dev in store.devices():
            key = (dev["site"], dev["counter"])
            officer_id = assigned.get(key)
            rows.append({**dev, "counter_name": names.get(key) or "",
                         "officer": officer_id, "officer_name": officer_names.get(officer_id, officer_id)})
        known = {(c["site"], c["counter"]) for c in counters}
        all_counters = [*counters, *({"site": s, "counter": c, "name": "", "device": None}
                                     for s, c in sorted({(r["site"], r["counter"]) for r in rows
                                                         if r["site"] is not None} - known))]
        counter_rows = [{**c, "value": _counter_value(c["site"], c["counter"]),
                         "officer": assigned.get((c["site"], c["counter"])),
                         "officer_name": officer_names.get(assigned.get((c["site"], c["counter"])))}
                        for c in all_counters]
        return render(request, "devices.html", session, devices=rows, counters=counter_rows, officers=officers_,
                      message=msg if msg in MESSAGES else None, message_device=device or "")

    def act(request: Request, session: Session, form: dict) -> Response | None:
        """None if the session may change things and the form carries its CSRF token; else the refusal."""
        if not signer.csrf_ok(session.sid, form.get("csrf")):
            return error(request, session, 403, "error.csrf")
        if session.role not in ("manager", "admin"):
            return error(request, session, 403, "error.forbidden")
        return None

    @app.post("/devices/{device_id}/identify", include_in_schema=False)
    def identify(request: Request, session: User, device_id: str, form: Form):
        refused = act(request, session, form)
        if refused is not None:
            return refused
        try:
            api_identify(Principal(session.user, session.role, "session"), device_id, IdentifyIn(seconds=10))
        except StarletteHTTPException as e:
            if e.status_code == 404:
                return error(request, session, 404, "error.not_found")
            raise
        log.info("dashboard: %s asked %s to identify itself", session.user, device_id)
        return RedirectResponse(f"/devices?msg=identify_sent&device={quote(device_id, safe='')}", status_code=303)

    @app.post("/devices/assign", include_in_schema=False)
    def assign(request: Request, session: User, form: Form):
        refused = act(request, session, form)
        if refused is not None:
            return refused
        site, _, counter = form.get("counter", "").partition("/")
        officer_id = form.get("officer") or None
        try:
            body = AssignmentIn(site=unquote(site), counter=unquote(counter), officer=officer_id)
            result = api_assign(Principal(session.user, session.role, "session"), body)
        except ValidationError:
            return RedirectResponse("/devices?msg=bad_request", status_code=303)
        except StarletteHTTPException as e:
            if e.status_code in (404, 422):
                return RedirectResponse("/devices?msg=bad_request", status_code=303)
            raise
        sent = not (isinstance(result, Response) and result.status_code == 409)
        log.info("dashboard: %s assigned %r to %s/%s", session.user, officer_id, body.site, body.counter)
        return RedirectResponse(f"/devices?msg={'assigned' if sent else 'assigned_not_sent'}", status_code=303)

    # ----- misuse ------------------------------------------------------------------------

    @app.get("/misuse", include_in_schema=False)
    def misuse(request: Request, session: User, period: str | None = None):
        d = today()
        chosen, month, first, last = _parse_period(period, d)
        by_counter = store.flagged_by_counter(first, last)
        by_hour = store.flagged_by_hour(first, last, tz_name)
        hours_total = [sum(c.get(h, 0) for c in by_hour.values()) for h in range(24)]
        peak = max([n for c in by_hour.values() for n in c.values()] + [1])
        grid = [{"site": r["site"], "counter": r["counter"], "name": r["name"],
                 "hours": [by_hour.get((r["site"], r["counter"]), {}).get(h, 0) for h in range(24)]}
                for r in by_counter]
        return render(request, "misuse.html", session, period=chosen, month=month, first=first, last=last,
                      by_counter=by_counter, grid=grid, hours_total=hours_total, peak=peak,
                      total=sum(r["flagged"] for r in by_counter), months=[_shift_month(d, -i) for i in range(13)])

    # ----- reports -----------------------------------------------------------------------

    @app.get("/reports", include_in_schema=False)
    def reports(request: Request, session: User, month: str | None = None):
        d = today()
        _, chosen, _, _ = _parse_period(month, d)
        months = [_shift_month(d, -i) for i in range(13)]
        return render(request, "reports.html", session, month=chosen, months=months, api=API)

