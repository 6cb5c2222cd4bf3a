"""`hailong device ...`: run the counter (or the kiosk), print an example config, check the hardware."""
from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading

from common.ownership import OwnershipError, claim
from device.errors import HardwareError

_HINT = "on a laptop add --simulate; on a Pi install hailong[pi] and run `hailong device doctor`"


def _open(what: str, make):
    """Build a hardware adapter, turning whatever the driver raises into one clear error."""
    try:
        return make()
    except Exception as e:  # noqa: BLE001 - drivers raise anything from ImportError to OSError
        raise HardwareError(f"cannot open the {what}: {type(e).__name__}: {e} ({_HINT})") from e


def _emitter(stream):
    lock = threading.Lock()

    def emit(record: dict) -> None:
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
        with lock:
            stream.write(line + "\n")
            stream.flush()

    return emit


def cmd_run(args) -> int:
    from device.config import load_config
    from device.hardware import counter_display, counter_panel
    from device.panel import default_pin_factory
    from device.runtime import DeviceRuntime

    cfg = load_config(args.config)
    claim(cfg.device.data_dir, config=cfg.source, command="hailong device run")
    simulate = args.simulate
    emit = _emitter(sys.stdout) if simulate else (lambda record: logging.getLogger("hailong.device").debug("%s", record))
    d = cfg.display
    display = _open(f"{d.kind} display on SPI {d.spi_port}.{d.spi_device}", lambda: counter_display(
        cfg, simulate=simulate, on_change=lambda text: emit({"display": text})))
    pin_factory = _open("GPIO pin factory", lambda: default_pin_factory(simulate))

    def panel_factory(on_input):
        return _open("buttons and LEDs (GPIO)",
                     lambda: counter_panel(cfg, on_input=on_input, pin_factory=pin_factory))

    if cfg.device.role == "kiosk":
        runtime = _kiosk_runtime(cfg, display=display, pin_factory=pin_factory, emit=emit, simulate=simulate)
    else:
        runtime = DeviceRuntime(cfg, panel_factory=panel_factory, display=display, emit=emit)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: runtime.stop())
    reader = None
    if cfg.badge.enabled and not simulate:
        from device.badge import BadgeReader

        reader = BadgeReader(cfg.badge.port, cfg.badge.baud, on_badge=runtime.badge)
        reader.start()
    if simulate:
        from device.simulate import Script

        Script(runtime.panel, badge=runtime.badge, stop=runtime.stop, emit=emit).start(sys.stdin)
    try:
        runtime.run()
    finally:
        if reader is not None:
            reader.stop()
    return runtime.exit_code


def cmd_boot(args) -> int:
    """Start the right version: the factory install runs this before every start (docs/updates.md).

    It decides with device/updater.py's plan_boot (a pending version on probation, or the committed
    one, or the factory install), saves that decision, points releases/current at it and becomes it
    (exec, so systemd's main PID and sd_notify stay ours). A release cannot change this code: it lives
    in the read-only factory install, so a bad release cannot break its own way back.
    """
    import os

    from device import updater
    from device.config import load_config

    cfg = load_config(args.config)
    claim(cfg.device.data_dir, config=cfg.source, command="hailong device boot")
    data = cfg.device.data_dir
    plan = updater.prepare_boot(data, cfg.update.max_starts)
    if plan.note:
        logging.getLogger("hailong.update").warning("boot: %s", plan.note)
    if plan.run is None:
        return cmd_run(args)
    exe = str(updater.releases_dir(data) / plan.run / "venv" / "bin" / "hailong")
    argv = [exe, "device", "--log-level", args.log_level, "run", "--config", str(cfg.source)]
    os.execv(exe, argv + (["--simulate"] if args.simulate else []))


def _kiosk_runtime(cfg, *, display, pin_factory, emit, simulate):
    from device.kiosk_hw import kiosk_panel, kiosk_transport
    from device.kiosk_runtime import KioskRuntime

    def panel_factory(on_input):
        return _open("kiosk buttons (GPIO)", lambda: kiosk_panel(cfg, on_input=on_input, pin_factory=pin_factory))

    transport = _open(f"{cfg.kiosk.printer} printer", lambda: kiosk_transport(cfg, simulate=simulate))
    return KioskRuntime(cfg, transport=transport, panel_factory=panel_factory, display=display, emit=emit)


