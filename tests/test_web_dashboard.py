"""The dashboard end to end: real uvicorn, real Mosquitto, real store and ingest, httpx as the browser."""
from __future__ import annotations

import json
import os
import re
import stat
import threading
from calendar import monthrange
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import httpx
import pytest
from argon2 import PasswordHasher

from broker.api import ApiServer, create_app
from broker.auth import ROLES, Auth
from broker.config import config_from_dict
from broker.ingest import Ingest, IngestSettings
from broker.store import Store
from broker.web import mount_dashboard
from broker.i18n import CATALOGUE, LANGS, level_label
from broker.web.session import Signer, load_or_create_secret, safe_next
from protocol.codec import decode
from protocol.events import CALL_ACTIONS, RATING_FLAGS
from tests.mosquitto import free_port
from tests.test_broker_api import NOW, Counter, counters, rating, register  # noqa: F401  (counters: fixture)

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
PASSWORD = "correct horse battery"
WEB = Path(__file__).resolve().parent.parent / "broker" / "web"
CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')


class Clock:
    """The service's clock in these tests: a fixed moment that a test may move (seconds since the epoch)."""

    def __init__(self, at: datetime):
        self.at = at

    def __call__(self) -> float:
        return self.at.timestamp()


def local_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


@dataclass
class Dash:
    store: Store
    ingest: Ingest
    auth: Auth
    server: ApiServer
    cfg: object
    clock: object  # seconds since the epoch: what the API and the pages take for "now"

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), TZ)

    def month(self) -> str:
        return self.now().strftime("%Y-%m")

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.server.url, timeout=10)

    def login(self, user: str, password: str = PASSWORD) -> httpx.Client:
        c = self.client()
        r = post_login(c, user, password)
        assert r.status_code == 303, r.text
        return c


def csrf_of(html: str) -> str:
    m = CSRF_RE.search(html)
    assert m, "no CSRF field on the page"
    return m.group(1)


def post_login(c: httpx.Client, user: str, password: str, next_: str = "/") -> httpx.Response:
    token = csrf_of(c.get("/login").text)
    return c.post("/login", data={"csrf": token, "user": user, "password": password, "next": next_})


def attrs(html: str, tag_re: str) -> list[dict[str, str]]:
    """The data-* attributes of every opening tag matching tag_re, in page order."""
    out = []
    for m in re.finditer(tag_re, html):
        out.append(dict(re.findall(r'data-([a-z-]+)="([^"]*)"', m.group(0))))
    return out


def make_cfg(tmp_path: Path, mosquitto=None, **http) -> object:
    return config_from_dict({
        "service": {"data_dir": str(tmp_path / "state")},
        "mqtt": {"embedded": False, "host": mosquitto.host if mosquitto else "127.0.0.1",
                 "port": mosquitto.port if mosquitto else 1883},
        "store": {"url": f"sqlite:///{tmp_path / 'service' / 'hailong.db'}"},
        "http": {"port": free_port(), **http},
        "auth": {"lockout_attempts": 3, "lockout_minutes": 15},
    })


def cheap_auth(cfg) -> Auth:
    # The real argon2id, with less memory and time: the lockout logic is what is tested here.
    return Auth.from_config(cfg, hasher=PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1))


@pytest.fixture
def dash_clock():
    """Pinned at the API tests' NOW: no page depends on the day the suite runs."""
    return Clock(NOW)


@pytest.fixture
def dash(tmp_path, mosquitto, dash_clock):
    cfg = make_cfg(tmp_path, mosquitto)
    store = Store.open(cfg.store.url)
    auth = cheap_auth(cfg)
    ingest = Ingest(store, IngestSettings(host=mosquitto.host, port=mosquitto.port, batch_wait_ms=5)).start()
    assert ingest.connected.wait(10)
    app = create_app(store=store, ingest=ingest, auth=auth, cfg=cfg, clock=dash_clock)
    mount_dashboard(app, store=store, ingest=ingest, auth=auth, cfg=cfg, clock=dash_clock)
    server = ApiServer(app, cfg.http.host, 0).start()  # port 0: no race for a "free" port
    for role in ROLES:
        auth.add_user(role, role, PASSWORD)
    try:
        yield Dash(store, ingest, auth, server, cfg, dash_clock)
    finally:
        server.stop()
        ingest.stop()
        auth.close()
        store.close()


