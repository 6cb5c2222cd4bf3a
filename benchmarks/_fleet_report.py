"""The printed report of benchmarks/fleet.py, from its results dict."""
from __future__ import annotations

from benchmarks._common import table


def fmt(x, spec: str = ".1f") -> str:
    return "-" if x is None else format(x, spec)


def share(phase: dict, name: str) -> str:
    """A process's CPU in a phase, % of one core; "-" if it was not measured (no PostgreSQL)."""
    return fmt(phase[name]["cpu_share"] * 100, ".0f") if name in phase else "-"


def per_connection(r: dict, name: str) -> float:
    """KiB of RSS per connected counter: after connecting all of them minus before any."""
    before, after = r["baseline"][name]["rss_kib"] or 0, r["after_connect"][name]["rss_kib"] or 0
    return (after - before) / max(1, r["connect"]["ready"])


def report_rates(r: dict) -> None:
    rows = []
    for p in r["rates"]:
        lat, tl = p["latency"], p["ticket_latency"]
        rows.append([p["label"], fmt(p["rate"]), p["pressed"], fmt(p["pressed_eps"]),
                     fmt(lat.get("p50_ms")), fmt(lat.get("p99_ms")), fmt(lat.get("max_ms")),
                     fmt(tl.get("p50_ms")), fmt(tl.get("p99_ms")),
                     fmt(p["service"]["cpu_share"] * 100, ".0f"), fmt(p["service_cpu_ms_per_event"], ".2f"),
                     fmt(p["service_marginal_cpu_ms_per_event"], ".2f"), fmt(p["mosquitto"]["cpu_share"] * 100, ".0f"),
                     share(p, "postgres"), fmt(p["others_cores"], ".2f"), "yes" if p["all_acked"] else "NO"])
    print(table(["rate", "ev/s", "presses", "done/s", "p50 ms", "p99 ms", "max ms", "ticket p50", "ticket p99",
                 "svc %", "svc ms/ev", "marginal", "mosq %", "pg %", "others", "all acked"], rows))


def report(args, r: dict, limits: dict) -> None:
    c, idle = r["connect"], r["idle"]
    print()
    print(f"counters: {c['ready']} of {args.counters} connected and subscribed in {c['seconds']:.2f} s "
          f"({c['per_s']:.0f}/s, at most {args.connect_concurrency} handshakes at once; {c['refused']} refused)")
    print(f"memory  : Mosquitto {per_connection(r, 'mosquitto'):.1f} KiB per connection "
          f"(RSS {r['baseline']['mosquitto']['rss_kib'] / 1024:.1f} -> {r['after_connect']['mosquitto']['rss_kib'] / 1024:.1f} MiB); "
          f"service {per_connection(r, 'service'):.2f} KiB per counter "
          f"(RSS {r['baseline']['service']['rss_kib'] / 1024:.1f} -> {r['after_connect']['service']['rss_kib'] / 1024:.1f} MiB); "
          f"simulator {per_connection(r, 'simulator'):.1f} KiB per counter")
    print(f"idle    : {idle['seconds']:g} s connected, no presses (telemetry every {args.telemetry_s:g} s, "
          f"keepalive {args.keepalive_s} s): service {idle['service']['cpu_share'] * 100:.1f}% of a core, "
          f"Mosquitto {idle['mosquitto']['cpu_share'] * 100:.1f}%, simulator {idle['simulator']['cpu_share'] * 100:.1f}%, "
          f"other processes {idle['others_cores']:.2f} cores")
    print()
    print(f"== presses at a province's peak ({args.peak_eps:.1f} events/s) and multiples, {args.phase_s:g} s each ==")
    report_rates(r)
    print("p50/p99 = press -> the service's ack naming that seq back at the counter; ticket = NEXT -> its "
          "ticket command; svc % = service CPU (one core = 100); marginal = service CPU per event minus its idle "
          "share; pg % = the PostgreSQL server, all its processes; others = cores used by processes not ours.")
    for p in r["rates"]:
        if p["slow_presses_at_s"]:
            print(f"{p['label']}: acks slower than 1 s for presses at {p['slow_presses_at_s']} s into the phase")
    for p in r["rates"]:
        print(f"press-to-commit p99 at {p['label']} province peak ({p['rate']:.0f} events/s) = "
              f"{fmt(p['latency'].get('p99_ms'))} ms (p50 {fmt(p['latency'].get('p50_ms'))} ms)")
    report_restart(args, r)
    report_burst(args, r)
    report_instances(args, r)
    report_store(args, r, limits)


