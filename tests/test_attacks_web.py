"""Attacks on the dashboard and the HTTP API: markup and script in every name a page shows (real
headless Chromium), spreadsheet formulas through names into the reports, path traversal and header
injection in report downloads, password guessing at /login, and every API route without the
right credentials.
"""
from __future__ import annotations

import csv
import io
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import httpx
import openpyxl
import pytest
from argon2 import PasswordHasher
from fastapi.routing import APIRoute

from broker.auth import ROLES, Auth
from tests.browser import browser
from tests.test_broker_api import NOW, Counter, counters, service  # noqa: F401  (fixtures)
from tests.test_web_dashboard import PASSWORD, dash, dash_clock, local_ms, post_login  # noqa: F401

MONTH = NOW.strftime("%Y-%m")


def rename(db_path, table: str, key: dict, **values) -> None:
    """Write names straight into the store, as an older version (or a careless import) might have."""
    sets = ", ".join(f"{k} = ?" for k in values)
    where = " AND ".join(f"{k} = ?" for k in key)
    with sqlite3.connect(db_path) as db:
        assert db.execute(f"UPDATE {table} SET {sets} WHERE {where}",
                          (*values.values(), *key.values())).rowcount == 1


# ----- markup and script on every page -----------------------------------------------------------

# Each one, if a page ever let it through as markup, sets window.__pwned or opens a dialog.
XSS = {
    "site": '<script>window.__pwned="site"</script>',
    "counter": "<img src=x onerror=\"window.__pwned='counter'\">",
    "officer": "\"><svg onload=\"window.__pwned='officer'\">",
    "unit": "</td></tr></table><script>alert('unit')</script>",
    "code": "javascript:alert(1)",
    "reason": "<iframe srcdoc=\"<script>parent.__pwned='reason'</script>\"></iframe>",
    "held site": "<script>alert('held')</script>",
    "held counter": "'><b onmouseover=alert(2)>",
}
# Ids end up in URLs, data-* attributes and next to names.
OFFICER_ID = "o'\"><i>1"
SITE_ID = "s\"><svg onload=alert('site id')>"


def seed_markup(dash, counters) -> Counter:  # noqa: F811
    store, db = dash.store, dash.store.path
    store.upsert_site(SITE_ID, "plain")
    store.upsert_counter(SITE_ID, "1", "plain")
    store.upsert_officer(OFFICER_ID, "plain", "c1", "u1")
    rename(db, "sites", {"id": SITE_ID}, name=XSS["site"])
    rename(db, "counters", {"site": SITE_ID, "counter": "1"}, name=XSS["counter"])
    rename(db, "officers", {"id": OFFICER_ID}, name=XSS["officer"], unit=XSS["unit"], code=XSS["code"])
    store.register_device("dev-1", SITE_ID, "1")
    store.assign(SITE_ID, "1", OFFICER_ID, local_ms(dash.now()) - 60_000)
    t0 = local_ms(dash.now())
    c1 = counters("dev-1", site=SITE_ID, t0=t0)
    c1.send(c1.event("rating", officer=OFFICER_ID, score=1, scale=4, reason=XSS["reason"]),
            c1.event("rating", officer=OFFICER_ID, score=2, scale=4, flags=["repeat"]),
            c1.event("call", officer=OFFICER_ID, action="next"))
    ghost = counters("ghost-9", site=XSS["held site"], counter=XSS["held counter"], t0=t0)
    ghost.send(ghost.event("rating", score=3, scale=4))  # held: nobody registered ghost-9
    return c1


def browser_login(page, base: str, user: str = "admin") -> None:
    page.goto(base + "/login")
    page.fill("#login-user", user)
    page.fill("#login-password", PASSWORD)
    page.click("#login-submit")
    page.wait_for_url(base + "/")


def assert_nothing_ran(page, dialogs: list, where: str) -> None:
    assert page.evaluate("window.__pwned === undefined"), f"{where}: script ran ({page.evaluate('window.__pwned')})"
    assert not dialogs, f"{where}: a dialog opened: {dialogs}"