def seed(dash: Dash, counters) -> tuple[Counter, Counter]:
    """o1 at s1/1: counted 4, 4, 3, 1 and a flagged 2; o2 at s1/2: 2, 1 (reason "Chờ lâu"); one NEXT call by o2.

    Stamped in the first milliseconds after the dashboard's "now".
    """
    dash.store.upsert_site("s1", "Trung tâm 1")
    dash.store.upsert_officer("o1", "Nguyễn Văn An", "A01", "Tư pháp")
    dash.store.upsert_officer("o2", "Trần Thị Bình", "B02")
    dash.store.upsert_counter("s1", "1", "Quầy 1")
    register(dash.store, ("dev-1", "s1", "1"), ("dev-2", "s1", "2"))
    t0 = local_ms(dash.now())
    c1, c2 = counters("dev-1", t0=t0), counters("dev-2", counter="2", t0=t0)
    c1.send(*(rating(c1, s, "o1") for s in (4, 4, 3, 1)), rating(c1, 2, "o1", flags=["repeat"]))
    c2.send(rating(c2, 2, "o2"), rating(c2, 1, "o2", reason="Chờ lâu"), c2.event("call", officer="o2", action="next"))
    return c1, c2


# ----- logging in ------------------------------------------------------------------------------


def test_a_visitor_without_a_session_is_sent_to_login_with_a_local_next(dash):
    c = dash.client()
    for path, want in (("/", "/"), ("/officers?period=last-month", "/officers?period=last-month"),
                       ("/devices", "/devices"), ("/misuse", "/misuse"), ("/reports", "/reports"),
                       ("/officers/o1", "/officers/o1")):
        r = c.get(path)
        assert r.status_code == 303, path
        where = urlsplit(r.headers["location"])
        assert where.path == "/login" and parse_qs(where.query)["next"] == [want], r.headers["location"]
    assert c.get("/live").status_code == 401
    # The API keeps answering in JSON, not with a redirect.
    r = c.get("/api/v1/devices")
    assert r.status_code == 401 and r.json()["detail"] == "missing bearer token"
    page = c.get("/login?next=/devices")
    assert page.status_code == 200 and 'id="login"' in page.text
    assert "Đăng nhập" in page.text


def test_login_sets_a_signed_http_only_lax_session_and_follows_next(dash):
    c = dash.client()
    r = post_login(c, "viewer", PASSWORD, next_="/officers?period=last-month")
    assert r.status_code == 303 and r.headers["location"] == "/officers?period=last-month"
    cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith("hl_session="))
    flags = [p.strip().lower() for p in cookie.split(";")]
    assert "httponly" in flags and "samesite=lax" in flags and "path=/" in flags
    assert "max-age=43200" in flags and "secure" not in flags
    assert c.get("/").status_code == 200
    # A forged or altered cookie is no session.
    value = c.cookies["hl_session"]
    forged = dash.client()
    forged.cookies.set("hl_session", value[:-2] + ("AA" if not value.endswith("AA") else "BB"))
    assert forged.get("/").status_code == 303


def test_session_cookie_is_secure_when_configured(tmp_path):
    cfg = make_cfg(tmp_path, cookie_secure=True)
    store, auth = Store.open(cfg.store.url), cheap_auth(cfg)
    app = create_app(store=store, ingest=None, auth=auth, cfg=cfg)
    mount_dashboard(app, store=store, ingest=None, auth=auth, cfg=cfg)
    server = ApiServer(app, cfg.http.host, 0).start()  # port 0: no race for a "free" port
    try:
        auth.add_user("lan", "admin", PASSWORD)
        c = httpx.Client(base_url=server.url, timeout=10)
        page = c.get("/login")
        assert "secure" in [p.strip().lower() for p in page.headers["set-cookie"].split(";")]
        # httpx keeps Secure cookies away from http://, so send the pre-session cookie by hand.
        pre = page.headers["set-cookie"].split(";")[0].split("=", 1)[1]
        r = c.post("/login", data={"csrf": csrf_of(page.text), "user": "lan", "password": PASSWORD},
                   headers={"Cookie": f"hl_pre={pre}"})
        assert r.status_code == 303
        cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith("hl_session="))
        assert "secure" in [p.strip().lower() for p in cookie.split(";")]
    finally:
        server.stop()
        auth.close()
        store.close()


