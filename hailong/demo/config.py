"""The demo site and how its parts are configured: the service, each counter, their ports."""
from __future__ import annotations

import json
import socket
from datetime import datetime
from pathlib import Path

from common.clock import Clock, now
from common.periods import DEFAULT_TZ, today as local_today, zone
from hailong.sample_data import REASONS

SITE = "demo"
SITE_NAME = "Trung tâm Phục vụ hành chính công (demo)"
# The second centre, a commune's: the province user sees both, the commune user only this one.
COMMUNE_SITE = "demo-xa"
COMMUNE_NAME = "UBND xã Minh Tân — Bộ phận Một cửa (demo)"
TZ = DEFAULT_TZ
STORE_FILE = "hailong.db"
REASON_WINDOW_S = 2.0
ALWAYS_OPEN = "mon-sun 00:00-24:00"
OUTAGE_ALERT_S = 8.0


KIOSK = "demo-kiosk"  # the ticket kiosk's device id (hailong.demo.kiosk)
KIOSK_PRINTER = "kiosk-printer.bin"  # its ESC/POS bytes, in the data folder
# (queue, name, prefix, share of citizens); each queue has a button on the kiosk (mock pins)
QUEUES = [("A", "Đất đai", "A", 0.6), ("B", "Tư pháp – Hộ tịch", "B", 0.4)]
QUEUE_PINS = (5, 6)


def queues_of(n: int) -> list[str]:
    """Counter n's queues: odd counters take land files only, even ones both (overlapping, as in a centre)."""
    return ["A"] if n % 2 else ["A", "B"]


def device_id(n: int) -> str:
    return f"demo-c{n}"


def site_of(n: int, counters: int) -> str:
    """The centre counter n serves: the first half (rounded up) at the province's, the rest at the commune's."""
    return SITE if n <= (counters + 1) // 2 else COMMUNE_SITE


def today(clock: Clock = now) -> str:
    """The demo site's local day (YYYY-MM-DD) at the clock's moment."""
    return local_today(zone(TZ), clock).isoformat()


def local_time(ms: int) -> str:
    """HH:MM:SS at the demo site of a millisecond timestamp, e.g. an event's `ts`."""
    return datetime.fromtimestamp(ms / 1000, zone(TZ)).strftime("%H:%M:%S")


SERVICE_USER = "hailong-service"
MQTT_DIR = "mqtt"  # the embedded broker's passwd and acl, and every account's password file


def provision_mqtt(data: Path, counters: int) -> None:
    """Accounts for the service and each counter on the embedded broker, as `hailong provision`
    makes them for Mosquitto: the demo's broker is closed to anyone else on the machine.
    New passwords at every start; the counters' configs are rewritten with them."""
    from common.fsutil import atomic_write
    from provisioning.credentials import new_password
    from provisioning.mosquitto_files import write_local_site

    folder = data / MQTT_DIR
    folder.mkdir(mode=0o700, exist_ok=True)
    passwords = {SERVICE_USER: new_password(), KIOSK: new_password(),
                 **{device_id(n): new_password() for n in range(1, counters + 1)}}
    for user, password in passwords.items():
        atomic_write(folder / f"{user}.password", password.encode(), mode=0o600)
    write_local_site(folder, passwords, service_user=SERVICE_USER)


def service_config(data: Path, http_port: int, mqtt_port: int):
    from broker.config import config_from_dict

    mqtt = data / MQTT_DIR
    return config_from_dict({
        "service": {"name": SITE_NAME, "data_dir": str(data), "timezone": TZ},
        "mqtt": {"embedded": True, "port": mqtt_port, "protocol": "3.1.1", "client_id": "hailong-demo-service",
                 "batch_wait_ms": 5, "username": SERVICE_USER, "password_file": str(mqtt / f"{SERVICE_USER}.password"),
                 "passwd_file": str(mqtt / "passwd"), "acl_file": str(mqtt / "acl")},
        "store": {"url": "sqlite:///" + str(data / STORE_FILE)},
        "http": {"host": "127.0.0.1", "port": http_port},
        # Open around the clock, so the staged outage (hailong.demo.outage) alerts whenever the demo runs;
        # demo time runs fast, so a counter dark for 8 seconds is an incident.
        "alerts": {"default_hours": ALWAYS_OPEN, "offline_after_s": OUTAGE_ALERT_S, "check_interval_s": 1.0},
    })


def device_config(data: Path, n: int, mqtt_port: int, site: str = SITE) -> Path:
    folder = data / f"counter-{n}"
    folder.mkdir(parents=True, exist_ok=True)
    reasons = ", ".join(json.dumps(r, ensure_ascii=False) for r in REASONS)
    cfg = data / f"counter-{n}.toml"
    cfg.write_text(
        "[device]\n"
        f'id = "{device_id(n)}"\nsite = "{site}"\ncounter = "{n}"\ndata_dir = "{folder / "data"}"\n'
        "[mqtt]\n"
        f'host = "127.0.0.1"\nport = {mqtt_port}\nprotocol = "3.1.1"\n'
        f'password_file = "{data / MQTT_DIR / (device_id(n) + ".password")}"\n'
        "backoff_min_s = 0.2\nbackoff_max_s = 2\n"
        '[clock]\ntrust = "always"\n'
        "[telemetry]\ninterval_s = 2\n"
        # Demo time runs fast: a citizen is served in seconds, not minutes.
        "[rating]\ngrace_s = 0.5\nrepeat_gap_s = 2\nfeedback_s = 0.3\n"
        f"reasons = [{reasons}]\nask_reason_max_score = 1\nreason_window_s = {REASON_WINDOW_S}\n",
        encoding="utf-8",
    )
    return cfg


def kiosk_config(data: Path, mqtt_port: int) -> Path:
    """The kiosk's device.toml: the same firmware as a counter, role kiosk, printing into KIOSK_PRINTER."""
    folder = data / "kiosk"
    folder.mkdir(parents=True, exist_ok=True)
    printer = data / KIOSK_PRINTER
    printer.write_bytes(b"")  # a fresh roll each run: a raster ticket is some 18 kB
    buttons = "".join(f'[[queues]]\nid = "{q}"\nname = "{name}"\nbutton = {pin}\n'
                      for (q, name, _, _), pin in zip(QUEUES, QUEUE_PINS))
    cfg = data / "kiosk.toml"
    cfg.write_text(
        "[device]\n"
        f'id = "{KIOSK}"\nsite = "{SITE}"\ncounter = "kiosk"\nrole = "kiosk"\ndata_dir = "{folder / "data"}"\n'
        "[mqtt]\n"
        f'host = "127.0.0.1"\nport = {mqtt_port}\nprotocol = "3.1.1"\n'
        f'password_file = "{data / MQTT_DIR / (KIOSK + ".password")}"\n'
        "backoff_min_s = 0.2\nbackoff_max_s = 2\n"
        '[clock]\ntrust = "always"\n'
        "[telemetry]\ninterval_s = 2\n"
        # 58 mm paper, as at many commune centres: smaller rasters than 80 mm.
        f'[kiosk]\ncentre = "{SITE_NAME}"\nprinter = "file"\nprinter_port = "{printer}"\npaper_dots = 384\n'
        + buttons,
        encoding="utf-8",
    )
    return cfg


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            s.listen()
        except OSError:
            return False
    return True


def free_port() -> int:
    """A port nobody listens on now, for the embedded broker when --mqtt-port is 0."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
