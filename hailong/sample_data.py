"""Realistic sample data for screenshots, benchmarks and demos: a commune centre's month.

Events go through `Store.ingest` (the same validation, rollups and attribution as real
MQTT ingest), so what the pages show is what the service would show for real counters.
Volumes follow the seed article: a commune handles ~1,200 dossiers a year, a busy
district centre tens of thousands.

A day looks like a real centre's: four counters open at once, two officers sharing each
(morning and afternoon shifts), citizens arriving in waves (the morning rush, a quieter
early afternoon), and every counter's events reaching the service in the order they happen,
interleaved with the other counters'.
"""
from __future__ import annotations

import random
from datetime import date, datetime, timedelta

from common.periods import DEFAULT_TZ, zone
from protocol.codec import encode
from protocol.events import make_event

OFFICERS = [
    ("cb-01", "Nguyễn Thị Lan", "01"), ("cb-02", "Trần Văn Hùng", "02"), ("cb-03", "Lê Thị Mai", "03"),
    ("cb-04", "Phạm Quốc Bảo", "04"), ("cb-05", "Hoàng Thu Trang", "05"), ("cb-06", "Vũ Đức Minh", "06"),
    ("cb-07", "Đặng Thị Hà", "07"), ("cb-08", "Bùi Văn Nam", "08"),
]
REASONS = ["Chờ lâu", "Thái độ chưa tốt", "Hướng dẫn chưa rõ", "Khác"]
TZ = zone(DEFAULT_TZ)
COUNTERS = 4
# Opening hours in minutes, with how busy each stretch is: the morning rush, then calmer.
WAVES = [((7 * 60 + 30, 9 * 60 + 30), 4), ((9 * 60 + 30, 11 * 60 + 30), 3), ((13 * 60 + 30, 16 * 60 + 30), 2)]


def _minutes(rng: random.Random, n: int) -> list[int]:
    """n arrival minutes over the opening hours, weighted by the waves."""
    spans = [span for span, weight in WAVES for _ in range(weight)]
    return sorted(rng.randint(*rng.choice(spans)) for _ in range(n))


def _day(rng: random.Random, day: date, d: int, officers: list[tuple], per_day: int) -> list[tuple]:
    """(when, counter, officer, ticket) of every citizen served that day, all counters, in time order."""
    served = []
    for c in range(1, COUNTERS + 1):
        # Two officers share each counter: morning and afternoon shifts, swapped every other day.
        morning = officers[(2 * (c - 1) + d % 2) % len(officers)][0]
        afternoon = officers[(2 * (c - 1) + 1 - d % 2) % len(officers)][0]
        for i, minute in enumerate(_minutes(rng, rng.randint(per_day // 2, per_day))):
            when = datetime(day.year, day.month, day.day, minute // 60, minute % 60, rng.randint(0, 59), tzinfo=TZ)
            served.append((when, c, morning if minute < 12 * 60 else afternoon, str(1000 + 100 * c + i)))
    return sorted(served)


def _events(rng: random.Random, site: str, served: list[tuple], skill: dict, seqs: dict) -> list:
    """The NEXT call and the rating of each citizen, as each counter's device sends them."""
    from broker.store import Incoming

    out = []
    for when, c, officer, ticket in served:
        device, ledger = f"hl-{site}-c{c}", f"{c:016x}"
        good = rng.random() < skill[officer]
        score = rng.choice([3, 4, 4]) if good else rng.choice([1, 2, 2, 3])
        flags = ["repeat"] if rng.random() < 0.04 else []
        ts = int(when.timestamp() * 1000)
        common = {"device": device, "site": site, "counter": str(c), "ledger": ledger, "clock_ok": True,
                  "boot": f"boot-{when.date()}", "officer": officer, "ticket": ticket}
        seqs[device] = seqs.get(device, 0) + 2
        call = make_event("call", seq=seqs[device] - 1, ts=ts - 300_000, mono=ts / 1000 - 300, action="next",
                          **common)
        rating = make_event("rating", seq=seqs[device], ts=ts, mono=ts / 1000, score=score, scale=4, flags=flags,
                            reason=rng.choice(REASONS) if score == 1 and not flags and rng.random() < 0.7 else None,
                            **common)
        out += [Incoming(device, encode(call), ts - 299_800), Incoming(device, encode(rating), ts + 200)]
    return out


def seed_month(store, *, first_day: date, days: int, site: str = "kien-thuy", per_day: int = 40,
               seed: int = 1, until: datetime | None = None,
               name: str = "UBND huyện Kiến Thụy — Bộ phận Một cửa", officers: list[tuple] | None = None) -> int:
    """Registry (site, 4 counters, 8 officers, assignments) and `days` days of service; returns events stored.

    `officers` (id, name, code) default to OFFICERS; give another centre its own.
    """
    rng = random.Random(seed)
    officers = officers or OFFICERS
    store.upsert_site(site, name)
    for oid, officer_name, code in officers:
        store.upsert_officer(oid, officer_name, code=code, unit="Bộ phận Một cửa")
    skill = {oid: rng.uniform(0.55, 0.95) for oid, _, _ in officers}
    for c in range(1, COUNTERS + 1):
        store.upsert_counter(site, str(c), f"Quầy {c}", device=f"hl-{site}-c{c}")
    stored, seqs, last = 0, {}, None
    for d in range(days):
        day = first_day + timedelta(days=d)
        if day.weekday() >= 5:
            continue  # one-stop centres close at the weekend
        served = [s for s in _day(rng, day, d, officers, per_day) if until is None or s[0] <= until]
        batch = _events(rng, site, served, skill, seqs)
        for i in range(0, len(batch), 500):
            stored += sum(o.status == "stored" for o in store.ingest(batch[i:i + 500]))
        last = served or last
    for c, (when, officer) in {c: (w, o) for w, c, o, _ in last or []}.items():  # the latest per counter
        store.assign(site, str(c), officer, int(when.timestamp() * 1000) - 1)  # who sits there now
    return stored