def test_wrong_password_is_refused_with_a_clear_message(dash):
    c = dash.client()
    r = post_login(c, "viewer", "not the password")
    assert r.status_code == 401
    assert "Sai tên đăng nhập hoặc mật khẩu." in r.text and 'id="login-error"' in r.text
    assert "hl_session" not in c.cookies
    r = post_login(c, "nobody", "whatever it is")
    assert r.status_code == 401 and "Sai tên đăng nhập hoặc mật khẩu." in r.text


def test_repeated_failures_lock_the_account_even_for_the_right_password(dash):
    c = dash.client()
    for _ in range(dash.cfg.auth.lockout_attempts):
        assert post_login(c, "manager", "wrong wrong wrong").status_code == 401
    r = post_login(c, "manager", PASSWORD)
    assert r.status_code == 401
    assert "Tài khoản tạm khoá" in r.text and "hl_session" not in c.cookies
    c.get("/lang/en")
    r = post_login(c, "manager", PASSWORD)
    assert "Account locked after too many failed attempts" in r.text
    # Other accounts are unaffected.
    assert post_login(dash.client(), "viewer", PASSWORD).status_code == 303


def test_login_needs_the_csrf_token_bound_to_the_pre_session_cookie(dash):
    c = dash.client()
    c.get("/login")
    r = c.post("/login", data={"user": "admin", "password": PASSWORD})
    assert r.status_code == 403 and "hl_session" not in c.cookies
    # A token from another browser's pre-session does not fit this one's cookie.
    other = dash.client()
    token = csrf_of(other.get("/login").text)
    r = c.post("/login", data={"csrf": token, "user": "admin", "password": PASSWORD})
    assert r.status_code == 403 and "hl_session" not in c.cookies
    # No pre-session cookie at all.
    bare = dash.client()
    r = bare.post("/login", data={"csrf": token, "user": "admin", "password": PASSWORD})
    assert r.status_code == 403


def test_next_never_leaves_the_site(dash):
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example", "javascript:alert(1)", "/logout"):
        c = dash.client()
        r = post_login(c, "viewer", PASSWORD, next_=target)
        assert r.status_code == 303 and r.headers["location"] == "/", target
    assert safe_next("/officers?period=2024-05") == "/officers?period=2024-05"
    r = dash.client().get("/lang/en", params={"next": "https://evil.example/"})
    assert r.headers["location"] == "/"


def test_logout_needs_csrf_and_ends_the_session(dash):
    c = dash.login("viewer")
    page = c.get("/").text
    assert 'id="logout"' in page
    r = c.post("/logout", data={})
    assert r.status_code == 403 and c.get("/").status_code == 200
    r = c.post("/logout", data={"csrf": csrf_of(page)})
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert c.get("/").status_code == 303


def test_session_secret_is_generated_once_with_mode_0600(tmp_path):
    path = tmp_path / "d" / "session-secret"
    first = load_or_create_secret(path)
    assert len(first) == 32 and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_or_create_secret(path) == first
    now = [1_000_000.0]
    signer = Signer(first, clock=lambda: now[0])
    cookie, session = signer.issue("lan", "manager")
    assert signer.read(cookie) == session
    assert Signer(b"another secret of 32 bytes......").read(cookie) is None
    now[0] += 12 * 3600 + 1
    assert signer.read(cookie) is None


def test_the_dashboard_secret_file_is_created_at_mount(dash):
    path = dash.cfg.session_secret_path
    assert path.exists() and stat.S_IMODE(os.stat(path).st_mode) == 0o600 and len(path.read_bytes()) == 32


# ----- pages ----------------------------------------------------------------------------------


# Local moments where today, this week and this month meet or cross a boundary of the calendar.
MOMENTS = {
    "monday-0000": datetime(2026, 11, 30, 0, 0, tzinfo=TZ),  # a Monday: this week is just today
    "monday-end-of-month-2359": datetime(2026, 11, 30, 23, 59, tzinfo=TZ),
    "1st-0000": datetime(2026, 12, 1, 0, 0, tzinfo=TZ),  # the 1st, a Tuesday: this month is just today
    "1st-and-monday": datetime(2026, 6, 1, 9, 0, tzinfo=TZ),  # all three are just today
    "1-january-0000": datetime(2027, 1, 1, 0, 0, tzinfo=TZ),  # a Friday: this week began last year
    "1-january-2359": datetime(2027, 1, 1, 23, 59, tzinfo=TZ),
    "28-february-2359": datetime(2027, 2, 28, 23, 59, tzinfo=TZ),  # last day of a common year's February, a Sunday
    "28-february-leap-year": datetime(2028, 2, 28, 12, 0, tzinfo=TZ),  # a Monday
    "29-february-0000": datetime(2028, 2, 29, 0, 0, tzinfo=TZ),  # a Tuesday
    "29-february-2359": datetime(2028, 2, 29, 23, 59, tzinfo=TZ),
}


