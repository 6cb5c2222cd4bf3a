"""The hall display: /hall/{site}, a full-screen page for a TV with the latest calls, the number waiting
per queue, and each call announced by voice.

Opened with `?key=<a display token of that site>` (a kiosk browser has nobody to log in), or by a
logged-in user. Live like the overview: /hall/{site}/live is an SSE stream that polls the store for
calls after an id, so it works from any service instance and resumes with Last-Event-ID. The voice
is short clips played one after another by the page (broker.voice says which); they are served from
/hall/voice/, out of `[hall] voice_dir` when a centre has recorded its own, else the shipped ones.
"""
# No `from __future__ import annotations`: FastAPI reads the dependency annotations as objects.

import asyncio
import json
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import FileResponse, PlainTextResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from broker import voice
from broker.api.deps import check_hall
from broker.auth import Principal
from broker.i18n import pick_lang, translator
from broker.web.context import Dashboard
from broker.web.page import AnyPage, Dash
from broker.web.session import LANG_COOKIE
from protocol.codec import MAX_INT

__all__ = ["HALL_POLL_S", "router"]

router = APIRouter(include_in_schema=False)

SHOWN = 6  # calls on screen: the newest big, the others below
HALL_POLL_S = 0.5  # a call reaches the screen within this, plus a store read
HALL_BATCH = 100
HALL_MAX_S = 30 * 60  # then the browser reconnects (Last-Event-ID): no stream lives forever
KEEP_ALIVE_S = 15
RECHECK_S = 30  # a revoked key's stream ends within this; the browser's reconnect is then refused
CLIP_TYPES = {".wav": "audio/wav", ".ogg": "audio/ogg", ".mp3": "audio/mpeg"}
IDLE_TICKETS = ("", "----")
ANNOUNCE_MAX_S = 60  # older calls are shown but not announced  # NEXT with nobody waiting: nothing to announce


def _caller(dash: Dashboard, request: Request, key: str | None) -> Principal | None:
    if key:
        return dash.auth.verify_token(key)
    s = dash.session_of(request)
    return None if s is None else dash.principal_of(s)  # a scoped user watches only its sites' halls


def _refusal(dash: Dashboard, request: Request, site: str, key: str | None) -> Response | None:
    """None if the caller may watch `site`'s hall, else the answer: 401 without a valid key, 403 for another."""
    who = _caller(dash, request, key)
    if who is None:
        return PlainTextResponse("a display token is needed: /hall/<site>?key=<token>", status_code=401)
    try:
        check_hall(who, site)
    except HTTPException as e:
        return PlainTextResponse(e.detail, status_code=e.status_code)
    return None


def clip_path(folder: Path | None, name: str) -> Path | None:
    """The file of clip `name`: the centre's recording if its folder has one, else the shipped clip."""
    if name not in voice.CLIP_TEXTS:
        return None  # only known names: nothing else of the disk is reachable from here
    for base in ([folder] if folder else []) + [voice.DEFAULT_DIR]:
        for ext in CLIP_TYPES:
            path = base / f"{name}{ext}"
            if path.is_file():
                return path
    return None


@router.get("/hall/voice/{name}")
def voice_clip(dash: Dash, name: str):
    path = clip_path(dash.voice_dir, name)
    if path is None:
        return PlainTextResponse("no such clip", status_code=404)
    # Public like /static: a clip is a spoken digit. no-cache: the browser revalidates (a 304 on a
    # LAN), so clips a centre replaces are heard at once, without restarting the TV.
    return FileResponse(path, media_type=CLIP_TYPES[path.suffix], headers={"Cache-Control": "no-cache"})


class _Names:
    """Queue names of one site, read once per stream: a renamed queue shows after a reconnect."""

    def __init__(self, store, site: str):
        self.queues = {q["queue"]: q.get("name") or "" for q in store.queues(site)}


def call_item(dash: Dashboard, r: dict, lang: str) -> dict:
    counter_name = r.get("counter_name") or f"{translator(lang)('hall.counter')} {r['counter']}"
    ticket = r.get("ticket") or ""
    # A screen back from an outage catches up on the calls it missed, silently: only a call the
    # citizen may still be walking to is announced.
    stale = dash.now_ms() - r["ts"] > ANNOUNCE_MAX_S * 1000
    clips = [] if ticket in IDLE_TICKETS or stale else voice.announcement(ticket, r["counter"], counter_name)
    return {"id": r["id"], "ticket": ticket, "queue": r.get("queue"), "counter": r["counter"],
            "counter_name": counter_name, "action": r.get("action"), "recall": bool(r.get("recall")),
            "time": dash.local_time(r["ts"], "%H:%M"), "clips": clip_urls(r["id"], clips)}


