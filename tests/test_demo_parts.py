"""Parts of `hailong demo` tested on their own: the login file and the demo site's day and time.

The login file is written whole with common.fsutil.atomic_write and readable by its owner only;
"today" and the times shown are the demo site's (Asia/Ho_Chi_Minh), from the clock it is given.
"""
from __future__ import annotations

import json
import os
import stat
from datetime import datetime

import pytest

from broker.auth import Auth
from hailong.demo import login
from hailong.demo.config import local_time, today


@pytest.fixture
def auth(tmp_path):
    with Auth(tmp_path / "data" / "hailong.db") as a:
        yield a


def test_login_file_is_written_atomically_at_mode_0600(tmp_path, auth, monkeypatch):
    data = tmp_path / "data"
    writes = []
    real = login.atomic_write
    monkeypatch.setattr(login, "atomic_write", lambda path, blob, mode: writes.append((path, mode)) or real(
        path, blob, mode=mode))
    old_umask = os.umask(0o022)  # a usual umask, under which a plain write is world-readable
    try:
        saved = login.demo_login(data, auth)
    finally:
        os.umask(old_umask)

    path = data / login.LOGIN_FILE
    assert writes == [(path, 0o600)]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text(encoding="utf-8")) == saved
    assert saved["user"] == "demo" and saved["role"] == "manager"
    assert auth.verify_token(saved["api_token"]) is not None
    assert auth.verify_password("demo", saved["password"]) is not None
    assert sorted(p.name for p in data.iterdir() if p.name.startswith(".")) == [], "no temp file left behind"


def test_a_working_login_is_reused_and_not_rewritten(tmp_path, auth, monkeypatch):
    data = tmp_path / "data"
    first = login.demo_login(data, auth)
    monkeypatch.setattr(login, "atomic_write", lambda *a, **k: pytest.fail("rewrote a working login"))
    assert login.demo_login(data, auth) == first


@pytest.mark.parametrize("content", ["", "not json", "[]", '{"api_token": "hl_revoked"}'])
def test_a_lost_or_broken_login_file_gets_a_fresh_user(tmp_path, auth, content):
    data = tmp_path / "data"
    first = login.demo_login(data, auth)
    (data / login.LOGIN_FILE).write_text(content, encoding="utf-8")
    again = login.demo_login(data, auth)
    # The old password is not guessed: a new user beside `demo`, saved the same way.
    assert again["user"].startswith("demo-") and again["user"] != first["user"]
    assert again["api_token"] != first["api_token"]
    assert json.loads((data / login.LOGIN_FILE).read_text(encoding="utf-8")) == again
    assert stat.S_IMODE((data / login.LOGIN_FILE).stat().st_mode) == 0o600


def at(text: str):
    return lambda: datetime.fromisoformat(text).timestamp()


def test_today_is_the_demo_sites_day_from_the_clock_it_is_given():
    assert today(at("2026-12-31T16:59:59+00:00")) == "2026-12-31"  # 23:59:59 at the site
    assert today(at("2026-12-31T17:00:00+00:00")) == "2027-01-01"  # midnight at the site
    assert today(at("2028-02-29T09:00:00+07:00")) == "2028-02-29"


def test_rating_times_are_shown_in_the_sites_zone():
    ms = int(datetime.fromisoformat("2026-12-31T17:00:05+00:00").timestamp() * 1000)
    assert local_time(ms) == "00:00:05"
    assert local_time(ms - 6000) == "23:59:59"


def test_the_commune_login_sees_only_the_communes_centre_and_an_older_folder_gets_one(tmp_path, auth):
    data = tmp_path / "data"
    saved = login.demo_login(data, auth)
    commune = saved["commune"]
    assert auth.verify_password(commune["user"], commune["password"]).sites == {"demo-xa"}
    assert auth.verify_password(saved["user"], saved["password"]).sites is None  # the province's: every centre
    # A login file written before the demo had two centres: the commune's user is added, the rest kept.
    older = {k: v for k, v in saved.items() if k != "commune"}
    (data / login.LOGIN_FILE).write_text(json.dumps(older), encoding="utf-8")
    again = login.demo_login(data, auth)
    assert {k: v for k, v in again.items() if k != "commune"} == older
    assert again["commune"]["user"].startswith("xa-minh-tan-") and again["commune"]["sites"] == ["demo-xa"]
