"""`hailong demo`: the whole system on one machine in one command.

In one process tree: the real central service in-process (embedded MQTT broker, SQLite
store, ingest, HTTP API and dashboard), N counters and a ticket kiosk running the real
firmware as child processes (`hailong device run --simulate`), an officer assigned to each
counter, a demo login, and simulated citizens who take tickets at the kiosk, get called with
NEXT and press rating buttons (mostly good, some low ratings with a reason, some misuse:
repeats and chords).

Output: a live terminal view on a TTY, JSON lines with --headless (or when stdout is not a
terminal). Ctrl-C stops everything cleanly: counters publish offline, the service flushes.

    config.py    the demo site, the service's and each counter's configuration, free ports
    login.py     the demo login (user and API token), kept beside the store
    firmware.py  a device's real firmware as a child process (stdin commands, JSON lines back)
    counter.py   one counter's firmware
    kiosk.py     the ticket kiosk's firmware, and the citizens who take tickets at it
    citizens.py  the simulated citizens and the --interactive keyboard
    view.py      the live terminal view
    output.py    the headless JSON lines
    app.py       the demo itself: start, run, shut down
    cli.py       the command line
"""
from __future__ import annotations

from hailong.demo.cli import build_parser, main

__all__ = ["build_parser", "main"]
