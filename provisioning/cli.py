"""`hailong provision ...`: the technician's tool. Never prompts: every secret it needs comes
from a file argument, and every secret it makes is written to a 0600 file (or, once, the
service account's password to stdout).

    provision site add SITE --broker-host H [--port 1883] [--also-broker H:P ...] [--tls --ca-file F] [--prefix P]
    provision site list
    provision device add --site SITE --counter N [--id ID] [--out DIR]
                         [--service-url URL --token-file F]
    provision device list
    provision device bundle ID [--out DIR] [--keep-password-file F]
    provision device rotate ID [--out DIR]
    provision device revoke ID
    provision device register ID --service-url URL --token-file F
    provision mosquitto export DIR [--service-password-file F]
    provision boot write BOOTFS --device ID [--bundle DIR] [--wheels DIR]
    provision wheels --out DIR [--python 3.11 3.13]   (provisioning.wheelbuild)
    provision release key|build|sign                  (provisioning.release, docs/updates.md)
    provision serial ... / provision badge ...   (provisioning.serial_client)

Every command takes --inventory DIR (default $XDG_DATA_HOME/hailong or ~/.local/share/hailong).
After each change the broker's files are regenerated in INVENTORY/mosquitto/ and the
service's import file in INVENTORY/registry.json. See docs/provisioning.md.
"""
from __future__ import annotations

import argparse
import importlib
import json
import shutil
import sys
from pathlib import Path

from provisioning import credentials, release, service_api, wheelbuild
from provisioning.inventory import Inventory, InventoryError, atomic_write, broker_list, default_inventory_dir

PROG = "hailong provision"


class CliError(Exception):
    """A clear one-line failure: printed without a traceback, exit 1."""


# --- shared steps ---------------------------------------------------------------------------

def _bundle_dir(inv: Inventory, device_id: str, out: str | None) -> Path:
    if out:
        return Path(out)
    (inv.dir / "bundles").mkdir(mode=0o700, exist_ok=True)
    return inv.dir / "bundles" / device_id


def _refresh(inv: Inventory) -> None:
    """Regenerate the broker's files and the service's registry.json from the inventory."""
    from provisioning.mosquitto_files import write_mosquitto_files

    passwd, acl = write_mosquitto_files(inv, inv.dir / "mosquitto")
    write_registry(inv)
    print(f"broker files: {passwd} and {acl}; install them and `systemctl reload mosquitto`")
    if inv.service_account() is None:
        print(f"note: no service account yet: run `{PROG} mosquitto export DIR` to create {credentials.SERVICE_USER}")


