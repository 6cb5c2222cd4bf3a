"""The overview: today, this week and this month at a glance, and the live feed of ratings (SSE on /live)."""
# No `from __future__ import annotations`: FastAPI reads the dependency annotations as objects.

import asyncio
import json

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from broker.api.deps import Scope
from broker.i18n import CATALOGUE, level_label, pick_lang, translator
from broker.web.context import Dashboard
from broker.web.page import Dash, UserPage
from broker.web.session import LANG_COOKIE
from common.periods import overview_periods

__all__ = ["router"]

router = APIRouter(include_in_schema=False)

FEED_SIZE = 20
LIVE_POLL_S = 1.0
LIVE_BATCH = 200
LIVE_MAX_S = 30 * 60  # then the browser reconnects (with Last-Event-ID): no stream lives forever
KEEP_ALIVE_S = 15


def feed_item(dash: Dashboard, r: dict, lang: str, centres: dict[str, str] | None = None) -> dict:
    """One rating as the feed shows it; "date" only when it was not given today, "ts" orders the list.

    `centres` (site -> name), for a feed mixing several centres: each counter is named with its centre."""
    tr = translator(lang)
    counter_name = r["counter_name"] or f"{tr('live.counter')} {r['counter']}"
    if centres is not None:
        counter_name = f"{centres.get(r['site']) or r['site']} · {counter_name}"
    day = dash.local_time(r["ts"], "%Y-%m-%d")
    return {"seq": r["id"], "ts": r["ts"], "time": dash.local_time(r["ts"], "%H:%M:%S"),
            "day": day, "date": "" if day == dash.today().isoformat() else day,
            "counter": f"{r['site']}/{r['counter']}",
            "counter_name": counter_name,
            "officer": r["officer"], "officer_name": r["officer_name"] or tr("unattributed"),
            "score": r["score"], "scale": r["scale"], "level": level_label(r["scale"], r["score"], lang),
            "flagged": r["flagged"], "flags": [tr(f"flag.{f}") if f"flag.{f}" in CATALOGUE else f
                                               for f in r["flags"]]}


@router.get("/")
def overview(page: UserPage):
    """Three figures every day, even when they cover the same days (a Monday, the 1st)."""
    dash = page.dash
    sites = page.sites
    figures = [{"id": key, "label": f"period.{key}", "from": first.isoformat(), "to": last.isoformat(),
                **dash.store.rating_totals(first.isoformat(), last.isoformat(), satisfied_from=dash.satisfied_from,
                                           sites=sites)}
               for key, first, last in overview_periods(dash.today())]
    centres = _centres(dash, sites)
    feed = [feed_item(dash, r, page.lang, centres) for r in dash.store.latest_ratings(FEED_SIZE, sites=sites)]
    return page.render("overview.html", figures=figures, feed=feed, after=dash.store.last_event_id())


def _centres(dash: Dashboard, sites: frozenset[str] | None) -> dict[str, str] | None:
    """Site names when the feed mixes centres, else None."""
    return dash.site_names() if sites is None or len(sites) > 1 else None


async def _events(dash: Dashboard, after: int, lang: str, sites: frozenset[str] | None):
    """Server-sent events: each new rating at `sites` (None: any) after `after`, a keep-alive comment when idle.

    In storage order, as they arrive; each carries its event time, and the page puts it where it
    belongs in the list (static/live.js)."""
    loop = asyncio.get_running_loop()
    last = after
    centres = await run_in_threadpool(_centres, dash, sites)
    started = idle = loop.time()
    yield "retry: 2000\n\n"
    while loop.time() - started < LIVE_MAX_S:
        rows = await run_in_threadpool(dash.store.latest_ratings, LIVE_BATCH, last, sites)
        for r in rows:
            last = r["id"]
            data = json.dumps(feed_item(dash, r, lang, centres), ensure_ascii=False, separators=(",", ":"))
            yield f"id: {r['id']}\ndata: {data}\n\n"
        if rows:
            idle = loop.time()
        elif loop.time() - idle >= KEEP_ALIVE_S:
            idle = loop.time()
            yield ": keep-alive\n\n"  # finds a vanished client; keeps proxies from timing out
        if len(rows) < LIVE_BATCH:
            await asyncio.sleep(LIVE_POLL_S)


@router.get("/live")
async def live(request: Request, dash: Dash, after: int | None = None, site: str | None = None):
    session = dash.session_of(request)
    if session is None:
        return PlainTextResponse("log in first", status_code=401)
    scope = Scope.of(await run_in_threadpool(dash.principal_of, session))
    if site and not scope.sees(site):
        return PlainTextResponse("no such site", status_code=404)
    sites = frozenset({site}) if site else scope.sites
    last_id = request.headers.get("last-event-id")
    if last_id and last_id.isdigit():
        after = int(last_id)
    if after is None:
        after = await run_in_threadpool(dash.store.last_event_id)
    return StreamingResponse(_events(dash, after, pick_lang(request.cookies.get(LANG_COOKIE)), sites),
                             media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

