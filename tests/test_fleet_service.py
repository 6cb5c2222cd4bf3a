"""Fleet updates on the service: publishing, serving files to counters, rollouts in waves that stop themselves."""
from __future__ import annotations

import base64
import platform
import shutil
import sys

import httpx
import pytest

from broker import fleet
from broker.api import ApiServer, create_app
from broker.auth import Auth
from broker.config import config_from_dict
from broker.store import Store
from common import release as rel
from common.mqtt_access import hash_password
from device import releases
from tests.mosquitto import free_port
from tests.release_support import make_release, tiny_wheel

PY = f"{sys.version_info.major}.{sys.version_info.minor}"
ARCH = platform.machine()
KEYS = rel.new_key_pair()
NOW = 1_790_000_000.0


# --- rollouts (pure) -------------------------------------------------------------------------------

def _fleet(n: int, site: str = "s1") -> list[dict]:
    return [{"device": f"dev-{i:02d}", "site": site, "registered": True} for i in range(n)]


def test_waves_are_balanced_stable_and_a_percentage_picks_a_stable_share():
    members = fleet.members_of(_fleet(20), {}, 3, salt="0.2.0-3.11-aarch64")
    sizes = [sum(w == k for w in members.values()) for k in range(3)]
    assert sorted(sizes) == [6, 7, 7] and members == fleet.members_of(_fleet(20), {}, 3, salt="0.2.0-3.11-aarch64")
    some = fleet.members_of(_fleet(200), {"percent": 25}, 2, salt="x")
    assert 30 < len(some) < 70 and set(some) <= set(fleet.members_of(_fleet(200), {"percent": 50}, 2, salt="x"))
    assert set(fleet.members_of(_fleet(3) + _fleet(2, "s2")[:0], {"devices": ["dev-01"]}, 3, salt="x")) == {"dev-01"}
    with pytest.raises(fleet.FleetError):
        fleet.members_of(_fleet(3), {"site": "nowhere"}, 3, salt="x")


def _rollout(members: dict[str, int], threshold: float = 0.2) -> dict:
    return {"wave": 0, "waves": 3, "threshold": threshold,
            "devices": [{"device": d, "wave": w, "state": "waiting", "error": None} for d, w in members.items()]}


def _apply(rollout: dict, result: dict) -> None:
    rollout["wave"] = result["wave"]
    for m in rollout["devices"]:
        if m["device"] in result["changes"]:
            m["state"], m["error"] = result["changes"][m["device"]]


def test_a_rollout_over_20_counters_stops_at_the_second_wave_when_too_many_fail():
    members = fleet.members_of(_fleet(20), {}, 3, salt="r")
    rollout = _rollout(members)
    online = {d: {"online": True, "last_telemetry": {}} for d in members}
    sent_per_wave = []
    for wave in range(2):
        result, send = fleet.step(rollout, "0.2.0", online)
        assert set(send) == {d for d, w in members.items() if w == wave} and result["state"] == "running"
        sent_per_wave.append(send)
        _apply(rollout, result)
        for i, d in enumerate(sorted(send)):
            bad = wave == 1 and i < 3  # 3 of the second wave's ~7 roll back: over 20%
            online[d]["last_telemetry"] = {"update": {"version": "0.2.0", "state": "rolled_back" if bad else
                                                      "committed", "error": "crash loop" if bad else None}}
        result, send = fleet.step(rollout, "0.2.0", online)
        assert send == []
        _apply(rollout, result)
        if wave == 0:
            assert result["state"] == "running" and result["wave"] == 1
    assert result["state"] == "stopped" and "wave 2: 3 of" in result["reason"]
    third = [m for m in rollout["devices"] if m["wave"] == 2]
    assert third and all(m["state"] == "waiting" for m in third)  # the third wave never got it


def test_an_offline_device_waits_and_a_report_on_another_version_is_not_an_outcome():
    rollout = _rollout({"a": 0, "b": 0})
    devices = {"a": {"online": False}, "b": {"online": True, "last_telemetry": {}}}
    result, send = fleet.step(rollout, "0.2.0", devices)
    assert send == ["b"]
    _apply(rollout, result)
    devices["b"]["last_telemetry"] = {"update": {"version": "0.1.9", "state": "committed"}}
    rollout["devices"][1]["updated_ms"] = 1000
    result, send = fleet.step(rollout, "0.2.0", devices, now_ms=2000)
    assert result["changes"] == {} and result["state"] == "running" and send == []
    result, send = fleet.step(rollout, "0.2.0", devices, now_ms=1000 + fleet.RESEND_MS)
    assert send == ["b"]  # no word from it for a while: the command may have been lost


