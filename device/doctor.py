"""`hailong device doctor`: one table a technician can read at the counter."""
from __future__ import annotations

import os
import shutil
import threading
from dataclasses import dataclass
from typing import Callable, TextIO

PASS, WARN, FAIL = "PASS", "WARN", "FAIL"


@dataclass(frozen=True)
class Check:
    name: str
    result: str
    detail: str


def _guard(name: str, fn: Callable[[], tuple[str, str]]) -> Check:
    try:
        result, detail = fn()
    except Exception as e:  # noqa: BLE001 - a doctor reports what broke, it does not crash
        result, detail = FAIL, f"{type(e).__name__}: {e}"
    return Check(name, result, detail)


def check_gpio(cfg, simulate: bool) -> tuple[str, str]:
    from device.hardware import counter_panel
    from device.panel import default_pin_factory

    scale = cfg.rating.scale
    if cfg.device.role == "kiosk":
        from device.kiosk_hw import kiosk_panel

        panel = kiosk_panel(cfg, pin_factory=default_pin_factory(simulate), on_input=lambda *a: None)
        what = f"{len(cfg.queues)} queue buttons, priority"
    else:
        panel = counter_panel(cfg, pin_factory=default_pin_factory(simulate), on_input=lambda *a: None)
        what = f"{scale} rating buttons, NEXT, RECALL"
    try:
        return PASS, what + (", buzzer" if cfg.buzzer.enabled else "")
    finally:
        panel.close()


def check_printer(cfg, simulate: bool) -> tuple[str, str]:
    """A kiosk's printer answers and has paper; raster tickets have a font with Vietnamese."""
    if cfg.device.role != "kiosk":
        return PASS, "not a kiosk"
    from device.escpos import find_font
    from device.kiosk_hw import kiosk_transport

    k = cfg.kiosk
    transport = kiosk_transport(cfg, simulate=simulate)
    try:
        state = transport.status()
    finally:
        transport.close()
    where = f"{k.printer} printer at {k.printer_port}"
    if state != "ok":
        return FAIL, f"{where}: {state}"
    if k.text == "raster" and find_font(k.font) is None:
        return WARN, f"{where}: ok, but no ticket font (install fonts-dejavu-core or set kiosk.font)"
    return PASS, f"{where}: ok"


def check_display(cfg, simulate: bool) -> tuple[str, str]:
    from device.hardware import counter_display

    d = cfg.display
    if d.kind == "none":
        return PASS, "no display configured"
    if not simulate:
        dev = f"/dev/spidev{d.spi_port}.{d.spi_device}"
        if not os.path.exists(dev):
            return FAIL, f"{dev} missing: enable SPI (dtparam=spi=on in config.txt)"
    display = counter_display(cfg, simulate=simulate)
    try:
        display.show("8" * cfg.display_width)
        return PASS, f"{d.kind}, {cfg.display_width} characters (showing all 8s)"
    finally:
        display.close()


def check_broker(cfg, timeout: float = 5.0) -> tuple[str, str]:
    """Every configured broker; with several, one that fails is a warning (the counter fails over)."""
    results = [_check_one_broker(cfg, host, port, timeout) for host, port in cfg.mqtt.brokers]
    if len(results) == 1:
        return results[0]
    worst = {r for r, _ in results}
    result = PASS if worst == {PASS} else FAIL if worst == {FAIL} else WARN
    return result, "; ".join(detail for _, detail in results)


