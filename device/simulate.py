"""Scripted or keyboard input for `hailong device run --simulate`.

One command per line on stdin:
  press 1..5 | press next | press recall | hold next SECONDS | hold N SECONDS |
  chord A B | badge UID | wait SECONDS | quit
A kiosk (device.role = "kiosk") also takes: take QUEUE | take QUEUE priority.
Output is JSON lines on stdout (see device.cli). On a terminal, single keys work too:
1-5 rate, n next, r recall, c close (hold NEXT), q quit.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from typing import Callable, TextIO

KEYS = {"n": "press next", "r": "press recall", "c": "hold next 3.5", "q": "quit"}


class ScriptError(ValueError):
    pass


class Script:
    def __init__(self, panel, *, badge: Callable[[str], None], stop: Callable[[], None],
                 emit: Callable[[dict], None]):
        self.panel = panel
        self.badge = badge
        self.stop = stop
        self.emit = emit

    def run_line(self, line: str) -> bool:
        """Carry out one command; False once the script asked to quit."""
        words = line.split()
        if not words or words[0].startswith("#"):
            return True
        cmd, args = words[0].lower(), words[1:]
        try:
            if cmd == "quit":
                self.stop()
                return False
            if cmd == "press" and len(args) == 1:
                self.panel.click(args[0])
            elif cmd == "hold" and len(args) == 2:
                self.panel.press(args[0])
                time.sleep(_seconds(args[1]))  # the script asked for a long press of this length
                self.panel.release(args[0])
            elif cmd == "chord" and len(args) >= 2:
                for name in args:
                    self.panel.press(name)
                for name in args:
                    self.panel.release(name)
            elif cmd == "take" and len(args) in (1, 2) and args[1:] in ([], ["priority"]):
                if args[1:]:  # the kiosk's priority button, then the queue's
                    self.panel.click("priority")
                self.panel.click(args[0])
            elif cmd == "badge" and len(args) == 1:
                self.badge(args[0])
            elif cmd == "wait" and len(args) == 1:
                time.sleep(_seconds(args[0]))
            else:
                raise ScriptError(f"unknown command {line.strip()!r}")
        except (ScriptError, KeyError, ValueError) as e:
            self.emit({"error": str(e)})
        return True

    def run(self, stream: TextIO) -> None:
        if stream.isatty():
            self._keyboard(stream)
            return
        for line in stream:
            if not self.run_line(line):
                return
        self.stop()  # end of the script: stop cleanly

    def _keyboard(self, stream: TextIO) -> None:
        import termios
        import tty

        fd = stream.fileno()
        saved = termios.tcgetattr(fd)
        try:
            tty.setcbreak(fd)
            while True:
                key = os.read(fd, 1).decode(errors="ignore")
                line = f"press {key}" if key.isdigit() else KEYS.get(key.lower())
                if key == "" or (line and not self.run_line(line)):
                    return
        finally:
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)

    def start(self, stream: TextIO = sys.stdin) -> threading.Thread:
        t = threading.Thread(target=self.run, args=(stream,), name="script", daemon=True)
        t.start()
        return t


def _seconds(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 3600:
        raise ScriptError(f"seconds must be 0..3600, got {text}")
    return value