def cmd_example_config(args) -> int:
    from device.config import example_config

    sys.stdout.write(example_config())
    return 0


def cmd_doctor(args) -> int:
    from device.config import load_config
    from device.doctor import run_doctor

    return run_doctor(load_config(args.config), simulate=args.simulate, out=sys.stdout)


def cmd_agent(args) -> int:
    """The provisioning agent on a serial port, with this counter's own buttons, display and badge reader."""
    from pathlib import Path

    from device.agent import Agent
    from device.config import config_from_dict, load_config
    from device.doctor import PASS, check_broker
    from device.hardware import counter_display, counter_panel
    from device.panel import default_pin_factory

    bundle = Path(args.bundle_dir)
    installed = bundle / "device.toml"
    claim(bundle, command="hailong device agent")  # pushed bundles must stay the service's
    # Before the first push there is no config yet: the hardware defaults still apply.
    cfg = load_config(installed) if installed.exists() else config_from_dict({
        "device": {"id": "unprovisioned", "site": "-", "counter": "-", "data_dir": str(bundle)},
        "mqtt": {"host": "localhost"}})
    display = _open("display", lambda: counter_display(cfg, simulate=args.simulate))
    agent_ref: list = []
    panel = _open("buttons and LEDs (GPIO)", lambda: counter_panel(
        cfg, pin_factory=default_pin_factory(args.simulate),
        on_input=lambda *a: agent_ref[0].on_input(*a) if agent_ref else None))

    def broker_check():
        if not installed.exists():
            return False, "not provisioned yet"
        result, detail = check_broker(load_config(installed))  # the freshly pushed credentials
        return result == PASS, detail

    agent = Agent(args.port, bundle_dir=bundle, key_file=bundle / "provisioning-key", panel=panel,
                  display=display, broker_check=broker_check, baudrate=args.baud)
    agent_ref.append(agent)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    agent.start()
    logging.getLogger("hailong.agent").info("provisioning agent on %s, bundle %s", args.port, bundle)
    stop.wait()
    agent.stop()
    panel.close()
    display.close()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hailong device", description="Counter firmware.")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR (default INFO)")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the counter")
    run.add_argument("--config", required=True, help="device TOML config file")
    run.add_argument(
        "--simulate", action="store_true",
        help="mock GPIO pins and a text display; read commands from stdin, write JSON lines to stdout",
    )
    run.set_defaults(func=cmd_run)
    boot = sub.add_parser("boot", help="run the committed (or the pending) release, or this install")
    boot.add_argument("--config", required=True, help="device TOML config file")
    boot.add_argument("--simulate", action="store_true", help="as for run")
    boot.set_defaults(func=cmd_boot)
    ex = sub.add_parser("example-config", help="print a complete commented config")
    ex.set_defaults(func=cmd_example_config)
    ag = sub.add_parser("agent", help="answer the technician's laptop on a serial port (provisioning, self-test)")
    ag.add_argument("--port", required=True, help="serial port, e.g. /dev/ttyGS0 (USB gadget) or /dev/serial0")
    ag.add_argument("--baud", type=int, default=115200)
    ag.add_argument("--bundle-dir", default="/etc/hailong", help="where the device's bundle is installed")
    ag.add_argument("--simulate", action="store_true", help="mock pins and a text display")
    ag.set_defaults(func=cmd_agent)
    doc = sub.add_parser("doctor", help="check GPIO, display, broker, clock and ledger")
    doc.add_argument("--config", required=True)
    doc.add_argument("--simulate", action="store_true", help="check with mock pins and no SPI")
    doc.set_defaults(func=cmd_doctor)
    return parser


def main(argv: list[str] | None = None) -> int:
    from device.ledger import LedgerError
    from common.cli import dispatch

    return dispatch(build_parser(), argv, prog="hailong device", errors={(HardwareError, LedgerError, OwnershipError): 1})