def figures_of(html: str) -> list[tuple[str, dict[str, str]]]:
    """The overview's figure cards in page order: (id, data-* attributes)."""
    return [(m.group(1), dict(re.findall(r'data-([a-z-]+)="([^"]*)"', m.group(0))))
            for m in re.finditer(r'<article class="card figure" id="fig-([a-z]+)"[^>]*>', html)]


def period_starts(today: date) -> dict[str, date]:
    """The calendar's rules: a week starts on Monday, a month on the 1st; each period ends today."""
    return {"today": today, "week": today - timedelta(days=today.weekday()), "month": today.replace(day=1)}


def midnight_ms(day: date) -> int:
    return local_ms(datetime.combine(day, time(0), TZ))


@pytest.mark.parametrize("moment", MOMENTS.values(), ids=MOMENTS.keys())
def test_overview_counts_today_week_and_month_from_real_events(dash, counters, moment):
    dash.clock.at = moment
    today = moment.date()
    starts = period_starts(today)
    seed(dash, counters)
    viewer = dash.login("viewer")
    html = viewer.get("/").text
    figs = figures_of(html)
    # Always the three figures, even on a day when two or all three cover the same days.
    assert [(key, f["from"], f["to"]) for key, f in figs] == \
        [(key, starts[key].isoformat(), today.isoformat()) for key in ("today", "week", "month")]
    for _, fig in figs:
        # 4, 4, 3, 1, 2, 1 counted (the flagged 2 aside) on a 4-level scale: 3 of 6 satisfied;
        # index = mean of (s-1)/3 = (1 + 1 + 2/3 + 0 + 1/3 + 0) / 6 = 50 %.
        assert (fig["ratings"], fig["rate"], fig["index"], fig["flagged"]) == ("6", "0.5", "50.0", "1")
    assert "50,0 %" in html  # Vietnamese decimal comma
    feed = attrs(html, r'<li data-seq="[^>]*>')
    # Latest given first: the two counters stamp from the same moment, so their events interleave.
    assert len(feed) == 7 and [(int(f["ts"]), int(f["seq"])) for f in feed] == \
        sorted(((int(f["ts"]), int(f["seq"])) for f in feed), reverse=True)
    assert feed[0]["officer"] == "o1" and feed[0]["score"] == "2"
    assert "Không hài lòng" in html and "Trần Thị Bình" in html

    # A rating at each period's first instant counts in it, one a millisecond earlier does not;
    # one at tomorrow's first instant counts nowhere yet.
    stamps = [midnight_ms(start) + shift for start in starts.values() for shift in (0, -1)]
    stamps.append(midnight_ms(today + timedelta(days=1)))
    register(dash.store, ("dev-edge", "s1", "3"))  # only known devices count
    edge = counters("dev-edge", counter="3")
    edge.send(*(rating(edge, 4, "o1", ts=ts) for ts in stamps))
    days = [datetime.fromtimestamp(ts / 1000, TZ).date() for ts in stamps]
    figs = dict(figures_of(viewer.get("/").text))
    for key, start in starts.items():
        assert int(figs[key]["ratings"]) == 6 + sum(start <= day <= today for day in days), key