def write_registry(inv: Inventory) -> Path:
    """INVENTORY/registry.json: what the service needs to know about each device; each entry
    is the body of PUT /api/v1/devices/{id}, plus the id."""
    data = {
        "format": 1,
        "devices": [{"id": d["id"], "site": d["site"], "counter": d["counter"]} for d in inv.active_devices()],
        "revoked": sorted(d["id"] for d in inv.devices.all() if d["revoked"]),
    }
    path = inv.dir / "registry.json"
    atomic_write(path, (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode(), mode=0o644)
    return path


def register_with_service(url: str, token_file: str, device: dict, transport=None) -> dict:
    """PUT {url}/api/v1/devices/{id} with {"site", "counter"}, as an admin token."""
    token = _secret(token_file, "--token-file")
    try:
        return service_api.call("PUT", url, f"/devices/{device['id']}", token,
                                {"site": device["site"], "counter": str(device["counter"])}, transport=transport)
    except service_api.ServiceError as e:
        raise CliError(f"could not register {device['id']}: {e}") from None


def _secret(path: str, option: str) -> str:
    try:
        return credentials.read_secret(path)
    except (OSError, ValueError) as e:
        raise CliError(f"{option}: cannot read a secret from {path}: {e}") from None


def _write_bundle(inv: Inventory, device: dict, password: str, out: str | None) -> Path:
    from provisioning.bundle import write_bundle

    default = _bundle_dir(inv, device["id"], None)
    if out and default.exists() and default.resolve() != Path(out).resolve():
        shutil.rmtree(default)  # its password is no longer valid: never let `boot write` use it
    try:
        return write_bundle(_bundle_dir(inv, device["id"], out), device, inv.site(device["site"]), password,
                            release_key=release.public_key_text(inv.dir))
    except FileNotFoundError as e:
        raise CliError(str(e)) from None


# --- commands ---------------------------------------------------------------------------------

def cmd_site_add(inv: Inventory, args) -> int:
    if args.tls and not args.ca_file:
        print("note: --tls without --ca-file: counters verify the broker with the system trust store")
    if args.ca_file and not args.tls:
        raise CliError("--ca-file needs --tls")
    ca = None
    if args.ca_file:
        ca_path = Path(args.ca_file).resolve()
        if not ca_path.is_file():
            raise CliError(f"--ca-file {args.ca_file}: not found")
        ca = str(ca_path)
    from common.configschema import is_topic_prefix

    if not is_topic_prefix(args.prefix):
        raise CliError(f"--prefix {args.prefix!r} is not a valid topic prefix")
    also = _also_brokers(args)
    site = inv.add_site(args.site, args.broker_host, args.port, args.tls, ca, args.prefix, also_brokers=also)
    print(f"site {site['id']}: broker {' '.join(broker_list(site))}"
          f"{' (TLS)' if site['tls'] else ''}, prefix {site['prefix']}")
    return 0


def _also_brokers(args) -> list[str]:
    """The site's further brokers (docs/brokers.md), checked as the counter's config will check them."""
    from common.configschema import broker_address

    also = list(args.also_broker or [])
    for entry in also:
        if broker_address(entry) is None:
            raise CliError(f"--also-broker {entry!r}: expected HOST:PORT (an IPv6 host in brackets)")
    return also


def cmd_site_list(inv: Inventory, args) -> int:
    for s in sorted(inv.sites.all(), key=lambda s: s["id"]):
        print(f"{s['id']}\t{' '.join(broker_list(s))}\t{'tls' if s['tls'] else 'plain'}\t{s['prefix']}")
    return 0


def cmd_device_add(inv: Inventory, args) -> int:
    if bool(args.service_url) != bool(args.token_file):
        raise CliError("--service-url and --token-file go together")
    device_id = args.id or f"hl-{args.site}-c{args.counter}"
    if not credentials.USERNAME_RE.fullmatch(device_id):
        raise CliError(f"device id {device_id!r}: 1..64 of A-Z a-z 0-9 _ . - starting with a letter or digit")
    password = credentials.new_password()
    device = inv.add_device(device_id, args.site, str(args.counter), credentials.hash_password(password),
                            credentials.new_provisioning_key())
    bundle = _write_bundle(inv, device, password, args.out)
    print(f"device {device_id}: site {device['site']}, counter {device['counter']}")
    print(f"bundle: {bundle} (device.toml, mqtt-password, provisioning-key)")
    _refresh(inv)
    if args.service_url:
        register_with_service(args.service_url, args.token_file, device)
        print(f"registered {device_id} with {args.service_url}")
    else:
        print(f"service: import {inv.dir / 'registry.json'} or run `{PROG} device register {device_id} ...`")
    return 0


def cmd_device_list(inv: Inventory, args) -> int:
    for d in sorted(inv.devices.all(), key=lambda d: d["id"]):
        state = f"revoked {d['revoked_at']}" if d["revoked"] else f"active (password {d['rotated'] or d['created']})"
        print(f"{d['id']}\t{d['site']}\t{d['counter']}\t{state}")
    return 0


def cmd_device_bundle(inv: Inventory, args) -> int:
    device = inv.active_device(args.device)
    if args.keep_password_file:
        password = _secret(args.keep_password_file, "--keep-password-file")
        if not credentials.verify_password(password, device["password_hash"]):
            raise CliError(f"--keep-password-file: that is not {device['id']}'s current password")
        bundle = _write_bundle(inv, device, password, args.out)
        print(f"bundle: {bundle} (same password as before)")
        return 0
    return _rotate(inv, device, args.out, why="bundle")


def cmd_device_rotate(inv: Inventory, args) -> int:
    return _rotate(inv, inv.active_device(args.device), args.out, why="rotate")


def _rotate(inv: Inventory, device: dict, out: str | None, why: str) -> int:
    password = credentials.new_password()
    inv.set_password_hash(device["id"], credentials.hash_password(password))
    bundle = _write_bundle(inv, inv.device(device["id"]), password, out)
    if why == "bundle":
        print(f"passwords are stored only as hashes, so this bundle has a NEW password for {device['id']} "
              "(pass --keep-password-file to reuse the current one)")
    print(f"device {device['id']}: NEW MQTT password; the old one is refused once the broker reloads")
    print(f"bundle: {bundle}: install it on the counter (/etc/hailong), then reload mosquitto")
    _refresh(inv)
    return 0


def cmd_device_revoke(inv: Inventory, args) -> int:
    inv.revoke(args.device)
    print(f"device {args.device}: revoked; it is refused once the broker reloads")
    _refresh(inv)
    return 0


def cmd_device_register(inv: Inventory, args) -> int:
    device = inv.active_device(args.device)
    register_with_service(args.service_url, args.token_file, device)
    print(f"registered {device['id']} with {args.service_url}")
    return 0


def cmd_mosquitto_export(inv: Inventory, args) -> int:
    from provisioning.mosquitto_files import write_mosquitto_files

    account = inv.service_account()
    if args.service_password_file:
        password = _secret(args.service_password_file, "--service-password-file")
        inv.set_service_account(credentials.SERVICE_USER, credentials.hash_password(password))
        print(f"service account {credentials.SERVICE_USER}: password from {args.service_password_file}")
    elif account is None:
        password = credentials.new_password()
        inv.set_service_account(credentials.SERVICE_USER, credentials.hash_password(password))
        print(f"service account {credentials.SERVICE_USER} created; its MQTT password, shown only this once "
              "(put it in the service's mqtt password file):")
        print(password)
    passwd, acl = write_mosquitto_files(inv, args.dir)
    print(f"wrote {passwd} and {acl}")
    return 0


def cmd_boot_write(inv: Inventory, args) -> int:
    from provisioning.bootfs import DIR, STATUS, BootfsError, write_bootfs

    device = inv.active_device(args.device)
    bundle = Path(args.bundle) if args.bundle else _bundle_dir(inv, device["id"], None)
    if not (bundle / "device.toml").is_file() or not (bundle / "mqtt-password").is_file():
        raise CliError(f"no bundle for {device['id']} at {bundle}: pass --bundle DIR, or make a new one with "
                       f"`{PROG} device bundle {device['id']}`")
    try:
        changed = write_bootfs(args.bootfs, bundle, Path(args.wheels) if args.wheels else None)
    except BootfsError as e:
        raise CliError(str(e)) from None
    for line in changed:
        print(f"{args.bootfs}: {line}")
    if not args.wheels:
        print("note: no --wheels: the first boot installs nothing and waits for hailong in /opt/hailong/.venv "
              f"(see {DIR}/{STATUS} on the card); make a wheelhouse with `{PROG} wheels --out DIR`")
    print("eject the card, put it in the counter and power it on; the first boot installs hailong and reboots")
    return 0


def _external(name: str):
    def run(inv: Inventory | None, args) -> int:
        # Imported only when asked for: the other commands do not pay for the serial client.
        module = importlib.import_module("provisioning.serial_client")
        # Its own parser reads the rest of the command line (it also accepts a Namespace).
        if name != "serial":
            return int(module.main_badge(list(args.rest)) or 0)
        inv = Inventory(Path(args.inventory) if args.inventory else default_inventory_dir())
        try:
            # Self-test tables are kept in the inventory; bundles default to the inventory's.
            return int(module.main_serial(list(args.rest), record=inv.record_selftest,
                                          bundles_dir=inv.dir / "bundles") or 0)
        finally:
            inv.close()
    return run


# --- parser -----------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--inventory", metavar="DIR", default=argparse.SUPPRESS,
                        help=f"inventory folder (default {default_inventory_dir()})")
    p = argparse.ArgumentParser(prog=PROG, description="Provision sites, counters' credentials and SD cards.",
                                parents=[common])
    areas = p.add_subparsers(dest="area", required=True, metavar="{site,device,mosquitto,boot,wheels,release,serial,badge}")

    site = areas.add_parser("site", help="sites and their broker").add_subparsers(dest="cmd", required=True)
    s = site.add_parser("add", parents=[common], help="add or update a site")
    s.add_argument("site")
    s.add_argument("--broker-host", required=True)
    s.add_argument("--port", type=int, default=1883)
    s.add_argument("--also-broker", action="append", metavar="HOST:PORT",
                   help="a further independent broker the counters fail over to (repeatable; docs/brokers.md)")
    s.add_argument("--tls", action="store_true")
    s.add_argument("--ca-file")
    s.add_argument("--prefix", default="hailong/v1")
    s.set_defaults(func=cmd_site_add)
    site.add_parser("list", parents=[common]).set_defaults(func=cmd_site_list)

    dev = areas.add_parser("device", help="counters' devices").add_subparsers(dest="cmd", required=True)
    d = dev.add_parser("add", parents=[common], help="new device: credentials, bundle, broker files")
    d.add_argument("--site", required=True)
    d.add_argument("--counter", required=True)
    d.add_argument("--id")
    d.add_argument("--out", metavar="DIR", help="bundle folder (default INVENTORY/bundles/ID)")
    d.add_argument("--service-url")
    d.add_argument("--token-file")
    d.set_defaults(func=cmd_device_add)
    dev.add_parser("list", parents=[common]).set_defaults(func=cmd_device_list)
    d = dev.add_parser("bundle", parents=[common], help="write the bundle again (a NEW password unless "
                                                         "--keep-password-file)")
    d.add_argument("device")
    d.add_argument("--out", metavar="DIR")
    d.add_argument("--keep-password-file", metavar="F")
    d.set_defaults(func=cmd_device_bundle)
    d = dev.add_parser("rotate", parents=[common], help="new MQTT password and bundle")
    d.add_argument("device")
    d.add_argument("--out", metavar="DIR")
    d.set_defaults(func=cmd_device_rotate)
    d = dev.add_parser("revoke", parents=[common], help="remove a device from the broker's files")
    d.add_argument("device")
    d.set_defaults(func=cmd_device_revoke)
    d = dev.add_parser("register", parents=[common], help="tell the central service about a device")
    d.add_argument("device")
    d.add_argument("--service-url", required=True)
    d.add_argument("--token-file", required=True)
    d.set_defaults(func=cmd_device_register)

    mq = areas.add_parser("mosquitto", help="the broker's files").add_subparsers(dest="cmd", required=True)
    m = mq.add_parser("export", parents=[common], help="write passwd and acl into DIR")
    m.add_argument("dir")
    m.add_argument("--service-password-file", metavar="F")
    m.set_defaults(func=cmd_mosquitto_export)

    boot = areas.add_parser("boot", help="SD cards").add_subparsers(dest="cmd", required=True)
    b = boot.add_parser("write", parents=[common], help="prepare a flashed card's boot partition")
    b.add_argument("bootfs")
    b.add_argument("--device", required=True)
    b.add_argument("--bundle", metavar="DIR", help="default INVENTORY/bundles/ID")
    b.add_argument("--wheels", metavar="DIR", help="offline wheelhouse (`provision wheels --out DIR`) to put on the card")
    b.set_defaults(func=cmd_boot_write)

    wheelbuild.add_parser(areas, common)
    release.add_parser(areas, common)

    for name, text in (("serial", "talk to a counter over its serial console"),
                       ("badge", "officer badges over the serial console")):
        x = areas.add_parser(name, parents=[common], help=text)
        x.add_argument("rest", nargs=argparse.REMAINDER)
        x.set_defaults(func=_external(name))
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["provision"]:
        argv = argv[1:]
    # serial and badge: everything after the word belongs to provisioning.serial_client's parser.
    head = argv[:2] if argv[:1] == ["--inventory"] else argv[:1] if argv[:1] and argv[0].startswith("--inventory=") else []
    rest = argv[len(head):]
    if rest[:1] in (["serial"], ["badge"]):
        where = head[1] if len(head) == 2 else head[0].split("=", 1)[1] if head else None
        return _external(rest[0])(None, argparse.Namespace(rest=rest[1:], inventory=where))
    args = build_parser().parse_args(argv)
    inv = None
    try:
        where = getattr(args, "inventory", None)
        if getattr(args, "needs_inventory", True):
            inv = Inventory(Path(where) if where else default_inventory_dir())
        return args.func(inv, args)
    except (CliError, InventoryError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    finally:
        if inv is not None:
            inv.close()


if __name__ == "__main__":
    sys.exit(main())
