"""`hailong broker ...`: run the central service, manage API users and tokens, print an example config.

Output rule for scripts: the secret a command creates (a token, a generated password) is
the only thing on stdout; everything else (what was done, warnings) goes to stderr.
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path


def cmd_run(args) -> int:
    # Handlers before anything slow (the web stack takes a while to import): a SIGTERM
    # during start-up must still mean "stop cleanly", not die half-started.
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    from broker.api import ApiServerError
    from broker.config import load_config
    from broker.service import Service

    cfg = load_config(args.config)
    log = logging.getLogger("hailong.broker")
    embedded = None
    if cfg.mqtt.embedded:
        from broker.embedded import EmbeddedBroker, EmbeddedBrokerError

        try:
            embedded = EmbeddedBroker.from_config(cfg.mqtt).start()
        except EmbeddedBrokerError as e:
            print(f"hailong broker: {e}", file=sys.stderr)
            return 1
        log.info("embedded MQTT broker on %s:%s", cfg.mqtt.embedded_bind, embedded.port)
    try:
        service = Service.assemble(cfg)
    except RuntimeError as e:  # e.g. the session secret cannot be written in service.data_dir
        print(f"hailong broker: {e}", file=sys.stderr)
        if embedded is not None:
            embedded.stop()
        return 1
    api, ingest = service.api, service.ingest
    try:
        # Claim the port before connecting to MQTT: a second copy of the service started by
        # mistake must fail here, not first take over the running one's MQTT session.
        api.bind()
        ingest.start()
        if service.alerts is not None:
            service.alerts.start()
        api.start()
        log.info("service running: store %s, API on %s/api/v1/docs", service.store.name, api.url)
        rollouts = _rollout_ticker(service, cfg, log)
        while not stop.wait(0.2) and not ingest.failed.is_set() and not api.failed:
            rollouts()
    except ApiServerError as e:
        print(f"hailong broker: {e}", file=sys.stderr)
        return 1
    finally:
        service.close()
        if embedded is not None:
            embedded.stop()
    return 1 if ingest.failed.is_set() or api.failed else 0


def _rollout_ticker(service, cfg, log, every_s: float = 2.0):
    """A step of every running rollout each `every_s` (broker/fleet.py); trouble is logged, never fatal."""
    import time

    from broker import fleet

    due = [0.0]

    def tick() -> None:
        if time.monotonic() < due[0]:
            return
        due[0] = time.monotonic() + every_s
        try:
            fleet.tick(service.store, service.ingest, cfg, int(time.time() * 1000))
        except Exception:  # noqa: BLE001 - a rollout must never take the service down
            log.exception("rollout step failed")
    return tick


def cmd_release_add(args) -> int:
    """Publish a signed release folder (`hailong provision release build|sign`) on this service."""
    import time

    from broker import fleet
    from broker.config import load_config
    from broker.store import Store
    from common import release as rel

    cfg = load_config(args.config)
    key = rel.read_key(open(args.public_key).read(), args.public_key) if args.public_key else None
    with Store.open(cfg.store.url) as store:
        try:
            r = fleet.publish_release(store, args.folder, fleet.releases_dir(cfg), at_ms=int(time.time() * 1000),
                                      public_key=key)
        except (fleet.FleetError, rel.ReleaseError) as e:
            print(f"hailong broker release add: {e}", file=sys.stderr)
            return 1
    print(f"release {r['id']}: {r['files']} files, {r['bytes']} bytes; counters fetch it from "
          f"{fleet.release_url(cfg, r['id'])}")
    return 0


def cmd_rollout(args) -> int:
    """Start, list or stop rollouts on the store directly, as the API does (the running service steps them)."""
    import json
    import time

    from broker import fleet
    from broker.config import load_config
    from broker.store import Store

    cfg = load_config(args.config)
    now_ms = int(time.time() * 1000)
    with Store.open(cfg.store.url) as store:
        if args.rollout_command == "start":
            if store.release(args.release) is None:
                print(f"hailong broker rollout: no release {args.release!r} (see `release add`)", file=sys.stderr)
                return 1
            target = {k: v for k, v in (("site", args.site), ("devices", args.device or None),
                                        ("percent", args.percent)) if v is not None}
            try:
                members = fleet.members_of(store.devices(), target, args.waves, salt=args.release)
            except fleet.FleetError as e:
                print(f"hailong broker rollout: {e}", file=sys.stderr)
                return 1
            rid = store.add_rollout(args.release, target, args.waves, args.threshold, args.allow_downgrade,
                                    members, now_ms)
            print(f"rollout {rid}: {args.release} to {len(members)} devices in {args.waves} waves")
        elif args.rollout_command == "stop":
            r = store.rollout(args.id)
            if r is None:
                print(f"hailong broker rollout: no rollout {args.id}", file=sys.stderr)
                return 1
            if r["state"] == "running":
                store.save_rollout_step(args.id, state="stopped", wave=r["wave"], reason="stopped by an operator",
                                        devices={}, at_ms=now_ms)
            print(f"rollout {args.id}: {store.rollout(args.id)['state']}")
        else:
            for r in store.rollouts():
                print(json.dumps(store.rollout(r["id"]), ensure_ascii=False))
    return 0


def cmd_example_config(args) -> int:
    from broker.config import example_config

    sys.stdout.write(example_config())
    return 0


def _open_auth(args):
    from broker.auth import Auth
    from broker.config import load_config

    return Auth.from_config(load_config(args.config))


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    from datetime import datetime, timezone

    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def _cell(column: str, value) -> str:
    if column.endswith("_ms"):
        return _when(value)
    if column == "sites":
        return "*" if value is None else ",".join(value) or "-"
    return str(value)


def _print_table(rows: list[dict], columns: list[str], as_json: bool) -> None:
    if as_json:
        import json

        sys.stdout.write(json.dumps(rows, ensure_ascii=False, indent=2) + "\n")
        return
    cells = [[_cell(c, r[c]) for c in columns] for r in rows]
    heads = [c.removesuffix("_ms") for c in columns]
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(heads)]
    for row in [heads] + cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())


def cmd_user_add(args) -> int:
    from broker.auth import generate_password

    if args.password_stdin:
        line = sys.stdin.readline()
        password = line[:-1] if line.endswith("\n") else line
        if not password:
            print("hailong broker: --password-stdin: no password on stdin", file=sys.stderr)
            return 2
    else:
        password = generate_password()
    with _open_auth(args) as auth:
        auth.add_user(args.name, args.role, password, sites=args.site)
    what = f"user {args.name!r} ({args.role}, {_scope_text(args.site)}) added"
    if not args.password_stdin:
        print(password)
        print(f"{what}; the password above is shown only this once", file=sys.stderr)
    else:
        print(what, file=sys.stderr)
    return 0


def _scope_text(sites: list[str] | None) -> str:
    return "every site" if sites is None else "sites: " + (", ".join(sorted(set(sites))) or "none")


def cmd_set_sites(args) -> int:
    sites = None if args.all_sites else (args.site or [])
    with _open_auth(args) as auth:
        auth.set_sites(args.kind, args.name, sites)
    print(f"{args.kind} {args.name!r} now sees {_scope_text(sites)}", file=sys.stderr)
    return 0


def cmd_user_list(args) -> int:
    with _open_auth(args) as auth:
        _print_table(auth.list_users(), ["name", "role", "sites", "locked", "created_ms", "last_login_ms"], args.json)
    return 0


def cmd_token_create(args) -> int:
    from broker.auth import DISPLAY, AuthError, token_prefix

    with _open_auth(args) as auth:
        if args.role == DISPLAY:
            if len(args.site or ()) != 1:
                raise AuthError("a display token needs its site: give exactly one --site")
            token = auth.create_token(args.role, args.name, site=args.site[0])
        else:
            token = auth.create_token(args.role, args.name, sites=args.site)
    print(token)
    label = repr(args.name) if args.name else f"listed as {token_prefix(token)}"
    print(f"{args.role} token {label} ({_scope_text(args.site)}) created; it is shown only this once",
          file=sys.stderr)
    if args.role == DISPLAY:
        print(f"the hall display's address: http://<service>/hall/{args.site[0]}?key=<the token>", file=sys.stderr)
    return 0


def cmd_token_revoke(args) -> int:
    with _open_auth(args) as auth:
        for name in auth.revoke_token(args.name):
            print(f"token {name!r} revoked", file=sys.stderr)
    return 0


def cmd_token_list(args) -> int:
    with _open_auth(args) as auth:
        _print_table(auth.list_tokens(), ["name", "role", "site", "sites", "prefix", "revoked", "created_ms",
                                          "last_used_ms"],
                     args.json)
    return 0


def _site_option(p) -> None:
    p.add_argument("--site", action="append", metavar="SITE",
                   help="limit it to this site (repeat for several); without it: every site (province-wide)")


def _sites_command(add, parent, kind: str) -> None:
    p = add(parent, "sites", cmd_set_sites, f"change which sites a {kind} sees")
    p.add_argument("name")
    p.set_defaults(kind=kind)
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--site", action="append", metavar="SITE", help="only this site (repeat for several)")
    group.add_argument("--all-sites", action="store_true", help="every site (province-wide)")


def _auth_commands(sub) -> None:
    from broker.auth import DISPLAY, ROLES

    roles = list(reversed(ROLES))

    def add(parent, name, func, help):
        p = parent.add_parser(name, help=help)
        p.add_argument("--config", required=True, help="service TOML config file (the auth tables live in its store)")
        p.set_defaults(func=func)
        return p

    user = sub.add_parser("user", help="API and dashboard users").add_subparsers(dest="user_command", required=True)
    p = add(user, "add", cmd_user_add, "add a user; prints a generated password once unless --password-stdin")
    p.add_argument("name")
    p.add_argument("--role", required=True, choices=roles)
    p.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    _site_option(p)
    _sites_command(add, user, "user")
    p = add(user, "list", cmd_user_list, "list users")
    p.add_argument("--json", action="store_true")

    token = sub.add_parser("token", help="API tokens").add_subparsers(dest="token_command", required=True)
    p = add(token, "create", cmd_token_create, "create a token and print it (only it, only this once) on stdout")
    p.add_argument("--role", required=True, choices=[*roles, DISPLAY],
                   help="display: a hall display's token, which opens only /hall/SITE (one --site)")
    p.add_argument("--name", help="a name to list and revoke it by (default: role and prefix)")
    _site_option(p)
    p = add(token, "revoke", cmd_token_revoke, "revoke a token by name or by its listed prefix")
    p.add_argument("name")
    _sites_command(add, token, "token")
    p = add(token, "list", cmd_token_list, "list tokens (never their secrets)")
    p.add_argument("--json", action="store_true")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hailong broker", description="The central service.")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR (default INFO)")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the service: MQTT ingest, store and HTTP API")
    run.add_argument("--config", required=True, help="service TOML config file")
    run.set_defaults(func=cmd_run)
    ex = sub.add_parser("example-config", help="print a complete commented config")
    ex.set_defaults(func=cmd_example_config)
    _auth_commands(sub)
    release = sub.add_parser("release", help="fleet updates (docs/updates.md)").add_subparsers(
        dest="release_command", required=True)
    p = release.add_parser("add", help="publish a signed release folder")
    p.add_argument("folder", type=Path)
    p.add_argument("--config", required=True)
    p.add_argument("--public-key", metavar="FILE", help="refuse the folder unless this release key signed it")
    p.set_defaults(func=cmd_release_add)
    rollout = sub.add_parser("rollout", help="roll a release out in waves (docs/updates.md)").add_subparsers(
        dest="rollout_command", required=True)
    p = rollout.add_parser("start", help="start a rollout")
    p.add_argument("release", help="release id, e.g. 0.2.0-3.11-aarch64")
    p.add_argument("--site")
    p.add_argument("--device", action="append", help="a device to target (repeatable)")
    p.add_argument("--percent", type=float, help="share of the fleet (by a hash of the device id)")
    p.add_argument("--waves", type=int, default=3, choices=range(1, 21), metavar="N")
    p.add_argument("--threshold", type=float, default=0.2, help="stop when more than this share of a wave failed")
    p.add_argument("--allow-downgrade", action="store_true")
    p = rollout.add_parser("stop", help="stop a rollout")
    p.add_argument("id", type=int)
    p = rollout.add_parser("list", help="every rollout with its devices, one JSON object a line")
    for name in ("start", "stop", "list"):
        q = rollout.choices[name]
        q.add_argument("--config", required=True)
        q.set_defaults(func=cmd_rollout)
    return parser


def main(argv: list[str] | None = None) -> int:
    from broker.auth import AuthError
    from broker.store import StoreError
    from common.cli import dispatch

    # StoreError: e.g. a PostgreSQL server that cannot be reached, said in one line.
    return dispatch(build_parser(), argv, prog="hailong broker", errors={(AuthError,): 2, (StoreError,): 1})
