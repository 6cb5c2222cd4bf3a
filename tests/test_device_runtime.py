"""The runtime in-process: real ledger on disk, mock pins, a text display, no broker reachable."""
from __future__ import annotations

import threading
from contextlib import contextmanager

import pytest
from gpiozero.pins.mock import MockFactory

from device.config import config_from_dict
from device.display import TextDisplay
from device.ledger import LedgerError
from device.panel import Panel
from device.runtime import DeviceRuntime
from tests.support import Waiter


class OfflineUplink:
    """The broker is unreachable: nothing can be published."""

    def __init__(self, settings, **callbacks):
        self.published = []

    def start(self):
        pass

    def publish(self, topic, payload, qos=1, retain=False):
        return False

    def stop(self, last_words=None, timeout=5.0):
        pass


@contextmanager
def running(tmp_path, rating: dict | None = None):
    cfg = config_from_dict({
        "device": {"id": "dev-1", "site": "s", "counter": "3", "data_dir": str(tmp_path / "data")},
        "mqtt": {"host": "127.0.0.1"},
        "clock": {"trust": "never"},
        **({"rating": rating} if rating else {}),
    })
    records = Waiter()
    factory = MockFactory()
    rt = DeviceRuntime(
        cfg,
        panel_factory=lambda on_input: Panel(
            rating_pins=[5, 6, 13, 19], led_pins=[12, 16, 20, 21], next_pin=23, recall_pin=24,
            buzzer_pin=None, pin_factory=factory, on_input=on_input),
        display=TextDisplay(4, on_change=lambda text: records.append({"display": text})),
        emit=records.append,
        uplink_factory=OfflineUplink,
    )
    thread = threading.Thread(target=rt.run, daemon=True)
    thread.start()
    assert rt.ready.wait(10)
    try:
        yield rt, records, factory
    finally:
        rt.stop()
        thread.join(10)


@pytest.fixture
def runtime(tmp_path):
    with running(tmp_path) as parts:
        yield parts


def test_offline_presses_are_stored_with_unsynced_clock_flag(runtime):
    rt, records, factory = runtime
    rt.panel.click("2")
    (stored,) = records.wait_for(lambda items: [r["stored"] for r in items if "stored" in r])
    assert stored["clock_ok"] is False and stored["score"] == 2 and stored["mono"] > 0
    assert factory.pin(16).state is True  # LED of button 2 lit as feedback
    assert rt.ledger.backlog() == 1


def test_a_failed_commit_shows_err_and_gives_no_feedback(runtime):
    rt, records, factory = runtime

    def broken(body, held=False, meta=()):
        raise LedgerError("disk I/O error")

    rt.ledger.append = broken
    rt.panel.click("4")
    records.wait_for(lambda items: any("error" in r for r in items))
    records.wait_for(lambda items: {"display": " Err"} in items)
    assert factory.pin(21).state is False  # no LED: we promised nothing
    assert not any("stored" in r for r in records.items)


def test_a_refused_press_is_forgotten_shows_err_and_the_retry_counts(runtime):
    """A full disk refuses the vote: no "thank you" may follow the Err, and the retry is not a "repeat"."""
    rt, records, factory = runtime
    working = rt.ledger.append

    def full(body, held=False, meta=()):
        raise LedgerError("database or disk is full")

    rt.ledger.append = full
    rt.panel.click("4")
    records.wait_for(lambda items: {"display": " Err"} in items)
    # Err stays a few seconds, then the counter's own text comes back -- never the press's animation.
    shown = records.wait_for(lambda items: (lambda d: d[d.index(" Err"):] if d[-1] == "----" else None)(
        [r["display"] for r in items if "display" in r]), timeout=10)
    assert shown == [" Err", "----"]
    assert factory.pin(21).state is False
    rt.ledger.append = working  # space is back
    rt.panel.click("4")
    (stored,) = records.wait_for(lambda items: [r["stored"] for r in items if "stored" in r])
    assert stored["score"] == 4 and stored["flags"] == []


def test_a_reason_the_full_disk_refused_is_retried_until_it_is_written(tmp_path):
    """The held low rating waits for its reason; a refused write of it is retried, never dropped."""
    with running(tmp_path, {"reasons": ["Chờ lâu", "Thái độ"], "reason_window_s": 5}) as parts:
        retry_reason(*parts)