def test_markup_in_names_and_reasons_is_shown_as_text_on_every_page(dash, counters):  # noqa: F811
    c1 = seed_markup(dash, counters)
    base = dash.server.url
    month_xss = quote("<script>alert('month')</script>")
    pages = ["/", "/officers", f"/officers/{quote(OFFICER_ID, safe='')}", "/devices", "/misuse", "/reports",
             f"/officers?month={month_xss}", f"/reports?month={month_xss}",
             f"/officers/{quote(OFFICER_ID, safe='')}?month={month_xss}", f"/misuse?month={month_xss}"]
    shown = ""
    with browser() as b:
        context = b.new_context()
        page = context.new_page()
        page.set_default_timeout(15_000)
        dialogs: list = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        # The login form echoes a refused user name back.
        page.goto(base + "/login?next=" + quote("javascript:alert('next')"))
        page.fill("#login-user", XSS["officer"])
        page.fill("#login-password", "wrong password")
        page.click("#login-submit")
        page.wait_for_selector("#login-error")
        assert_nothing_ran(page, dialogs, "/login")
        assert page.input_value("#login-user") == XSS["officer"]
        browser_login(page, base)
        for path in pages:
            page.goto(base + path)
            page.wait_for_load_state("load")
            assert_nothing_ran(page, dialogs, path)
            shown += page.inner_text("body")
        # The live feed builds its rows in the browser, from the same names.
        page.goto(base + "/")
        page.wait_for_selector("#live-status.on")
        c1.send(c1.event("rating", officer=OFFICER_ID, score=4, scale=4))
        page.wait_for_function("document.querySelectorAll('#live-feed li[data-seq]').length >= 2")
        assert_nothing_ran(page, dialogs, "live feed")
        shown += page.inner_text("#live-feed")
        context.close()
    # Shown, as text: the test would see it run if a page ever stopped escaping it.
    texts = {**XSS, "site id": SITE_ID}
    missing = [what for what in ("site id", "counter", "officer", "unit", "code", "reason") if texts[what] not in shown]
    assert not missing, f"never shown as text: {missing}"


# ----- formulas through names into the reports ---------------------------------------------------

FORMULAS = ["=1+1", "+SUM(A1:A9)", "-2+3", "@cmd", "\t=1+1", "\r=1+1", '=HYPERLINK("http://evil","x")']


@pytest.fixture
def formula_names(service, counters):  # noqa: F811
    """One counter and one officer per formula-like name, each with one counted rating this month."""
    store, db = service.store, service.store.path
    store.upsert_site("s1", "Trung tâm")
    for i, name in enumerate(FORMULAS, start=1):
        store.upsert_officer(f"o{i}", "plain", f"c{i}")
        store.upsert_counter("s1", str(i), "plain")
        rename(db, "officers", {"id": f"o{i}"}, name=name)
        rename(db, "counters", {"site": "s1", "counter": str(i)}, name=name)
        store.register_device(f"dev-{i}", "s1", str(i))
        c = counters(f"dev-{i}", counter=str(i))
        c.send(c.event("rating", officer=f"o{i}", score=4, scale=4))
    return service


@pytest.mark.parametrize("group", ["officer", "counter"])
def test_formula_like_names_stay_text_in_the_xlsx_report(formula_names, group):
    api = formula_names.client("viewer")
    r = api.get("/api/v1/reports/satisfaction.xlsx", params={"group": group, "month": MONTH})
    assert r.status_code == 200
    sheet = openpyxl.load_workbook(io.BytesIO(r.content)).active
    cells = {c.value: c for row in sheet.iter_rows() for c in row if isinstance(c.value, str)}
    for name in FORMULAS:
        # XML reads a bare CR in text back as LF: the same text, as far as a spreadsheet shows it.
        cell = cells.get(name) or cells.get(name.replace("\r", "\n"))
        assert cell is not None, f"{name!r} is not in the workbook as it was written"
        assert cell.data_type == "s", f"{name!r} is a {cell.data_type!r} cell, not text"
    assert not [c.coordinate for row in sheet.iter_rows() for c in row if c.data_type == "f"]