def test_officers_table_is_wilson_ranked_and_matches_the_api(dash, counters):
    seed(dash, counters)
    c = dash.login("viewer")
    html = c.get("/officers").text
    rows = attrs(html, r'<tr data-officer="[^>]*>')
    month = dash.month()
    first, last = f"{month}-01", f"{month}-{monthrange(*map(int, month.split('-')))[1]:02d}"
    api = c.get("/api/v1/satisfaction", params={"group": "officer", "from": first, "to": last}).json()
    assert [r["officer"] for r in rows] == [r["key"] for r in api["rows"]] == ["o1", "o2"]
    for page_row, api_row in zip(rows, api["rows"]):
        assert int(page_row["ratings"]) == api_row["ratings"]
        assert float(page_row["rate"]) == api_row["rate"]
        assert float(page_row["index"]) == api_row["index"]
        assert float(page_row["wilson"]) == api_row["wilson_lower"]
        assert int(page_row["flagged"]) == api_row["flagged"]
    assert [r["rank"] for r in rows] == ["1", "2"]
    assert 'href="/officers/o1?period=this-month"' in html and "Nguyễn Văn An" in html
    assert 'data-level="4"' in html  # the stacked bar
    # An earlier month has nothing.
    empty = c.get("/officers", params={"period": "2001-01"}).text
    assert 'id="officers-empty"' in empty and 'data-officer="' not in empty


def test_officer_page_shows_trend_levels_reasons_calls_and_counters(dash, counters):
    seed(dash, counters)
    c = dash.login("viewer")
    html = c.get("/officers/o2").text
    assert 'id="trend-chart"' in html and "<svg" in html
    assert 'data-reason="Chờ lâu"' in html
    served = attrs(html, r'<section class="figures" id="officer-figures"[^>]*>')[0]
    assert served["ratings"] == "2" and served["served"] == "1"
    assert re.search(r'<tr data-action="next"><td>[^<]+</td><td class="num">1</td>', html)
    assert 'data-counter="s1/2"' in html
    today = dash.now().date().isoformat()
    assert re.search(rf'data-day="{today}" data-ratings="2"', html)
    o1 = c.get("/officers/o1").text
    assert "Không có lý do nào được chọn." in o1 and "Tư pháp" in o1
    assert c.get("/officers/nobody-like-this").status_code == 404


def test_live_feed_streams_a_rating_published_after_connecting(dash, counters):
    c1, _ = seed(dash, counters)
    c = dash.login("viewer")
    got: list[dict] = []
    connected = threading.Event()
    failed: list[BaseException] = []

    def read():
        try:
            with c.stream("GET", "/live", timeout=httpx.Timeout(15)) as r:
                assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
                connected.set()
                for line in r.iter_lines():
                    if line.startswith("data: "):
                        got.append(json.loads(line[6:]))
                        return
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            failed.append(e)
            connected.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert connected.wait(10) and not failed, failed
    c1.send(rating(c1, 3, "o1", flags=["chord"]))
    reader.join(15)
    assert not failed, failed
    assert got, "no rating arrived on /live"
    item = got[0]
    newest = dash.store.latest_ratings(1)[0]
    assert item["seq"] == newest["id"] and item["score"] == 3 and item["scale"] == 4
    assert item["counter"] == "s1/1" and item["officer"] == "o1" and item["officer_name"] == "Nguyễn Văn An"
    assert item["level"] == "Hài lòng" and item["flagged"] is True and item["flags"] == ["bấm nhiều nút"]
    assert re.fullmatch(r"\d\d:\d\d:\d\d", item["time"])


def test_live_feed_resumes_after_a_given_seq(dash, counters):
    seed(dash, counters)
    c = dash.login("viewer")
    seqs = [r["id"] for r in dash.store.latest_ratings(20)]
    with c.stream("GET", "/live", params={"after": seqs[2]}, timeout=httpx.Timeout(10)) as r:
        got = []
        for line in r.iter_lines():
            if line.startswith("data: "):
                got.append(json.loads(line[6:])["seq"])
                if len(got) == 2:
                    break
    assert got == [seqs[1], seqs[0]]


def test_language_switch_changes_labels(dash):
    c = dash.login("viewer")
    assert "Xếp hạng cán bộ" in c.get("/officers").text
    r = c.get("/lang/en", params={"next": "/officers"})
    assert r.status_code == 303 and r.headers["location"] == "/officers"
    assert "lang=en" in r.headers["set-cookie"]
    html = c.get("/officers").text
    assert "Officer ranking" in html and "Xếp hạng cán bộ" not in html and '<html lang="en">' in html
    assert 'id="lang-vi"' in html and 'id="lang-en"' in html
    c.get("/lang/vi")
    assert "Xếp hạng cán bộ" in c.get("/officers").text
    c.get("/lang/xx")  # unknown: ignored
    assert "Xếp hạng cán bộ" in c.get("/officers").text


