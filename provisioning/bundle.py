"""A device's bundle: everything one counter needs to join its site's broker.

    device.toml       full device config (device.config schema), secrets by relative path
    mqtt-password     the device's MQTT password
    provisioning-key  the key the agent checks on the serial console (not a device.toml key:
                      the device config schema has none, and unknown keys are errors)
    ca.crt            the broker's CA, when the site uses TLS

Relative paths in device.toml resolve against its own directory, so the bundle works where
it is written and once installed to /etc/hailong. Files are 0600, the directory 0700.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

from common.device_file import example_config
from common.configschema import toml_literal
from common.fsutil import atomic_write
from provisioning.inventory import broker_list

CONFIG = "device.toml"
PASSWORD = "mqtt-password"
KEY = "provisioning-key"
CA = "ca.crt"
DATA_DIR = "/var/lib/hailong"


def render_device_toml(device: dict, site: dict, release_key: str | None = None) -> str:
    """The generated example config with this device's values in place of the examples."""
    values = {
        ("device", "id"): device["id"],
        ("device", "site"): device["site"],
        ("device", "counter"): str(device["counter"]),
        ("device", "data_dir"): DATA_DIR,
        ("mqtt", "host"): site["broker_host"],
        ("mqtt", "port"): int(site["port"]),
        ("mqtt", "hosts"): None,
        ("mqtt", "password_file"): PASSWORD,
        ("mqtt", "prefix"): site["prefix"],
        ("mqtt", "tls"): bool(site["tls"]),
    }
    if site.get("also_brokers"):  # several brokers: hosts instead of host and port (None: commented out)
        values.update({("mqtt", "host"): None, ("mqtt", "port"): None, ("mqtt", "hosts"): broker_list(site)})
    if site.get("tls") and site.get("ca_file"):
        values[("mqtt", "ca_file")] = CA
    if release_key:
        values[("update", "public_key")] = release_key
    out, section, done = [], None, set()
    header = [f"# Written by `hailong provision` for device {device['id']} "
              f"(site {device['site']}, counter {device['counter']}).",
              "# The MQTT password and the provisioning key are in the files beside this one."]
    for line in example_config().splitlines():
        m = re.fullmatch(r"\[(\w+)\]", line)
        if m:
            section = m[1]
        m = re.fullmatch(r"(?:# )?(\w+) = .*", line)
        if m and (section, m[1]) in values and (section, m[1]) not in done:
            value = values[section, m[1]]
            line = line if line.startswith("# ") else f"# {line}"
            if value is not None:
                line = f"{m[1]} = {toml_literal(value)}"
            done.add((section, m[1]))
        out.append(line)
    missing = set(values) - done
    if missing:
        raise RuntimeError(f"example config lacks keys {sorted(missing)}")
    return "\n".join(header + out) + "\n"


def write_bundle(out_dir: str | Path, device: dict, site: dict, password: str,
                 release_key: str | None = None) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    out.chmod(0o700)
    atomic_write(out / PASSWORD, (password + "\n").encode())
    atomic_write(out / KEY, (device["provisioning_key"] + "\n").encode())
    if site.get("tls") and site.get("ca_file"):
        ca = Path(site["ca_file"])
        if not ca.is_file():
            raise FileNotFoundError(f"site {site['id']}: CA file {ca} not found")
        atomic_write(out / CA, ca.read_bytes())
    else:
        (out / CA).unlink(missing_ok=True)
    atomic_write(out / CONFIG, render_device_toml(device, site, release_key).encode())
    return out


def copy_bundle(src: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True, mode=0o700)
    dest.chmod(0o700)
    for name in (CONFIG, PASSWORD, KEY, CA):
        if (src / name).is_file():
            shutil.copyfile(src / name, dest / name)
            (dest / name).chmod(0o600)
