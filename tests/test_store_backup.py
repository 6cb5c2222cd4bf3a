"""Backup and restore, as docs/store.md and docs/scaling.md tell an operator to do them.

PostgreSQL: `pg_dump -Fc` of a live store, `pg_restore --no-owner` into an empty database.
SQLite: the online backup API while the store is open. Either way the restored store must
answer the same figures, still recognise a re-sent event as a duplicate (the unique keys came
back), carry on the day's queue numbers (the sequences came back) and keep its logins.
"""
from __future__ import annotations

import sqlite3

from broker.auth import Auth
from broker.store import Store
from tests.test_broker_store import T0, event, msg, register

PASSWORD = "backup-check-1"


def _fill(url: str) -> None:
    with Store.open(url) as s:
        register(s, ("hcm", "1"), ("hcm", "2"))
        s.ingest([msg(event(seq=i, counter=str(1 + i % 2), score=1 + i % 4)) for i in range(1, 41)])
        assert s.next_ticket("hcm", "2024-11-27") == 1
    with Auth(url) as auth:
        auth.add_user("manager1", "manager", PASSWORD)


def _figures(url: str) -> tuple:
    with Store.open(url) as s:
        report = s.satisfaction("counter", "2024-11-27", "2024-11-27")
        return len(s.events()), [(r["key"], r["ratings"], r["counts"], r["mean"]) for r in report["rows"]]


def _check_restored(original: str, copy: str) -> None:
    assert _figures(copy) == _figures(original)
    with Store.open(copy) as s:
        (again,) = s.ingest([msg(event(seq=7, counter="2", score=4))])
        assert again.status == "duplicate"
        (fresh,) = s.ingest([msg(event(seq=41, counter="2", score=4))])
        assert fresh.status == "stored"
        assert s.next_ticket("hcm", "2024-11-27") == 2
    with Auth(copy) as auth:
        assert auth.verify_password("manager1", PASSWORD) is not None


def test_a_pg_dump_restored_into_an_empty_database_is_the_same_store(postgres_cluster, pg_url):
    _fill(pg_url)
    cluster = postgres_cluster
    dump = cluster.root / "store.dump"
    source = pg_url.rsplit("/", 1)[1]
    connect = ["-h", str(cluster.root), "-p", str(cluster.port), "-U", "postgres"]
    cluster._run_as([str(cluster.bin_dir / "pg_dump"), *connect, "-Fc", "-f", str(dump), source])
    target = cluster.create_database(migrated=False)
    try:
        cluster._run_as([str(cluster.bin_dir / "pg_restore"), *connect, "--no-owner", "-d",
                         target.rsplit("/", 1)[1], str(dump)])
        _check_restored(pg_url, target)
    finally:
        cluster.drop_database(target)


def test_an_online_sqlite_backup_is_the_same_store(tmp_path):
    url = f"sqlite:///{tmp_path / 'hailong.db'}"
    _fill(url)
    copy = tmp_path / "backup" / "hailong.db"
    copy.parent.mkdir()
    with Store.open(url):  # taken while the service has the store open
        with sqlite3.connect(tmp_path / "hailong.db") as live, sqlite3.connect(copy) as out:
            live.backup(out)
    _check_restored(url, f"sqlite:///{copy}")