# --- publishing and serving, on a real server ---------------------------------------------------

def _url(store_url: str) -> str:
    """conftest's store_url (a SQLite file or a PostgreSQL URL) as the config's store.url."""
    return store_url if store_url.startswith("postgresql://") else f"sqlite:///{store_url}"


@pytest.fixture
def api(tmp_path, store_url):
    passwd = tmp_path / "passwd"
    passwd.write_text(f"dev-1:{hash_password('right-password')}\n")
    cfg = config_from_dict({"mqtt": {"embedded": False, "host": "127.0.0.1", "passwd_file": str(passwd)},
                            "service": {"data_dir": str(tmp_path / "svc")},
                            "store": {"url": _url(store_url)}, "http": {"port": free_port()}})
    store = Store.open(cfg.store.url)
    auth = Auth.from_config(cfg)
    app = create_app(store=store, ingest=None, auth=auth, cfg=cfg, clock=lambda: NOW)
    server = ApiServer(app, cfg.http.host, cfg.http.port).start()
    token = auth.create_token("admin", "t")
    try:
        yield httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=10), store
    finally:
        server.stop()
        auth.close()
        store.close()


@pytest.fixture
def signed(tmp_path):
    wheel = tiny_wheel(tmp_path / "in", "hailong", "0.2.0", {"probe.py": "x = 1\n" * 3000})
    make_release(tmp_path / "rel", "0.2.0", KEYS[0], [wheel], python=PY, arch=ARCH)
    return tmp_path / "rel"


def _body(folder) -> dict:
    return {"manifest": (folder / rel.MANIFEST).read_text(), "signature": (folder / rel.SIGNATURE).read_text(),
            "files": {p.name: base64.b64encode(p.read_bytes()).decode() for p in folder.glob("*.whl")}}