@pytest.mark.parametrize("group", ["officer", "counter"])
def test_formula_like_names_carry_the_neutralising_apostrophe_in_the_csv_report(formula_names, group):
    api = formula_names.client("viewer")
    r = api.get("/api/v1/reports/satisfaction.csv", params={"group": group, "month": MONTH})
    assert r.status_code == 200
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"), newline="")))
    names = {row[1] for row in rows[1:-1]}
    assert names == {"'" + name for name in FORMULAS}
    assert not [cell for row in rows for cell in row if cell[:1] in ("=", "+", "@", "\t", "\r")
                or (cell[:1] == "-" and not _number(cell))]


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# ----- report downloads: traversal and header injection -----------------------------------------

BAD_PARAMS = [
    {"group": "officer", "month": "../../../etc/passwd"},
    {"group": "officer", "month": "2026-11/../../x"},
    {"group": "officer", "month": "2026-11\r\nX-Injected: yes"},
    {"group": "officer", "month": "2026-11\"; filename=\"evil.exe"},
    {"group": "officer", "month": "\u0662\u0660\u0662\u0666-\u0661\u0661"},  # Arabic-Indic digits
    {"group": "officer", "month": "2026-13"},
    {"group": "../../x", "month": MONTH},
    {"group": "officer\r\nX-Injected: yes", "month": MONTH},
]


@pytest.mark.parametrize("ext", ["xlsx", "csv"])
@pytest.mark.parametrize("params", BAD_PARAMS, ids=range(len(BAD_PARAMS)))
def test_report_downloads_refuse_names_that_would_leave_their_header(service, ext, params):  # noqa: F811
    r = service.client("viewer").get(f"/api/v1/reports/satisfaction.{ext}", params=params)
    assert r.status_code == 422, r.text
    assert "content-disposition" not in r.headers and "x-injected" not in r.headers


@pytest.mark.parametrize("ext", ["xlsx", "csv"])
def test_report_file_names_are_only_group_and_month(service, ext):  # noqa: F811
    # A site is not part of the file name, so whatever it says cannot reach the header.
    r = service.client("viewer").get(f"/api/v1/reports/satisfaction.{ext}",
                                     params={"group": "counter", "month": MONTH, "site": "s1\r\nX-Injected: yes"})
    assert r.status_code == 200 and "x-injected" not in r.headers
    assert r.headers["content-disposition"] == f'attachment; filename="hailong-satisfaction-counter-{MONTH}.{ext}"'


def test_the_reports_page_links_only_its_own_downloads(dash):  # noqa: F811
    c = dash.login("viewer")
    for month in ("../../etc/passwd", "2026-11\r\nX: 1", "javascript:alert(1)"):
        r = c.get("/reports", params={"month": month})
        assert r.status_code == 200
        assert "../" not in r.text and "javascript:" not in r.text


# ----- password guessing ---------------------------------------------------------------------------


class CountingHasher(PasswordHasher):
    """The real argon2id (cheap parameters), counting the guesses actually checked; each check is
    held until `release` is set, as a slow hash under load would hold it, so parallel requests overlap."""

    def __init__(self):
        super().__init__(time_cost=1, memory_cost=8192, parallelism=1)
        self.checked = 0
        self.release = threading.Event()
        self._lock = threading.Lock()

    def verify(self, hash, password):  # noqa: A002 - argon2's own parameter name
        with self._lock:
            self.checked += 1
        self.release.wait(5)
        return super().verify(hash, password)


@pytest.fixture
def guarded(dash):  # noqa: F811
    """The dashboard, its auth rebuilt with a CountingHasher (same database, same lockout)."""
    hasher = CountingHasher()
    hasher.release.set()
    auth = Auth.from_config(dash.cfg, hasher=hasher)
    old = dash.server._config.app.state.dashboard.auth
    dash.server._config.app.state.dashboard.auth = auth
    try:
        yield dash, hasher
    finally:
        dash.server._config.app.state.dashboard.auth = old
        auth.close()


def guess(base: str, user: str, password: str) -> int:
    with httpx.Client(base_url=base, timeout=30) as c:
        return post_login(c, user, password).status_code