def retry_reason(rt, records, factory) -> None:
    working = rt.ledger.finalize_held
    refusals = Waiter()

    def full(updates=None):
        refusals.append(updates)
        raise LedgerError("database or disk is full")

    rt.ledger.finalize_held = full
    rt.panel.click("1")
    records.wait_for(lambda items: any("stored" in r for r in items))
    rt.panel.click("2")  # the reason
    refusals.wait_for(lambda items: len(items) >= 2, timeout=10, what="the refused reason written again")
    assert not any("updated" in r for r in records.items)
    rt.ledger.finalize_held = working  # space is back
    (updated,) = records.wait_for(lambda items: [r["updated"] for r in items if "updated" in r], timeout=10)
    assert updated["score"] == 1 and updated["reason"] == refusals.items[0]["reason"]
    assert rt.ledger.pending()[0]["reason"] == updated["reason"]


def test_a_refused_remember_is_only_logged(runtime):
    """Remembering the next local ticket number is a convenience: a full disk must not stop the counter."""
    rt, records, factory = runtime
    tried = Waiter()

    def full(key, value):
        tried.append(key)
        raise LedgerError("database or disk is full")

    rt.ledger.set_meta = full
    rt.panel.click("next")  # no service answers: a local number after the ticket timeout
    tried.wait_for(lambda items: "fallback_next" in items, timeout=30, what="the local number remembered")
    rt.panel.click("3")
    stored = records.wait_for(lambda items: [r["stored"] for r in items if "stored" in r and r["stored"]["type"] == "rating"])
    assert stored[0]["score"] == 3 and not any(r.get("error", "").startswith("ledger") for r in records.items)


def test_a_ledger_found_corrupt_while_running_ends_the_process_so_a_restart_quarantines_it(tmp_path):
    from device.ledger import LedgerCorrupt

    cfg = config_from_dict({
        "device": {"id": "dev-1", "site": "s", "counter": "3", "data_dir": str(tmp_path / "data")},
        "mqtt": {"host": "127.0.0.1"}, "clock": {"trust": "never"},
    })
    records = Waiter()
    rt = DeviceRuntime(
        cfg,
        panel_factory=lambda on_input: Panel(
            rating_pins=[5, 6, 13, 19], led_pins=[12, 16, 20, 21], next_pin=23, recall_pin=24,
            buzzer_pin=None, pin_factory=MockFactory(), on_input=on_input),
        display=TextDisplay(4, on_change=lambda text: records.append({"display": text})),
        emit=records.append, uplink_factory=OfflineUplink)

    def rotten(body, held=False, meta=()):
        raise LedgerCorrupt("database disk image is malformed")

    rt.ledger.append = rotten
    outcome = []

    def run():
        try:
            rt.run()
        except LedgerCorrupt as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert rt.ready.wait(10)
    rt.panel.click("3")
    thread.join(10)
    assert not thread.is_alive() and len(outcome) == 1  # `hailong device run` exits 1 on it
    assert {"display": " Err"} in records.items


def _signal_storm(data_dir: str, presses: int = 200000) -> None:
    """Run in a child: SIGALRM every 0.5 ms calls the runtime's inputs, as `hailong device run`'s
    SIGTERM handler does, while the main thread feeds the same runtime (holding its queue)."""
    import signal

    cfg = config_from_dict({"device": {"id": "dev-1", "site": "s", "counter": "3", "data_dir": data_dir},
                            "mqtt": {"host": "127.0.0.1"}})
    rt = DeviceRuntime(cfg, panel_factory=lambda on_input: None, display=TextDisplay(4),
                       emit=lambda record: None, uplink_factory=OfflineUplink)
    signal.signal(signal.SIGALRM, lambda *_: rt.stop())
    signal.setitimer(signal.ITIMER_REAL, 0.0005, 0.0005)
    for _ in range(presses):
        rt.badge("0A")
    signal.setitimer(signal.ITIMER_REAL, 0, 0)


def test_stop_is_safe_inside_a_signal_handler(tmp_path):
    # A signal handler runs in the main thread between two bytecodes, possibly while that thread
    # holds the input queue's lock: a queue.Queue deadlocked there, and SIGTERM never stopped the
    # counter (seen once in CI). The storm makes that moment near certain.
    import subprocess
    import sys

    code = f"from tests.test_device_runtime import _signal_storm; _signal_storm({str(tmp_path)!r})"
    done = subprocess.run([sys.executable, "-c", code], timeout=120, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