def test_publish_then_a_counter_downloads_with_its_credentials_and_resumes(api, signed, tmp_path):
    client, store = api
    r = client.post("/api/v1/releases", json=_body(signed))
    assert r.status_code == 201, r.text
    rid = r.json()["id"]
    assert rid == f"0.2.0-{PY}-{ARCH}" and [x["id"] for x in client.get("/api/v1/releases").json()["items"]] == [rid]
    url = f"{client.base_url}/api/v1/releases/{rid}/"
    auth = ("dev-1", "right-password")
    manifest = rel.verify_manifest(releases.fetch_manifest(url, auth=auth), (signed / rel.SIGNATURE).read_bytes(),
                                   KEYS[1], running="0.1.0", python=PY, arch=ARCH)
    name = next(iter(manifest["files"]))
    part = tmp_path / "dl" / "wheels" / (name + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes((signed / name).read_bytes()[:1000])  # what an earlier, interrupted download left
    releases.fetch_release(tmp_path / "dl", url, manifest, auth=auth)
    rel.check_files(manifest, tmp_path / "dl" / "wheels")
    ranged = httpx.get(url + name, auth=auth, headers={"Range": "bytes=1000-"})
    assert ranged.status_code == 206 and ranged.content == (signed / name).read_bytes()[1000:]


@pytest.mark.parametrize("auth", [None, ("dev-1", "wrong"), ("nobody", "right-password")])
def test_files_need_a_device_account(api, signed, auth):
    client, _ = api
    rid = client.post("/api/v1/releases", json=_body(signed)).json()["id"]
    r = httpx.get(f"{client.base_url}/api/v1/releases/{rid}/{rel.MANIFEST}", auth=auth)
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic")


def test_only_the_manifest_s_files_are_served(api, signed):
    client, _ = api
    rid = client.post("/api/v1/releases", json=_body(signed)).json()["id"]
    r = httpx.get(f"{client.base_url}/api/v1/releases/{rid}/..%2Fhailong.db", auth=("dev-1", "right-password"))
    assert r.status_code in (404, 422)


def test_a_release_published_through_another_instance_is_a_clear_404_not_a_500(api, signed, tmp_path):
    """Instances that do not share service.data_dir: the release is in the store, its files elsewhere."""
    client, _ = api
    rid = client.post("/api/v1/releases", json=_body(signed)).json()["id"]
    shutil.rmtree(tmp_path / "svc" / "releases" / rid)
    r = httpx.get(f"{client.base_url}/api/v1/releases/{rid}/{rel.MANIFEST}", auth=("dev-1", "right-password"))
    assert r.status_code == 404 and "not on this instance" in r.text


def test_an_incomplete_or_altered_release_is_not_published(api, signed):
    client, store = api
    body = _body(signed)
    body["files"] = {name: base64.b64encode(b"evil").decode() for name in body["files"]}
    r = client.post("/api/v1/releases", json=body)
    assert r.status_code == 409 and "signed release" in r.json()["detail"]
    assert store.releases() == []


def test_a_rollout_is_stored_listed_and_stopped(api, signed):
    client, store = api
    for i in range(5):
        store.register_device(f"dev-{i}", "s1", str(i))
    rid = client.post("/api/v1/releases", json=_body(signed)).json()["id"]
    r = client.post("/api/v1/rollouts", json={"release": rid, "site": "s1", "waves": 2, "threshold": 0.5})
    assert r.status_code == 201, r.text
    rollout = r.json()
    assert rollout["state"] == "running" and len(rollout["devices"]) == 5
    assert {d["wave"] for d in rollout["devices"]} == {0, 1}
    stopped = client.post(f"/api/v1/rollouts/{rollout['id']}/stop").json()
    assert stopped["state"] == "stopped" and stopped["reason"] == "stopped by an operator"
    assert client.post("/api/v1/rollouts", json={"release": "9.9.9-3.11-aarch64", "site": "s1"}).status_code == 404


class Publishes:
    def __init__(self):
        self.sent: list[tuple[str, dict]] = []

    def publish(self, device, kind, payload, retain=False):
        self.sent.append((device, payload))


def _telemetry(version: str, state: str | None) -> dict:
    t = {"uptime_s": 1.0, "backlog": 0, "clock_ok": True, "fw": "0.1.0", "disk_free_mb": 100.0, "cpu_temp_c": None,
         "ts": 1, "ledger": "0123456789abcdef"}
    if state:
        t["update"] = {"version": version, "state": state, "error": None if state == "committed" else "crash loop"}
    return t


def test_twenty_counters_in_three_waves_through_the_store_stop_at_the_second(tmp_path, signed, store_url):
    cfg = config_from_dict({"mqtt": {"embedded": False, "host": "127.0.0.1"}, "service": {"data_dir": str(tmp_path / "svc")},
                            "store": {"url": _url(store_url)}, "http": {"public_url": "http://svc:80"}})
    with Store.open(cfg.store.url) as store:
        for i in range(20):
            store.register_device(f"dev-{i:02d}", "s1", str(i))
            store.device_status(f"dev-{i:02d}", {"online": True, "fw": "0.1.0", "ledger": "0123456789abcdef",
                                                 "ts": 1}, at_ms=1)
        release = fleet.publish_release(store, signed, fleet.releases_dir(cfg), at_ms=1)
        members = fleet.members_of(store.devices(), {"site": "s1"}, 3, salt=release["id"])
        rollout_id = store.add_rollout(release["id"], {"site": "s1"}, 3, 0.2, False, members, 1)
        mqtt = Publishes()
        for wave in range(2):
            fleet.tick(store, mqtt, cfg, now_ms=10)
            sent = [d for d, _ in mqtt.sent]
            assert sorted(sent) == sorted(d for d, w in members.items() if w == wave)
            assert all(c["cmd"] == "update" and c["url"] == f"http://svc:80/api/v1/releases/{release['id']}/"
                       for _, c in mqtt.sent)
            for i, device in enumerate(sorted(sent)):
                bad = wave == 1 and i < 2  # 2 of ~7: over 20%
                store.device_telemetry(device, _telemetry("0.2.0", "rolled_back" if bad else "committed"), at_ms=11)
            mqtt.sent.clear()
            fleet.tick(store, mqtt, cfg, now_ms=12)
        rollout = store.rollout(rollout_id)
        assert rollout["state"] == "stopped" and rollout["wave"] == 1 and "wave 2: 2 of" in rollout["reason"]
        fleet.tick(store, mqtt, cfg, now_ms=10**9)
        assert mqtt.sent == []  # a stopped rollout sends nothing, not even resends
        states = {d["device"]: d["state"] for d in rollout["devices"]}
        assert sorted(states.values()).count("failed") == 2
        assert all(states[d] == "waiting" for d, w in members.items() if w == 2)


def test_release_add_and_rollouts_from_the_command_line(tmp_path, signed, capsys):
    from broker.cli import main as broker

    config = tmp_path / "broker.toml"
    config.write_text(f'[service]\ndata_dir = "{tmp_path / "svc"}"\n[mqtt]\nembedded = false\nhost = "127.0.0.1"\n'
                      f'[store]\nurl = "sqlite:///{tmp_path / "h.db"}"\n')
    pub = tmp_path / "other.pub"
    pub.write_bytes(rel.key_text(rel.new_key_pair()[1]))
    assert broker(["release", "add", str(signed), "--config", str(config), "--public-key", str(pub)]) == 1
    assert "signed with key" in capsys.readouterr().err
    assert broker(["release", "add", str(signed), "--config", str(config)]) == 0
    rid = f"0.2.0-{PY}-{ARCH}"
    assert rid in capsys.readouterr().out
    with Store.open(f"sqlite:///{tmp_path / 'h.db'}") as store:
        for i in range(4):
            store.register_device(f"dev-{i}", "s1", str(i))
    assert broker(["rollout", "start", rid, "--site", "s2", "--config", str(config)]) == 1
    assert broker(["rollout", "start", rid, "--site", "s1", "--waves", "2", "--config", str(config)]) == 0
    assert "4 devices in 2 waves" in capsys.readouterr().out
    assert broker(["rollout", "stop", "1", "--config", str(config)]) == 0
    assert broker(["rollout", "list", "--config", str(config)]) == 0
    assert '"state": "stopped"' in capsys.readouterr().out


def test_two_instances_stepping_one_rollout_send_each_command_once_and_a_stop_stands(tmp_path, signed):
    """Each instance ticks every rollout; a step taken on a stale view (another instance's, an operator's
    stop in between) writes and sends nothing."""
    cfg = config_from_dict({"mqtt": {"embedded": False, "host": "127.0.0.1"}, "service": {"data_dir": str(tmp_path / "svc")},
                            "store": {"url": f"sqlite:///{tmp_path / 'h.db'}"}, "http": {"public_url": "http://svc:80"}})
    with Store.open(cfg.store.url) as store, Store.open(cfg.store.url) as other:
        for i in range(6):
            store.register_device(f"dev-{i}", "s1", str(i))
            store.device_status(f"dev-{i}", {"online": True, "fw": "0.1.0", "ledger": "0123456789abcdef", "ts": 1},
                                at_ms=1)
        release = fleet.publish_release(store, signed, fleet.releases_dir(cfg), at_ms=1)
        members = fleet.members_of(store.devices(), {"site": "s1"}, 2, salt=release["id"])
        rollout_id = store.add_rollout(release["id"], {"site": "s1"}, 2, 0.2, False, members, 1)
        stale = other.rollout(rollout_id)  # what the other instance read, just before this one stepped
        other.rollout = lambda rid: stale
        mine, theirs = Publishes(), Publishes()
        fleet.tick(store, mine, cfg, now_ms=10)
        fleet.tick(other, theirs, cfg, now_ms=10)
        assert sorted(d for d, _ in mine.sent) == sorted(d for d, w in members.items() if w == 0)
        assert theirs.sent == []
        assert {d["device"]: d["state"] for d in store.rollout(rollout_id)["devices"] if d["state"] == "sent"} \
            == {d: "sent" for d, w in members.items() if w == 0}
        stale = store.rollout(rollout_id)
        store.save_rollout_step(rollout_id, state="stopped", wave=0, reason="stopped by an operator", devices={},
                                at_ms=11)
        fleet.tick(other, theirs, cfg, now_ms=10**9)  # resend time, on the view from before the stop
        assert theirs.sent == [] and store.rollout(rollout_id)["state"] == "stopped"
