"""The counter's panel and display come from its config the same way on every path: run, doctor, agent."""
from __future__ import annotations

import io
import signal
import sys
import types

import pytest

from device.panel import Panel
from tests.mosquitto import free_port

BOUNCE_S = 0.12  # not the default (0.05), so a path that drops the setting shows


def config_text(data_dir) -> str:
    return (
        "[device]\n"
        f'id = "dev-1"\nsite = "kien-thuy"\ncounter = "3"\ndata_dir = "{data_dir}"\n'
        # Nothing listens here: the broker check fails and the uplink retries, neither matters.
        f'[mqtt]\nhost = "127.0.0.1"\nport = {free_port()}\npassword = "pw"\n'
        "[clock]\ntrust = \"always\"\n"
        f"[pins]\nbounce_s = {BOUNCE_S}\n"
        "[rating]\nscale = 3\n"
    )


@pytest.fixture
def panels(monkeypatch):
    """The debounce time of every button of every Panel made, read from its (mock) pin when made."""
    made: list[dict[str, float | None]] = []
    real = Panel.__init__

    def init(self, **kwargs):
        real(self, **kwargs)
        made.append({name: button.pin.bounce for name, button in self._buttons.items()})

    monkeypatch.setattr(Panel, "__init__", init)
    return made


@pytest.fixture
def quiet_signals(monkeypatch):
    """Installed SIGTERM/SIGINT handlers run at once: the entry point stops as soon as it has started."""
    import device.cli

    fake = types.SimpleNamespace(SIGTERM=signal.SIGTERM, SIGINT=signal.SIGINT,
                                 signal=lambda sig, handler: handler(sig, None))
    monkeypatch.setattr(device.cli, "signal", fake)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))  # the simulator's script ends at once too


def assert_debounced(made):
    assert len(made) == 1
    assert made[0] == {name: BOUNCE_S for name in ("1", "2", "3", "next", "recall")}


def test_run_debounces_as_configured(tmp_path, panels, quiet_signals):
    from device.cli import main

    cfg = tmp_path / "device.toml"
    cfg.write_text(config_text(tmp_path / "data"))
    assert main(["run", "--simulate", "--config", str(cfg)]) == 0
    assert_debounced(panels)


def test_doctor_debounces_as_configured(tmp_path, panels, capsys):
    from device.cli import main

    cfg = tmp_path / "device.toml"
    cfg.write_text(config_text(tmp_path / "data"))
    assert main(["doctor", "--simulate", "--config", str(cfg)]) == 1  # the broker is down
    assert "gpio     PASS" in capsys.readouterr().out
    assert_debounced(panels)


def test_the_agent_s_self_test_debounces_as_configured(tmp_path, panels, quiet_signals):
    from device.cli import main

    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "device.toml").write_text(config_text(tmp_path / "data"))
    assert main(["agent", "--simulate", "--port", "loop://", "--bundle-dir", str(bundle)]) == 0
    assert_debounced(panels)


def test_the_display_follows_the_config(tmp_path):
    from device.config import config_from_dict
    from device.display import NullDisplay, TextDisplay
    from device.hardware import counter_display

    cfg = config_from_dict({"device": {"id": "dev-1", "site": "s", "counter": "1", "data_dir": str(tmp_path)},
                            "mqtt": {"host": "h"}, "display": {"kind": "none"}})
    assert isinstance(counter_display(cfg, simulate=False), NullDisplay)
    shown = []
    display = counter_display(cfg, simulate=True, on_change=shown.append)
    assert isinstance(display, TextDisplay) and display.width == cfg.display_width
    display.show("12")
    assert shown and shown[-1].strip() == "12"
