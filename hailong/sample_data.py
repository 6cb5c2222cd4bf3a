"""Realistic sample data for screenshots, benchmarks and demos: one commune centre's month.

Events go through `Store.ingest` (the same validation, rollups and attribution as real
MQTT ingest), so what the pages show is what the service would show for real counters.
Volumes follow the seed article: a commune handles ~1,200 dossiers a year, a busy
district centre tens of thousands.
"""
from __future__ import annotations

import random
from datetime import date, datetime, timedelta

from protocol.codec import encode
from common.periods import DEFAULT_TZ, zone
from protocol.events import make_event

OFFICERS = [
    ("cb-01", "Nguyễn Thị Lan", "01"), ("cb-02", "Trần Văn Hùng", "02"), ("cb-03", "Lê Thị Mai", "03"),
    ("cb-04", "Phạm Quốc Bảo", "04"), ("cb-05", "Hoàng Thu Trang", "05"), ("cb-06", "Vũ Đức Minh", "06"),
    ("cb-07", "Đặng Thị Hà", "07"), ("cb-08", "Bùi Văn Nam", "08"),
]
REASONS = ["Chờ lâu", "Thái độ chưa tốt", "Hướng dẫn chưa rõ", "Khác"]
TZ = zone(DEFAULT_TZ)


def seed_month(store, *, first_day: date, days: int, site: str = "kien-thuy", per_day: int = 40,
               seed: int = 1, until: datetime | None = None) -> int:
    """Registry (site, 4 counters, 8 officers, assignments) and `days` days of service; returns events stored."""
    from broker.store import Incoming

    rng = random.Random(seed)
    store.upsert_site(site, "UBND huyện Kiến Thụy — Bộ phận Một cửa")
    for oid, name, code in OFFICERS:
        store.upsert_officer(oid, name, code=code, unit="Bộ phận Một cửa")
    skill = {oid: rng.uniform(0.55, 0.95) for oid, _, _ in OFFICERS}
    batch, stored = [], 0
    for c in range(1, 5):
        store.upsert_counter(site, str(c), f"Quầy {c}", device=f"hl-{site}-c{c}")
    for d in range(days):
        day = first_day + timedelta(days=d)
        if day.weekday() >= 5:
            continue  # one-stop centres close at the weekend
        for c in range(1, 5):
            device, ledger = f"hl-{site}-c{c}", f"{c:016x}"
            # Two officers share each counter: morning and afternoon shifts.
            morning, afternoon = OFFICERS[(2 * (c - 1) + d % 2) % 8][0], OFFICERS[(2 * (c - 1) + 1 - d % 2) % 8][0]
            for i in range(rng.randint(per_day // 2, per_day)):
                minute = rng.randint(7 * 60 + 30, 16 * 60 + 30)
                when = datetime(day.year, day.month, day.day, minute // 60, minute % 60, rng.randint(0, 59), tzinfo=TZ)
                if until is not None and when > until:
                    continue
                officer = morning if minute < 12 * 60 else afternoon
                good = rng.random() < skill[officer]
                score = rng.choice([3, 4, 4]) if good else rng.choice([1, 2, 2, 3])
                flags = ["repeat"] if rng.random() < 0.04 else []
                ts = int(when.timestamp() * 1000)
                seq = stored + len(batch) + 1
                ev = make_event("rating", device=device, site=site, counter=str(c), ledger=ledger, seq=seq,
                                ts=ts, clock_ok=True, boot=f"boot-{day}", mono=float(minute * 60),
                                officer=officer, ticket=str(1000 + i), score=score, scale=4, flags=flags,
                                reason=rng.choice(REASONS) if score == 1 and not flags and rng.random() < 0.7 else None)
                batch.append(Incoming(device, encode(ev), ts + 200))
                call = make_event("call", device=device, site=site, counter=str(c), ledger=ledger, seq=seq + 1,
                                  ts=ts - 300_000, clock_ok=True, boot=f"boot-{day}", mono=float(minute * 60 - 300),
                                  officer=officer, ticket=str(1000 + i), action="next")
                batch.append(Incoming(device, encode(call), ts - 299_800))
                if len(batch) >= 500:
                    stored += sum(o.status == "stored" for o in store.ingest(batch))
                    batch = []
    if batch:
        stored += sum(o.status == "stored" for o in store.ingest(batch))
    return stored