def test_sequential_guessing_is_locked_out_whoever_asks(guarded):
    dash, hasher = guarded
    base, attempts = dash.server.url, dash.cfg.auth.lockout_attempts
    # Each guess from a fresh client (no cookies shared): the lock is the account's, not the browser's.
    codes = [guess(base, "manager", f"guess-{i}") for i in range(attempts + 10)]
    assert codes == [401] * len(codes)
    assert hasher.checked == attempts  # the guesses after the lock were never even checked
    assert guess(base, "manager", PASSWORD) == 401
    assert guess(base, "viewer", PASSWORD) == 303  # another account is not affected


def test_parallel_guesses_get_no_more_tries_than_the_lockout_allows(guarded):
    dash, hasher = guarded
    base, attempts = dash.server.url, dash.cfg.auth.lockout_attempts
    hasher.release.clear()
    burst = 4 * attempts
    with ThreadPoolExecutor(burst) as pool:
        futures = [pool.submit(guess, base, "manager", f"guess-{i}") for i in range(burst)]
        # Hold the checks until every request is either being checked or already refused.
        deadline = threading.Event()
        for _ in range(100):
            if hasher.checked + sum(f.done() for f in futures) >= burst:
                break
            deadline.wait(0.05)
        hasher.release.set()
        codes = [f.result() for f in futures]
    assert codes == [401] * burst
    assert hasher.checked <= attempts, f"{hasher.checked} guesses checked in one burst; the lockout allows {attempts}"
    assert guess(base, "manager", PASSWORD) == 401


# ----- every API route without the right credentials ------------------------------------------------

PUBLIC = {"/healthz", "/api/v1/openapi.json", "/api/v1/docs", "/api/v1/docs/oauth2-redirect"}
# The least role each route needs; a route not named here is held to the rule: reads for any
# role, writes for admins. A new route that needs less must be added here on purpose.
LEAST = {("GET", "/api/v1/dead-letters"): "manager", ("GET", "/api/v1/users"): "admin", ("GET", "/api/v1/tokens"): "admin", ("POST", "/api/v1/assignments"): "manager",
         ("POST", "/api/v1/devices/{device_id}/display"): "manager",
         ("POST", "/api/v1/devices/{device_id}/identify"): "manager",
         ("POST", "/api/v1/alerts/{alert_id}/ack"): "manager", ("PUT", "/api/v1/sites/{site_id}/hours"): "manager"}
PATH_VALUES = {"site_id": "s1", "counter_id": "1", "officer_id": "o1", "device_id": "dev-1", "alert_id": "1",
               "queue_id": "A", "name": "test-viewer", "release_id": "1.0-3.11-aarch64", "rollout_id": "1"}
# Routes for counters, which log in with their MQTT credentials (HTTP Basic), never with a token:
# no token is refused like everywhere; the roles do not apply (tests/test_fleet_*.py try the devices).
DEVICE_ROUTES = {("GET", "/api/v1/releases/{release_id}/{name}")}
BODIES = {"/api/v1/sites": {"id": "s9", "name": "x"}, "/api/v1/sites/{site_id}": {"name": "x"},
          "/api/v1/counters": {"site": "s1", "counter": "9", "name": "x"},
          "/api/v1/counters/{site_id}/{counter_id}": {"name": "x"},
          "/api/v1/officers": {"id": "o9", "name": "x", "code": "9"}, "/api/v1/officers/{officer_id}": {"name": "x"},
          "/api/v1/devices/{device_id}": {"site": "s1", "counter": "1"},
          "/api/v1/assignments": {"site": "s1", "counter": "1", "officer": "o1"},
          "/api/v1/devices/{device_id}/display": {"ticket": "1"}, "/api/v1/devices/{device_id}/identify": {"seconds": 5},
          "/api/v1/queues": {"site": "s1", "queue": "B", "name": "x", "prefix": "B"},
          "/api/v1/queues/{site_id}/{queue_id}": {"name": "x", "prefix": "A"},
          "/api/v1/users/{name}/sites": {"sites": None}, "/api/v1/tokens/{name}/sites": {"sites": None}}


