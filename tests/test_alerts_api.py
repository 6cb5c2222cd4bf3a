"""The alerts' HTTP API: opening hours per site (read, set, refused), the alerts list's filters and roles."""
from __future__ import annotations

from tests.test_broker_api import NOW, now_ms, service  # noqa: F401  (fixture)


def test_a_sites_hours_default_until_a_manager_sets_them(service):  # noqa: F811
    service.store.upsert_site("s1", "Trung tâm 1")
    viewer, manager = service.client("viewer"), service.client("manager")
    got = viewer.get("/api/v1/sites/s1/hours").json()
    assert got["default"] is True and got["text"] == "mon,tue,wed,thu,fri 07:30-11:30,13:30-17:00; sat 07:30-11:30"
    body = {"weekly": {"mon": ["13:30-17:00", "07:30-11:30"], "sun": []}, "closed": ["2027-02-06"],
            "email_to": ["a@example.vn"]}
    assert viewer.put("/api/v1/sites/s1/hours", json=body).status_code == 403
    r = manager.put("/api/v1/sites/s1/hours", json=body)
    assert r.status_code == 200
    saved = r.json()
    assert saved["weekly"] == {"mon": ["07:30-11:30", "13:30-17:00"]} and saved["closed"] == ["2027-02-06"]
    assert (saved["default"], saved["updated_by"], saved["updated_ms"]) == (False, "test-manager", now_ms())
    assert viewer.get("/api/v1/sites/s1/hours").json() == saved


def test_bad_hours_are_refused_with_a_reason_and_change_nothing(service):  # noqa: F811
    service.store.upsert_site("s1", "Trung tâm 1")
    manager = service.client("manager")
    for body, why in [({"weekly": {"mon": ["07:30-11:30", "11:00-12:00"]}}, "overlap"),
                      ({"weekly": {"mon": ["11:30-07:30"]}}, "ends before it starts"),
                      ({"weekly": {"monday": ["07:30-11:30"]}}, "weekly"),
                      ({"weekly": {"mon": ["7:30-11:30"]}}, "weekly"),
                      ({"closed": ["2027-02-30"]}, "closed"),
                      ({"email_to": ["not an address"]}, "email_to")]:
        r = manager.put("/api/v1/sites/s1/hours", json=body)
        assert r.status_code == 422 and why in r.json()["detail"], (body, r.text)
    assert manager.put("/api/v1/sites/nowhere/hours", json={}).status_code == 404
    assert manager.get("/api/v1/sites/nowhere/hours").status_code == 404
    assert service.store.site_hours("s1") is None


def test_the_alerts_list_filters_by_state_and_time(service):  # noqa: F811
    store = service.store
    (old,), _ = store.apply_alerts([("clock", "dev-1", "s1", {})], [], lambda a, k: [], now_ms() - 86_400_000)
    store.apply_alerts([], [("clock", "dev-1")], lambda a, k: [], now_ms() - 3_600_000)
    (new,), _ = store.apply_alerts([("offline", "dev-2", "s1", {})], [], lambda a, k: [], now_ms())
    viewer = service.client("viewer")
    assert [a["id"] for a in viewer.get("/api/v1/alerts").json()["items"]] == [new["id"]]
    every = viewer.get("/api/v1/alerts", params={"state": "all"}).json()
    assert [a["id"] for a in every["items"]] == [new["id"], old["id"]] and every["open"] == 1
    today = NOW.date().isoformat()
    assert [a["id"] for a in viewer.get("/api/v1/alerts", params={"state": "all", "from": today, "to": today})
            .json()["items"]] == [new["id"]]
    assert viewer.get("/api/v1/alerts", params={"state": "closed"}).status_code == 422
    assert viewer.get("/api/v1/alerts", params={"from": "yesterday"}).status_code == 422
    assert service.client("manager").post("/api/v1/alerts/999/ack").status_code == 404
