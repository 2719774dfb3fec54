"""The ``siegel`` command."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Callable

from server import __version__
from server.config import Settings, load
from server.errors import Code, SiegelError

# Exit codes follow sysexits.h, so scripts can tell the kinds of failure apart.
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_DATAERR = 65
EXIT_UNAVAILABLE = 69
EXIT_CONFIG = 78

_EXIT_BY_CODE = {
    Code.CONFIG: EXIT_CONFIG,
    Code.HSM_UNAVAILABLE: EXIT_UNAVAILABLE,
    Code.HSM_LOGIN: EXIT_UNAVAILABLE,
    Code.DATABASE: EXIT_UNAVAILABLE,
    Code.BAD_REQUEST: EXIT_DATAERR,
    Code.CONFLICT: EXIT_DATAERR,
    Code.NOT_FOUND: EXIT_DATAERR,
    Code.KEY_NOT_FOUND: EXIT_DATAERR,
}


def _settings(args: argparse.Namespace) -> Settings:
    return load(config_file=args.config, data_dir=args.data_dir)


def cmd_serve(args: argparse.Namespace) -> int:
    from server import logs
    from server.bootstrap import ensure_ready
    from server.serve import serve

    settings = _settings(args)
    logs.setup(settings.log.level, settings.log.format)
    ensure_ready(settings)
    serve(settings, args.host, args.port, args.workers)
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    from server.bootstrap import init

    for line in init(_settings(args)):
        print(line)
    return 0


def cmd_config_show(args: argparse.Namespace) -> int:
    for section, values in _settings(args).show().items():
        if section:
            print(f"\n[{section}]")
        for key, value in values.items():
            print(f"{key} = {json.dumps(value)}")
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from server.audit import AuditLog
    from server.db.engine import make_engine

    settings = _settings(args)
    count, fault = AuditLog(make_engine(settings.database_url)).verify()
    if fault is not None:
        print(f"audit log BROKEN after {count - 1} good entries: {fault}")
        return EXIT_FAILED
    print(f"audit log intact: {count} entries")
    return 0


def cmd_hsm_keys(args: argparse.Namespace) -> int:
    from server.app import open_hsm

    hsm = open_hsm(_settings(args))
    try:
        keys = hsm.list_keys()
    finally:
        hsm.close()
    if not keys:
        print("no keys on the token")
    for k in keys:
        print(f"{k.label}\t{k.kind}\textractable={str(k.extractable).lower()}\tsensitive={str(k.sensitive).lower()}")
    return 0


def cmd_user_add(args: argparse.Namespace) -> int:
    from server.app import build_services
    from server.db.engine import migrate

    if not args.password_stdin:
        raise SiegelError(Code.BAD_REQUEST, "give the password on standard input with --password-stdin")
    password = sys.stdin.readline().rstrip("\r\n")
    services = build_services(_settings(args))
    try:
        migrate(services.engine)
        user = services.users.add(args.name, args.email, args.role, password)
    finally:
        services.close()
    print(f"user {user.name} added (id {user.user_id}, role {user.role.value})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="siegel", description="Siegel signature server")
    parser.add_argument("--version", action="version", version=f"siegel {__version__}")
    parser.add_argument("--data-dir", type=Path, help="data directory (default $SIEGEL_DATA_DIR or ./var)")
    parser.add_argument("--config", type=Path, help="configuration file (default $SIEGEL_CONFIG)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler: Callable[[argparse.Namespace], int], help_: str,
                within: argparse._SubParsersAction | None = None) -> argparse.ArgumentParser:  # type: ignore[type-arg]
        p = (within or sub).add_parser(name, help=help_, description=help_)
        p.set_defaults(handler=handler)
        return p

    p = command("serve", cmd_serve, "run the HTTP server (initialises what is missing first)")
    p.add_argument("--host", help="listen address (setting server.host)")
    p.add_argument("--port", type=int, help="listen port (setting server.port)")
    p.add_argument("--workers", type=int, help="worker processes sharing the port (setting server.workers)")
    command("init", cmd_init, "create what is missing: data directory, HSM token, database schema")

    cfg = sub.add_parser("config", help="configuration").add_subparsers(dest="sub", required=True, metavar="SUB")
    command("show", cmd_config_show, "print the effective settings, secrets masked", cfg)
    aud = sub.add_parser("audit", help="audit log").add_subparsers(dest="sub", required=True, metavar="SUB")
    command("verify", cmd_audit_verify, "check the hash chain; names the first altered, inserted or deleted entry", aud)
    hsm = sub.add_parser("hsm", help="hardware security module").add_subparsers(dest="sub", required=True, metavar="SUB")
    command("keys", cmd_hsm_keys, "list the keys on the token", hsm)
    usr = sub.add_parser("user", help="accounts").add_subparsers(dest="sub", required=True, metavar="SUB")
    p = command("add", cmd_user_add, "add an account; the password is read from standard input", usr)
    p.add_argument("name")
    p.add_argument("--email", required=True)
    p.add_argument("--role", required=True, choices=["admin", "signer", "integration"])
    p.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    return parser


def main(argv: list[str] | None = None) -> int:
    os.umask(0o077)  # database, store, token and secrets are the server's alone
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except SiegelError as exc:
        print(f"siegel: error: {exc.message}", file=sys.stderr)
        return _EXIT_BY_CODE.get(exc.code, EXIT_FAILED)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