def test_every_message_id_exists_in_both_languages():
    used: set[str] = set()
    for path in [*WEB.glob("templates/*.html"), *WEB.rglob("*.py")]:
        used |= set(re.findall(r"""\btr?\(\s*["']([a-z_.0-9]+)["']\s*[,)]""", path.read_text("utf-8")))
    assert len(used) > 60
    missing = sorted(i for i in used if i not in CATALOGUE)
    assert not missing, f"used but not in the catalogue: {missing}"
    for msg_id, texts in CATALOGUE.items():
        assert set(texts) == set(LANGS) and all(texts[lang].strip() for lang in LANGS), msg_id
    # Ids built at run time.
    dynamic = [f"role.{r}" for r in ROLES] + [f"flag.{f}" for f in RATING_FLAGS] + \
        [f"action.{a}" for a in CALL_ACTIONS] + [f"devices.{s}" for s in ("online", "offline", "unknown")] + \
        [f"msg.{m}" for m in ("identify_sent", "assigned", "assigned_not_sent", "bad_request", "approved",
                              "discarded", "nothing_held")] + \
        ["reports.by_officer", "reports.by_counter", "period.today", "period.week", "period.month"]
    assert [d for d in dynamic if d not in CATALOGUE] == []


def test_level_labels_follow_the_scale():
    assert [level_label(3, s) for s in (1, 2, 3)] == ["Không hài lòng", "Hài lòng", "Rất hài lòng"]
    assert [level_label(4, s) for s in (1, 2, 3, 4)] == ["Không hài lòng", "Bình thường", "Hài lòng", "Rất hài lòng"]
    assert [level_label(5, s) for s in (1, 2, 3, 4, 5)] == \
        ["Rất không hài lòng", "Không hài lòng", "Bình thường", "Hài lòng", "Rất hài lòng"]
    assert [level_label(5, s, "en") for s in (1, 5)] == ["Very dissatisfied", "Very satisfied"]


def test_devices_page_lists_devices_and_hides_actions_from_viewers(dash, counters):
    seed(dash, counters)
    stranger = counters("dev-3", counter="3")  # nobody registered it: listed, as such
    stranger.send(rating(stranger, 4, "o1"))
    viewer = dash.login("viewer")
    html = viewer.get("/devices").text
    rows = {r["device"]: r for r in attrs(html, r'<tr data-device="[^>]*>')}
    assert set(rows) == {"dev-1", "dev-2", "dev-3"}
    assert rows["dev-1"]["registered"] == "true"
    assert rows["dev-3"]["registered"] == "false" and "Chưa đăng ký" in html
    assert 'id="assign"' not in html and "/identify" not in html
    token = csrf_of(html)  # the logout form's: a valid token, just not enough role
    r = viewer.post("/devices/dev-1/identify", data={"csrf": token})
    assert r.status_code == 403 and "không có quyền" in r.text
    r = viewer.post("/devices/assign", data={"csrf": token, "counter": "s1/1", "officer": "o2"})
    assert r.status_code == 403
    assert dash.store.current_assignments() == {}


def test_manager_identify_publishes_the_exact_command(dash, counters):
    c1, _ = seed(dash, counters)
    manager = dash.login("manager")
    html = manager.get("/devices").text
    assert 'id="identify-dev-1"' in html and 'id="assign"' in html
    assert manager.post("/devices/dev-1/identify", data={}).status_code == 403  # no CSRF token
    r = manager.post("/devices/dev-1/identify", data={"csrf": csrf_of(html)})
    assert r.status_code == 303 and r.headers["location"].startswith("/devices?msg=identify_sent")
    payload, retained = c1.cmds.wait_for(lambda items: items, what="identify command")[0]
    assert decode(payload) == {"cmd": "identify", "seconds": 10} and not retained
    assert 'id="flash"' in manager.get(r.headers["location"]).text
    r = manager.post("/devices/ghost/identify", data={"csrf": csrf_of(html)})
    assert r.status_code == 404