def report_instances(args, r: dict) -> None:
    """Per instance: CPU in each phase, RSS at the end, and its share of the event stream (its /metrics)."""
    split = r.get("instances") or {}
    if len(split) < 2:
        return
    phases = [("idle", r["idle"]), *((p["label"], p) for p in r["rates"]),
              *(((k, r[k]) for k in ("restart", "burst") if r.get(k)))]
    total = sum(v["events_ingested"] for v in split.values())
    rows = []
    for name in [*split, "service"]:
        m = split.get(name) or {k: sum(v[k] for v in split.values()) for k in next(iter(split.values()))}
        cpu = [fmt(ph[name]["cpu_share"] * 100, ".0f") for _, ph in phases]
        rows.append([name if name != "service" else "all", *cpu,
                     fmt((r["end"][name]["rss_kib"] or 0) / 1024, ".0f"), m["events_ingested"],
                     fmt(100 * m["events_ingested"] / max(1, total), ".0f"), m["events_duplicated"],
                     m["ingest_batches"], m["tickets_issued"]])
    print()
    print(f"== {len(split)} service instances on one shared subscription (group "
          f"{r.get('group')!r}), one store ==")
    print(table(["instance", *(f"{label} %" for label, _ in phases), "RSS MiB", "stored", "share %", "dupl.",
                 "batches", "tickets"], rows))
    print("% = CPU share of one core in that phase; stored/dupl./batches/tickets = the instance's own /metrics "
          "(events it committed first, resends it recognised, its transactions, ticket numbers it drew)")


def report_burst(args, r: dict) -> None:
    b = r.get("burst")
    if not b:
        return
    print()
    print(f"== sustained: every connected counter presses {args.burst} times at once ({b['events']} events) ==")
    print(f"sustained events/s = {fmt(b['eps'], '.0f')} ({b['events']} events acked in {b['seconds']:.2f} s"
          + ("" if b["done"] else ", NOT ALL") + f"); press->ack p50 {fmt(b['latency'].get('p50_ms'), '.0f')} ms, "
          f"p99 {fmt(b['latency'].get('p99_ms'), '.0f')} ms; service {b['service']['cpu_share'] * 100:.0f}% of a core, "
          f"{b['service_cpu_ms_per_event']:.2f} ms CPU per event; Mosquitto {b['mosquitto']['cpu_share'] * 100:.0f}%; "
          + (f"PostgreSQL {share(b, 'postgres')}%; " if "postgres" in b else "") +
          f"simulator {b['simulator']['cpu_share'] * 100:.0f}%; other processes {b['others_cores']:.2f} cores")
    print(f"         {b['tickets']} live NEXT calls got a ticket number; "
          f"{b['resends']} events re-sent by counters whose acks took over the ack timeout")


