"""``siegel brand set|list|show|logo|assign``: brands from the command line (server.branding.service)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Callable, ContextManager

from server.branding.service import BUILT_IN, SETTABLE
from server.errors import Code, SiegelError

Services = Callable[[argparse.Namespace], ContextManager[Any]]
ACTOR = "cli"


def register(sub: Any, command: Callable[..., argparse.ArgumentParser], services: Services) -> None:
    """Add ``siegel brand …`` to the parser; ``services`` opens the application's services."""
    brand = sub.add_parser("brand", help="company brands: portal, e-mails, stamps, certificates"
                           ).add_subparsers(dest="sub", required=True, metavar="SUB")
    p = command("set", lambda a: _set(a, services), "create a brand or change the fields given", brand)
    p.add_argument("name", help="the brand's key: lower-case letters, digits and -")
    for field in SETTABLE:
        p.add_argument("--" + field.replace("_", "-"), dest=field, help="empty clears it" if field != "company_name"
                       else "required for a new brand")
    p.add_argument("--default", action="store_true", help="make it the default brand")
    command("list", lambda a: _list(a, services), "every brand (tab-separated: name, company, base URL, logo, "
            "default)", brand)
    p = command("show", lambda a: _show(a, services), "a brand as JSON", brand)
    p.add_argument("name")
    p = command("logo", lambda a: _logo(a, services), "check and store a brand's logo (PNG or SVG)", brand)
    p.add_argument("name")
    p.add_argument("file", nargs="?", type=Path, help="the logo file")
    p.add_argument("--remove", action="store_true", help="remove the logo instead")
    p = command("assign", lambda a: _assign(a, services), f"the brand of a workflow template or API client "
                f"({BUILT_IN!r} for the default)", brand)
    p.add_argument("name")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--template", help="a workflow template's name")
    target.add_argument("--client", help="an API client's key")


def _set(args: argparse.Namespace, services: Services) -> int:
    values = {f: getattr(args, f) for f in SETTABLE if getattr(args, f) is not None}
    with services(args) as s:
        info = s.brands.set(ACTOR, args.name, values, make_default=args.default)
    print(f"brand {info.name} saved{' (default)' if info.is_default else ''}")
    return 0


def _list(args: argparse.Namespace, services: Services) -> int:
    with services(args) as s:
        for b in s.brands.list():
            print(f"{b.name}\t{b.company_name}\t{b.public_base_url}\t{b.logo_type or '-'}\t"
                  f"{'default' if b.is_default else ''}")
    return 0


def _show(args: argparse.Namespace, services: Services) -> int:
    with services(args) as s:
        info = s.brands.get(args.name)
    print(json.dumps(info.public(), indent=2, ensure_ascii=False))
    return 0


def _logo(args: argparse.Namespace, services: Services) -> int:
    if args.remove == (args.file is not None):
        raise SiegelError(Code.BAD_REQUEST, "give the logo file, or --remove")
    with services(args) as s:
        if args.remove:
            s.brands.remove_logo(ACTOR, args.name)
            print(f"brand {args.name}: logo removed")
            return 0
        try:
            data = args.file.read_bytes()
        except OSError as exc:
            raise SiegelError(Code.BAD_REQUEST, f"logo {args.file}: cannot be read ({exc.strerror})") from None
        info = s.brands.set_logo(ACTOR, args.name, data)
    print(f"brand {info.name}: logo stored ({info.logo_type})")
    return 0


def _assign(args: argparse.Namespace, services: Services) -> int:
    kind, key = ("template", args.template) if args.template is not None else ("client", args.client)
    with services(args) as s:
        s.brands.assign(ACTOR, kind, key, args.name)
    print(f"{kind} {key}: brand {args.name}")
    return 0
