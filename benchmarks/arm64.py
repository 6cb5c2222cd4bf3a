"""The counter on arm64 under qemu-user, as a ratio to the same steps on this host.

    sudo .venv/bin/python benchmarks/arm64.py [--wheels DIR] [--starts 5] [--presses 20]

Installs the cp311 wheelhouse (built now with `provision wheels`, or --wheels DIR) in a
throw-away Debian bookworm arm64 root, as the first boot does, and times the same three steps
there and on this host, with the same Python minor version (3.11) and the same code:

    import         python -c "import <what `hailong device run` loads>", minus python -c pass
    start→ready    spawn `hailong device run --simulate` -> its {"ready"} line
    press→stored   "press N" written to its stdin -> its {"stored"} line (ledger commit, fsync)

qemu-user translates every arm64 instruction on an x86 core, so the ratio says how much slower
the emulated root is, not how fast a Pi is: a Pi runs arm64 natively. Real-Pi numbers are
still to be measured (docs/performance.md). Needs root, like the arm64 test.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, TimedDeviceProcess, machine_info, table, write_device_config

from provisioning.armroot import ArmRoot, missing_tools, root_tarball  # noqa: E402
from provisioning.wheelbuild import build_wheelhouse  # noqa: E402
from tests.mosquitto import Mosquitto  # noqa: E402

MODULES = "device.cli, device.config, device.runtime, device.panel, device.display, paho.mqtt.client, gpiozero"
IMPORT = f"import time; t = time.perf_counter(); import {MODULES}; print(time.perf_counter() - t)"
EMULATED_TIMEOUT = 300.0


def median_import(command, runs: int) -> float:
    """`command(argv)` -> the argv that runs argv where it is measured."""
    times = []
    for _ in range(runs):
        r = subprocess.run(command(["-c", IMPORT]), capture_output=True, text=True, check=True,
                           timeout=EMULATED_TIMEOUT)
        times.append(float(r.stdout.strip().splitlines()[-1]))
    return statistics.median(times)


def device_run(make, starts: int, presses: int) -> tuple[float, float]:
    """Median start→ready over `starts` spawns; median press→stored over `presses` presses."""
    ready, stored = [], []
    for i in range(starts):
        dev = make()
        try:
            record = dev.first("ready", timeout=EMULATED_TIMEOUT)
            ready.append(record["_t"] - dev.spawned_at)
            if i == 0:
                for n in range(presses):
                    before = dev.counts.get("stored", 0)
                    sent = time.monotonic()
                    dev.send(f"press {1 + n % 4}")
                    stored.append(dev.wait_until(lambda: dev.counts.get("stored", 0) > before, EMULATED_TIMEOUT,
                                                 "stored") - sent)
            assert dev.quit(timeout=EMULATED_TIMEOUT) == 0
        finally:
            dev.close()
    return statistics.median(ready), statistics.median(stored)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--wheels", help="a cp311 wheelhouse (default: build one now)")
    p.add_argument("--starts", type=int, default=5)
    p.add_argument("--presses", type=int, default=20)
    p.add_argument("--imports", type=int, default=5)
    args = p.parse_args(argv)
    reason = missing_tools()
    if reason:
        print(f"skipped: no arm64 root on this machine: {reason}", file=sys.stderr)
        return 0
    info = machine_info()
    print(f"host: {info['cpu']}, {info['cores']} cores, {info['ram_gib']} GiB, {info['os']}, "
          f"Python {info['python']}, {info['date']}")
    with tempfile.TemporaryDirectory(prefix="hailong-bench-arm64-") as tmp:
        tmp = Path(tmp)
        wheels = Path(args.wheels) if args.wheels else tmp / "wheels"
        if not args.wheels:
            build_wheelhouse(wheels, ["cp311"], source=ROOT, log=lambda line: print(line, flush=True))
        broker = Mosquitto(tmp / "mosquitto").start()
        try:
            with ArmRoot(root_tarball("bookworm"), workdir=tmp / "pi") as pi:
                pi.host_path("/wheels").mkdir()
                subprocess.run(["cp", "-a", f"{wheels}/.", str(pi.host_path("/wheels"))], check=True)
                r = pi.run("python3 -m venv /opt/hailong/.venv && /opt/hailong/.venv/bin/pip install --quiet "
                           "--no-index --find-links /wheels --require-hashes --no-deps -r /wheels/requirements-cp311.txt",
                           network=False, capture_output=True, text=True)
                if r.returncode != 0:
                    print(r.stdout + r.stderr, file=sys.stderr)
                    return 1
                arm_version = pi.run(["/opt/hailong/.venv/bin/python", "-V"], capture_output=True, text=True).stdout
                pi.host_path("/bench").mkdir()
                write_device_config(pi.host_path("/bench/device.toml"), device_id="bench-arm64", port=broker.port,
                                    data_dir=Path("/bench/data"))
                host_cfg = write_device_config(tmp / "device.toml", device_id="bench-host", port=broker.port,
                                               data_dir=tmp / "data")
                venv = "/opt/hailong/.venv/bin"
                rows = []
                host_import = median_import(lambda a: [sys.executable, *a], args.imports)
                arm_import = median_import(lambda a: pi.command([f"{venv}/python", *a]), args.imports)
                host = device_run(lambda: TimedDeviceProcess(host_cfg), args.starts, args.presses)
                arm = device_run(lambda: TimedDeviceProcess(None, argv=pi.command(
                    [f"{venv}/hailong", "device", "run", "--simulate", "--config", "/bench/device.toml"])),
                    args.starts, args.presses)
        finally:
            broker.stop()
    for name, h, a in (("import", host_import, arm_import), ("start→ready", host[0], arm[0]),
                       ("press→stored", host[1], arm[1])):
        rows.append([name, f"{h * 1000:.0f} ms", f"{a * 1000:.0f} ms", f"{a / h:.1f}×"])
    print(f"arm64: Debian bookworm root under qemu-user ({arm_version.strip()}); medians of "
          f"{args.imports} imports, {args.starts} starts, {args.presses} presses")
    print(table(["step", "host (x86-64)", "arm64 (qemu)", "ratio"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