def report_restart(args, r: dict) -> None:
    s = r.get("restart")
    if not s:
        return
    print()
    print(f"== broker restart: {s['backlog_events']} events stored while it was down for {s['outage_s']:g} s "
          f"(backoff {args.backoff_min:g}-{args.backoff_max:g} s, equal jitter) ==")
    print(f"broker stop (saving its sessions) {s['broker_stop_s']:.2f} s; after start: listening "
          f"{s['listening_s']:.2f} s, first ack {fmt(s['first_ack_s'], '.2f')} s, all counters back "
          f"{s['all_reconnected_s']:.2f} s, every event acked {s['drained_s']:.2f} s"
          + ("" if s["done"] else f" (NOT DONE: {s['left']} left after {args.timeout:g} s)"))
    rc = s["reconnected"]
    print(f"counters back (after broker start): p50 {fmt(rc.get('p50_s'), '.1f')} s, p90 {fmt(rc.get('p90_s'), '.1f')} s, "
          f"p99 {fmt(rc.get('p99_s'), '.1f')} s; {s['failed_attempts']} connect attempts failed (timeout or reset) "
          f"and backed off again; {s['resends']} events re-sent after the ack timeout")
    print(f"drain after broker restart = {s['drained_s']:.2f} s for {args.counters} counters; sustained "
          f"{fmt(s['sustained_eps'], '.0f')} events/s (first ack to last); service "
          f"{s['service']['cpu_share'] * 100:.0f}% of a core, RSS {s['service']['rss_mib']:.0f} MiB; "
          + (f"PostgreSQL {share(s, 'postgres')}%; " if "postgres" in s else "") +
          f"Mosquitto {fmt(s['mosquitto_cpu_s'], '.1f')} CPU s since its start, RSS {s['mosquitto_rss_mib']:.0f} MiB; "
          f"simulator {s['simulator']['cpu_share'] * 100:.0f}%; other processes {s['others_cores']:.2f} cores")


def report_tables(r: dict, stored: int, ratings: int) -> None:
    """Where the growth went: the events table grows with every event, the rollups with sites x days."""
    before, after = r.get("store_tables_registered"), r.get("store_tables_end")
    if not before or not after:
        return
    grown = {name: after[name] - before.get(name, 0) for name in after}
    top = sorted(((g, n) for n, g in grown.items() if g > 0), reverse=True)[:6]
    print("store tables (growth, indexes included): "
          + ", ".join(f"{n} {g / 2**20:.1f} MiB" for g, n in top))
    ev = grown.get("events", 0)
    print(f"events table: {ev / max(1, stored):.0f} bytes per event ({ev / max(1, ratings):.0f} per rating with "
          "its share of NEXT calls); the rollups grow with sites x days x officers, not with ratings")


def report_store(args, r: dict, limits: dict) -> None:
    f, counts = r["fleet"], r["store_counts"]
    print()
    stored, held = counts.get("events", 0), counts.get("held", 0)
    print(f"store   : {args.store_url.split('://')[0]}; {f['pressed']} presses ({f['kinds']}), {stored} events stored, "
          f"{held} held, {counts.get('duplicates', 0)} duplicates recognised, {f['resends']} re-sent after the "
          f"ack timeout; every press stored once: {'yes' if stored == f['pressed'] and held == 0 else 'NO'}")
    if r.get("store_bytes_end") is not None and r.get("store_bytes_registered") is not None:
        grown = r["store_bytes_end"] - r["store_bytes_registered"]
        ratings = f["kinds"].get("rating", 0)
        print(f"store growth: {grown / 2**20:.1f} MiB for {stored} events = {grown / max(1, stored):.0f} bytes per "
              f"event, {grown / max(1, ratings):.0f} bytes per rating with its share of NEXT calls "
              "(SQLite file after the service closed it, minus after registration)")
    report_tables(r, stored, f["kinds"].get("rating", 0))
    if r.get("backup"):
        b = r["backup"]
        print(f"backup  : SQLite online backup of the store {b['seconds']:.2f} s, {b['bytes'] / 2**20:.1f} MiB; "
              f"the copy opens and its counts equal the original's: {'yes' if b['counts_equal'] else 'NO'}")
    print(f"setup   : {r['sites']} sites; registry {r['register_s']:.1f} s"
          + (f"; {args.counters + 1} password hashes {r['hash_s']:.1f} s" if "hash_s" in r else "; anonymous")
          + f"; open files: ours {limits['after'][0]} (was {limits['before'][0]}), Mosquitto {r['mosquitto_nofile']}")