def test_manager_assigns_an_officer_like_the_api_does(dash, counters):
    c1, _ = seed(dash, counters)
    manager = dash.login("manager")
    html = manager.get("/devices").text
    r = manager.post("/devices/assign", data={"csrf": csrf_of(html), "counter": "s1/1", "officer": "o2"})
    assert r.status_code == 303 and r.headers["location"] == "/devices?msg=assigned"
    payload, _ = c1.assignments.wait_for(lambda items: items, what="assignment")[-1]
    assert decode(payload) == {"officer": {"id": "o2", "name": "Trần Thị Bình", "code": "B02"}}
    # Retained, exactly as POST /api/v1/assignments does: a device connecting later gets it at once.
    late = counters("dev-1-late", subscribe=False)
    late.client.on_message = lambda c, u, m: late.assignments.append((bytes(m.payload), bool(m.retain)))
    late.client.subscribe("hailong/v1/dev-1/assignment", qos=1)
    assert late.assignments.wait_for(lambda items: items and items[-1]) == (payload, True)
    assert dash.store.current_assignments()[("s1", "1")] == "o2"
    page = manager.get("/devices").text
    assert re.search(r'<tr data-counter="s1/1" data-officer="o2">', page)
    r = manager.post("/devices/assign", data={"csrf": csrf_of(html), "counter": "s1/1", "officer": "ghost"})
    assert r.headers["location"] == "/devices?msg=bad_request"


def test_misuse_page_shows_flagged_presses_by_counter_and_hour(dash, counters):
    c1, _ = seed(dash, counters)
    html = dash.login("viewer").get("/misuse").text
    rows = attrs(html, r'<tr data-counter="[^"]*" data-flagged[^>]*>')
    assert rows == [{"counter": "s1/1", "flagged": "1", "presses": "5"}]
    hour = datetime.fromtimestamp(c1.sent[5]["ts"] / 1000, TZ).hour
    assert re.search(rf'<td data-hour="{hour}" data-n="1"', html)
    assert 'id="misuse-empty"' in dash.login("viewer").get("/misuse?period=2001-01").text


def test_reports_page_links_the_monthly_downloads(dash):
    html = dash.login("viewer").get("/reports", params={"month": "2024-05"}).text
    links = dict(re.findall(r'data-report="([a-z-]+)" href="([^"]+)"', html))
    assert links == {
        "officer-xlsx": "/api/v1/reports/satisfaction.xlsx?group=officer&amp;month=2024-05",
        "officer-csv": "/api/v1/reports/satisfaction.csv?group=officer&amp;month=2024-05",
        "counter-xlsx": "/api/v1/reports/satisfaction.xlsx?group=counter&amp;month=2024-05",
        "counter-csv": "/api/v1/reports/satisfaction.csv?group=counter&amp;month=2024-05",
    }


def test_the_api_accepts_the_session_cookie(dash, counters):
    c1, _ = seed(dash, counters)
    viewer = dash.login("viewer")
    assert viewer.get("/api/v1/devices").status_code == 200
    assert viewer.post("/api/v1/sites", json={"id": "s9"}).status_code == 401  # no X-CSRF-Token
    manager = dash.login("manager")
    token = csrf_of(manager.get("/").text)
    assert manager.post("/api/v1/devices/dev-1/identify", json={"seconds": 3}).status_code == 401
    r = manager.post("/api/v1/devices/dev-1/identify", json={"seconds": 3}, headers={"X-CSRF-Token": token})
    assert r.status_code == 202
    r = viewer.post("/api/v1/sites", json={"id": "s9"}, headers={"X-CSRF-Token": csrf_of(viewer.get("/").text)})
    assert r.status_code == 403


def test_static_assets_are_local(dash):
    c = dash.client()
    assert c.get("/static/dashboard.css").status_code == 200
    assert c.get("/static/live.js").status_code == 200
    html = c.get("/login").text
    assert not re.search(r'(src|href)="(https?:)?//', html)
    for path in WEB.glob("templates/*.html"):
        assert not re.search(r'(src|href)="(https?:)?//', path.read_text("utf-8")), path


def test_devices_page_shows_each_counter_s_last_update(dash, counters):
    """Fleet updates (docs/updates.md): the version a counter was sent and how it went, from its telemetry."""
    seed(dash, counters)
    dash.store.device_telemetry("dev-1", {
        "uptime_s": 1.0, "backlog": 0, "clock_ok": True, "fw": "0.1.0", "disk_free_mb": 1.0, "cpu_temp_c": None,
        "ts": 1, "ledger": "0123456789abcdef",
        "update": {"version": "0.2.0", "state": "rolled_back", "error": "crash loop: 3 starts"}}, at_ms=1)
    html = dash.login("viewer").get("/devices").text
    assert 'data-update="rolled_back"' in html and "0.2.0: đã quay lại bản cũ" in html and "crash loop" in html