def api_routes(client: httpx.Client) -> list[tuple[str, str]]:
    """(method, path) of every route the OpenAPI document lists, but the public ones."""
    spec = client.get("/api/v1/openapi.json").json()
    return [(method.upper(), path) for path, ops in spec["paths"].items() if path not in PUBLIC
            for method in ops if method in ("get", "post", "put", "patch", "delete")]


def page_routes(routes) -> list[tuple[str, str]]:
    """(method, path) of the routes left out of the OpenAPI document: the dashboard's pages and forms.
    FastAPI >= 0.165 keeps an included router's routes inside it, older versions flat."""
    found = []
    for route in routes:
        if isinstance(route, APIRoute):
            if not route.include_in_schema:
                found += [(method, route.path) for method in sorted(route.methods)]
        elif hasattr(route, "original_router"):
            found += page_routes(route.original_router.routes)
    return found


def least_role(method: str, path: str) -> str:
    return LEAST.get((method, path), "viewer" if method == "GET" else "admin")


def call(client: httpx.Client, method: str, path: str) -> httpx.Response:
    url = path.format(**PATH_VALUES)
    params = {"group": "site", "from": "2026-11-01", "to": "2026-11-30", "month": MONTH, "officer": "o1"}
    return client.request(method, url, params=params, json=BODIES.get(path) if method != "GET" else None)


def refused_without_data(r: httpx.Response, status: int) -> bool:
    try:
        return r.status_code == status and r.json().keys() == {"detail"}
    except ValueError:
        return False


def test_every_api_route_refuses_a_missing_wrong_or_revoked_token_and_a_too_low_role(service):  # noqa: F811
    service.store.upsert_site("s1", "x")
    service.store.upsert_counter("s1", "1", "x")
    service.store.upsert_officer("o1", "x", "1")
    service.store.register_device("dev-1", "s1", "1")
    revoked = service.auth.create_token("admin", "soon-revoked")
    service.auth.revoke_token("soon-revoked")
    routes = api_routes(service.client(role=None))
    assert len(routes) >= 20 and ("GET", "/api/v1/satisfaction") in routes
    anon = service.client(role=None)
    bad = [service.client(token=t) for t in ("hl_" + "A" * 43, revoked, "not-even-a-token", service.tokens["admin"][:-1])]
    failures = []
    for method, path in routes:
        for who, client in [("no token", anon)] + [(f"bad token {i}", c) for i, c in enumerate(bad)]:
            r = call(client, method, path)
            if not refused_without_data(r, 401):
                failures.append(f"{method} {path} with {who}: {r.status_code} {r.text[:80]}")
        if (method, path) in DEVICE_ROUTES:
            continue
        need = least_role(method, path)
        for role in ROLES[:ROLES.index(need)]:
            r = call(service.client(role), method, path)
            if not refused_without_data(r, 403):
                failures.append(f"{method} {path} as {role} (needs {need}): {r.status_code} {r.text[:80]}")
        r = call(service.client(need), method, path)
        if r.status_code in (401, 403):
            failures.append(f"{method} {path} as {need}: refused ({r.status_code}), so the table above is wrong")
    assert not failures, "\n".join(failures)


def test_every_page_and_page_action_needs_a_session(dash):  # noqa: F811
    # The hall's voice clips are public like /static: spoken digits (tests/test_hall_access.py).
    open_pages = {"/login", "/logout", "/lang/{code}", "/hall/voice/{name}"}
    routes = [r for r in page_routes(dash.server._config.app.routes) if r[1] not in open_pages]
    assert {("GET", "/"), ("GET", "/officers/{officer_id}"), ("POST", "/devices/assign")} <= set(routes)
    dash.store.upsert_officer("o1", "Secret Name", "1")
    anon = dash.client()
    failures = []
    for method, path in routes:
        r = anon.request(method, path.format(officer_id="o1", device_id="dev-1", site="s1", alert_id="1"),
                         data={"site": "s1", "counter": "1", "officer": "o1"} if method == "POST" else None)
        if r.status_code not in (303, 401, 403) or "Secret Name" in r.text:
            failures.append(f"{method} {path}: {r.status_code} {r.text[:80]}")
    assert not failures, "\n".join(failures)
