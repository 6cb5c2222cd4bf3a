"""`hailong <area> ...`: each area's module is imported only when asked for.

The Pi Zero pays for every import, so `hailong device run` must not load the service.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

AREAS = {
    "device": ("device.cli", "run the counter firmware and its tools"),
    "broker": ("broker.cli", "run the central service (MQTT ingest, store, HTTP API) and manage its users and tokens"),
    "provision": ("provisioning.cli", "the technician's tool: identities, broker files, boot partition, serial console"),
    "demo": ("hailong.demo", "run the whole system on this machine: service, dashboard and simulated counters"),
}


def dispatch(parser: argparse.ArgumentParser, argv: list[str] | None, *, prog: str,
             errors: dict[tuple[type[BaseException], ...], int]) -> int:
    """Run one area's sub-command: logging to stderr, and expected failures as one clear
    line and an exit code instead of a traceback (a bad config lists every problem, exit 2)."""
    from device.errors import ConfigError

    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.func(args)
    except ConfigError as e:
        print(str(e), file=sys.stderr)
        return 2
    except tuple(t for kinds in errors for t in kinds) as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return next(code for kinds, code in errors.items() if isinstance(e, kinds))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in AREAS:
        parser = argparse.ArgumentParser(
            prog="hailong",
            description="hailong: citizen satisfaction buttons for one-stop administrative centres.",
        )
        parser.add_argument("area", choices=sorted(AREAS), help="; ".join(f"{k}: {v[1]}" for k, v in AREAS.items()))
        parser.parse_args(argv[:1])
        return 2
    module = importlib.import_module(AREAS[argv[0]][0])
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
