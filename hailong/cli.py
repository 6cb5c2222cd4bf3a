"""`hailong <area> ...`: each area's module is imported only when asked for.

The Pi Zero pays for every import, so `hailong device run` must not load the service.
"""
from __future__ import annotations

import argparse
import importlib
import sys

AREAS = {
    "device": ("device.cli", "run the counter firmware and its tools"),
    "broker": ("broker.cli", "run the central service (MQTT ingest, store, HTTP API) and manage its users and tokens"),
    "provision": ("provisioning.cli", "the technician's tool: identities, broker files, boot partition, serial console"),
    "demo": ("hailong.demo", "run the whole system on this machine: service, dashboard and simulated counters"),
}


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