def _check_one_broker(cfg, host: str, port: int, timeout: float) -> tuple[str, str]:
    from common.mqtt import ClientSettings, connect_args, make_client

    m = cfg.mqtt
    result: dict = {}
    done = threading.Event()
    # Our own client id: reusing the device's would kick the running service off the broker.
    # A clean session with no will: the doctor must leave nothing behind on the broker.
    settings = ClientSettings(
        client_id=f"{cfg.device.id}-doctor", host=host, port=port, protocol=m.protocol,
        username=m.username, password=m.password, tls=m.tls,  # never empty: defaults to device.id
        ca_file=str(m.ca_file) if m.ca_file else None,
        cert_file=str(m.cert_file) if m.cert_file else None,
        key_file=str(m.key_file) if m.key_file else None,
        keepalive_s=10,
    )
    client = make_client(settings)

    def on_connect(c, u, flags, reason_code, props):
        result["rc"] = reason_code
        done.set()

    client.on_connect = on_connect
    try:
        client.connect(**connect_args(settings))
    except OSError as e:
        return FAIL, f"cannot reach {host}:{port}: {e}"
    client.loop_start()
    try:
        if not done.wait(timeout):
            return FAIL, f"no answer from {host}:{port} within {timeout:g} s"
        rc = result["rc"]
        if rc.is_failure:
            return FAIL, f"{host}:{port} refused {m.username!r}: {rc}"
        return PASS, f"{host}:{port} accepted {m.username!r} (MQTT {m.protocol}{', TLS' if m.tls else ''})"
    finally:
        client.disconnect()
        client.loop_stop()


def check_clock(cfg) -> tuple[str, str]:
    from device.clock import kernel_clock_synced

    synced = kernel_clock_synced()
    if cfg.clock.trust != "auto":
        return WARN, f"clock.trust = {cfg.clock.trust!r} overrides the kernel (kernel says {synced})"
    if synced:
        return PASS, "NTP synchronised"
    return WARN, "not synchronised yet: events are marked clock_ok=false and corrected by the service"


def check_ledger(cfg) -> tuple[str, str]:
    from device.ledger import Ledger

    ledger = Ledger.open(cfg.ledger_path)
    try:
        state = ledger.check()
        if ledger.quarantined:
            return WARN, f"was corrupt, moved to {ledger.quarantined}; new ledger {ledger.ledger_id}"
        if state != "ok":
            return FAIL, state
        return PASS, f"ledger {ledger.ledger_id}, {ledger.backlog()} events waiting for the service"
    finally:
        ledger.close()


def check_disk(cfg) -> tuple[str, str]:
    free = shutil.disk_usage(cfg.device.data_dir).free / 2**20
    return (PASS if free >= 100 else WARN), f"{free:.0f} MiB free in {cfg.device.data_dir}"


def check_badge(cfg) -> tuple[str, str]:
    if not cfg.badge.enabled:
        return PASS, "no badge reader configured"
    if not os.path.exists(cfg.badge.port):
        return FAIL, f"{cfg.badge.port} missing: enable the UART (enable_uart=1)"
    if not os.access(cfg.badge.port, os.R_OK | os.W_OK):
        return FAIL, f"no access to {cfg.badge.port}: add the user to the dialout group"
    return PASS, f"{cfg.badge.port} at {cfg.badge.baud} baud"


def run_checks(cfg, *, simulate: bool = False) -> list[Check]:
    from common.ownership import claim
    from device.pinwarnings import gpio_check_with_fallbacks

    claim(cfg.device.data_dir, config=cfg.source)  # never a ledger the service cannot write
    os.makedirs(cfg.device.data_dir, exist_ok=True)
    kiosk = [_guard("printer", lambda: check_printer(cfg, simulate))] if cfg.device.role == "kiosk" else []
    return [
        _guard("gpio", lambda: gpio_check_with_fallbacks(lambda: check_gpio(cfg, simulate))),
        _guard("display", lambda: check_display(cfg, simulate)),
        _guard("broker", lambda: check_broker(cfg)),
        _guard("clock", lambda: check_clock(cfg)),
        _guard("ledger", lambda: check_ledger(cfg)),
        _guard("disk", lambda: check_disk(cfg)),
        _guard("badge", lambda: check_badge(cfg)),
        *kiosk,
    ]


def format_table(checks: list[Check]) -> str:
    width = max(len(c.name) for c in checks)
    lines = [f"{'check'.ljust(width)}  result  detail"]
    lines += [f"{c.name.ljust(width)}  {c.result.ljust(6)}  {c.detail}" for c in checks]
    return "\n".join(lines) + "\n"


def run_doctor(cfg, *, simulate: bool = False, out: TextIO) -> int:
    checks = run_checks(cfg, simulate=simulate)
    out.write(format_table(checks))
    failed = [c.name for c in checks if c.result == FAIL]
    out.write(f"{len(failed)} failed: {', '.join(failed)}\n" if failed else "all checks passed\n")
    return 1 if failed else 0
