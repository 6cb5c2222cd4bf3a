"""`hailong demo [options]` (also `python -m hailong.demo`)."""
from __future__ import annotations

import argparse
import logging
import signal
import sys

from hailong.demo.app import Demo
from hailong.sample_data import OFFICERS

DESCRIPTION = "`hailong demo`: the whole system on one machine in one command."


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hailong demo", description=DESCRIPTION)
    p.add_argument("--port", type=int, default=8080, help="HTTP port of the API and dashboard (default 8080)")
    p.add_argument("--mqtt-port", type=int, default=0, help="embedded MQTT broker port (default: any free port)")
    p.add_argument("--data", default="demo-data", help="demo data folder, reused between runs (default ./demo-data)")
    p.add_argument("--fresh", action="store_true", help="wipe the data folder first")
    p.add_argument("--counters", type=int, default=4, help="simulated counters (default 4)")
    p.add_argument("--rate", type=float, default=20.0,
                   help="citizens per minute per counter (default 20; 0 = no simulated citizens)")
    p.add_argument("--duration", type=float, default=0, help="stop after this many seconds (0 = until Ctrl-C)")
    p.add_argument("--seed", type=int, default=None, help="make the simulated citizens repeatable")
    p.add_argument("--headless", action="store_true", help="JSON lines on stdout instead of the live view")
    p.add_argument("--outage-after", type=float, default=45,
                   help="kill the last counter after this many seconds, so an alert shows (default 45; 0 = never)")
    p.add_argument("--outage-s", type=float, default=60, help="how long that counter stays dark (default 60)")
    p.add_argument("--interactive", action="store_true",
                   help="drive counter 1 from the keyboard: 1-4 rate, n next, r recall, q quit")
    return p


def parse_args(argv: list[str] | None) -> argparse.Namespace | str:
    """The options, or the reason they cannot be used."""
    args = build_parser().parse_args(argv)
    if not 1 <= args.counters <= len(OFFICERS):
        return f"--counters must be 1..{len(OFFICERS)}"
    if args.rate < 0 or args.duration < 0 or args.outage_after < 0 or args.outage_s < 0:
        return "--rate, --duration, --outage-after and --outage-s cannot be negative"
    if not args.headless and not sys.stdout.isatty():
        args.headless = True  # piped: JSON lines, not screen redraws
    return args


def quiet_logging() -> None:
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    # amqtt logs (and recovers from) races between clients connecting at the same moment;
    # noise for a demo, and it would tear the live view.
    for name in ("asyncio", "amqtt", "transitions"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if isinstance(args, str):
        print(f"hailong demo: {args}", file=sys.stderr)
        return 2
    quiet_logging()
    demo = Demo(args)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: demo.stop.set())
    code = 0
    if not args.headless:
        print(f"hailong demo: starting the service and {args.counters} counters in {demo.data} ...", flush=True)
    try:
        code = demo.start()
        if code == 0:
            demo.run()
            demo.shutdown()
    finally:
        demo.close()
    if code == 0 and not args.headless:
        commune = demo.login.get("commune") or {}
        print(f"\nhailong demo stopped. Data kept in {demo.data} (dashboard logins: province {demo.login.get('user')} "
              f"/ {demo.login.get('password')}, commune {commune.get('user')} / {commune.get('password')}); "
              "run again to continue, --fresh to start over.")
    return code