def clip_urls(call_id: int, clips: list[str]) -> list[str]:
    """One address per clip and call: the browser fetches every clip it plays (a few KB on the LAN), so
    the service's access log shows each announcement the TV made, and a replaced clip is heard at once."""
    return [f"/hall/voice/{c}?call={call_id}&n={i}" for i, c in enumerate(clips)]


def waiting_item(names: _Names, counts: dict) -> list[dict]:
    keys = sorted(set(names.queues) | set(counts))
    return [{"queue": q, "name": names.queues.get(q) or q, "waiting": int(counts.get(q, 0))} for q in keys]


@router.get("/hall/{site}")
def hall(page: AnyPage, site: str, key: str | None = None):
    dash = page.dash
    refused = _refusal(dash, page.request, site, key)
    if refused is not None:
        return refused
    names = _Names(dash.store, site)
    recent = dash.store.recent_calls(site, SHOWN)  # newest first
    calls = [call_item(dash, r, page.lang) for r in recent if (r.get("ticket") or "") not in IDLE_TICKETS]
    site_row = dash.store.site(site) or {}
    response = page.render("hall.html", hall_site=site, site_name=site_row.get("name") or site, calls=calls,
                           waiting=waiting_item(names, dash.store.waiting_counts(site, clock=dash.clock)),
                           after=recent[0]["id"] if recent else 0, key=key or "")
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    response.headers["Referrer-Policy"] = "no-referrer"  # the key is in this page's address
    return response


async def _events(dash: Dashboard, site: str, after: int, lang: str, allowed):
    """Each new call after `after` (event `call`), the waiting counts when they change (event `waiting`);
    ends when `allowed()` stops saying yes (a revoked key), checked every RECHECK_S."""
    loop = asyncio.get_running_loop()
    names = await run_in_threadpool(_Names, dash.store, site)
    last, counts = after, None
    started = idle = checked = loop.time()
    yield "retry: 2000\n\n"
    while loop.time() - started < HALL_MAX_S:
        if loop.time() - checked >= RECHECK_S:
            checked = loop.time()
            if not await run_in_threadpool(allowed):
                return
        rows = await run_in_threadpool(dash.store.calls_after, site, last, HALL_BATCH)
        for r in rows:
            last = r["id"]
            data = json.dumps(call_item(dash, r, lang), ensure_ascii=False, separators=(",", ":"))
            yield f"event: call\nid: {r['id']}\ndata: {data}\n\n"
        now_counts = await run_in_threadpool(lambda: dash.store.waiting_counts(site, clock=dash.clock))
        if now_counts != counts:
            counts = now_counts
            data = json.dumps(waiting_item(names, counts), ensure_ascii=False, separators=(",", ":"))
            yield f"event: waiting\ndata: {data}\n\n"
        if rows:
            idle = loop.time()
        elif loop.time() - idle >= KEEP_ALIVE_S:
            idle = loop.time()
            yield ": keep-alive\n\n"
        if len(rows) < HALL_BATCH:
            await asyncio.sleep(HALL_POLL_S)


@router.get("/hall/{site}/live")
async def hall_live(request: Request, dash: Dash, site: str, key: str | None = None,
                    after: Annotated[int | None, Query(ge=0, le=MAX_INT)] = None):
    refused = await run_in_threadpool(_refusal, dash, request, site, key)
    if refused is not None:
        return refused
    last_id = request.headers.get("last-event-id")
    if last_id and last_id.isascii() and last_id.isdigit() and int(last_id) <= MAX_INT:
        after = int(last_id)
    if after is None:
        recent = await run_in_threadpool(dash.store.recent_calls, site, 1)
        after = recent[0]["id"] if recent else 0
    allowed = lambda: _refusal(dash, request, site, key) is None  # noqa: E731
    return StreamingResponse(_events(dash, site, after, pick_lang(request.cookies.get(LANG_COOKIE)), allowed),
                             media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
