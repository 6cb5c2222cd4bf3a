"""The live terminal view: where to log in, each counter, the latest ratings and today's figures."""
from __future__ import annotations

import sys
import threading

from hailong.demo.config import KIOSK_PRINTER, SITE, today

LABELS = {1: "Không hài lòng", 2: "Bình thường", 3: "Hài lòng", 4: "Rất hài lòng"}


class LiveView:
    """Clear + redraw with plain ANSI, about once a second, from the running demo (hailong.demo.app.Demo)."""

    def __init__(self, demo):
        self.demo = demo

    def render(self) -> str:
        return "\n".join(self._header() + self._counters() + self._ratings() + self._satisfaction())

    def _header(self) -> list[str]:
        d = self.demo
        m = d.ingest.metrics
        return [
            "\x1b[1mhailong demo\x1b[0m — toàn bộ hệ thống trên một máy",
            f"Dashboard: {d.url}    province: {d.login['user']} / {d.login['password']}  (both centres)"
            f"    commune: {d.login['commune']['user']} / {d.login['commune']['password']}  (its centre only)",
            f"Hall display: {d.hall_url}",
            f"Data: {d.data}    MQTT broker 127.0.0.1:{d.mqtt_port} (embedded, 3.1.1)    Ctrl-C to stop"
            + ("    keys for counter 1: 1-4 rate, n next, r recall, q quit" if d.args.interactive else ""),
            "",
            f"Service: MQTT {'connected' if d.ingest.connected.is_set() else 'DISCONNECTED'}"
            f"   events stored {m.ingested}   duplicates {m.duplicates}   rejected {m.rejected}"
            f"   lag {m.last_lag_ms} ms   tickets {m.tickets}",
            f"Cảnh báo đang mở / open alerts: {d.safe(d.store.open_alert_count, 0)}   ({d.url}/alerts)",
        ]

    def _counters(self) -> list[str]:
        d = self.demo
        devices = {x["device"]: x for x in d.safe(d.store.devices, [])}
        waiting = d.safe(lambda: d.store.waiting_counts(SITE), {})
        lines = ["", *self._kiosk(),
                 "Waiting at the kiosk: " + "   ".join(f"{q}: {n}" for q, n in sorted(waiting.items())),
                 f"{'counter':<9}{'display':<10}{'officer':<24}{'online':<8}{'backlog':<8}{'unacked':<8}"]
        for c in d.counters:
            online = "yes" if c.online else "no"
            backlog = devices.get(c.device, {}).get("backlog")
            lines.append(f"{'Quầy ' + str(c.n):<9}[{c.display:>6}]  {c.officer['name'][:22]:<24}{online:<8}"
                         f"{'-' if backlog is None else backlog!s:<8}{c.unacked():<8}")
        return lines

    def _kiosk(self) -> list[str]:
        k = self.demo.kiosk
        if k is None:
            return []
        line = (f"Kiosk {k.device}: online {'yes' if k.online else 'no'}   printer {k.printer}   "
                f"tickets printed {k.printed}")
        t = k.last
        if t is not None:
            ahead = "" if t.get("ahead") is None else f", {t['ahead']} ahead"
            line += (f"   last {t['ticket']} ({t['name']}{', ưu tiên' if t['priority'] else ''}{ahead}, "
                     f"{t.get('time', '')}, number from the {t['source']})")
        return [line, f"  printer bytes: {self.demo.data / KIOSK_PRINTER}"]

    def _ratings(self) -> list[str]:
        lines = ["", "Latest ratings:"]
        for r in list(self.demo.recent)[-8:][::-1]:
            note = f"  [{', '.join(r['flags'])}: not counted]" if r["flags"] else ""
            reason = f"  ({r['reason']})" if r.get("reason") else ""
            lines.append(f"  {r['time']}  Quầy {r['counter']}  {r['score']}/{r['scale']} "
                         f"{LABELS.get(r['score'], '')}{reason}{note}")
        return lines

    def _satisfaction(self) -> list[str]:
        lines = ["", f"Satisfaction today ({today(self.demo.clock)}), per officer:",
                 f"  {'officer':<24}{'ratings':>8}{'satisfied':>11}{'index':>8}{'flagged':>9}{'served':>8}"]
        for row in self.demo.satisfaction_rows():
            rate = "-" if row.get("rate") is None else f"{row['rate'] * 100:.0f}%"
            index = "-" if row.get("index") is None else f"{row['index']:.1f}"
            lines.append(f"  {str(row['name'])[:22]:<24}{row['ratings']:>8}{rate:>11}{index:>8}"
                         f"{row.get('flagged', 0):>9}{row.get('served', 0):>8}")
        return lines

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                text = self.render()
            except Exception as e:  # noqa: BLE001 - a view glitch must not stop the demo
                text = f"(view error: {e})"
            sys.stdout.write("\x1b[H\x1b[2J" + text + "\n")
            sys.stdout.flush()
            stop.wait(1.0)
