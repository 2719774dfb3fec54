"""The templates of branded pages and mails: the shipped ones in ``config/templates/``, each replaceable by a
file of the same name in the operator's folder ``branding.templates`` (in the data directory). Jinja2 with
autoescaping for HTML; plain-text templates (``*.txt``) are not escaped."""

from __future__ import annotations

from pathlib import Path

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, select_autoescape

SHIPPED = Path(__file__).resolve().parent.parent.parent / "config" / "templates"


def loader(operator_folder: Path, sub: str, *fallback: Path) -> ChoiceLoader:
    """Templates of ``sub`` (portal, mail): the operator's first, then the shipped ones, then ``fallback``."""
    return ChoiceLoader([FileSystemLoader(str(operator_folder / sub)), FileSystemLoader(str(SHIPPED / sub)),
                         *(FileSystemLoader(str(f)) for f in fallback)])


def environment(operator_folder: Path, sub: str, *fallback: Path) -> Environment:
    return Environment(loader=loader(operator_folder, sub, *fallback), trim_blocks=True, lstrip_blocks=True,
                       autoescape=select_autoescape(enabled_extensions=("html", "xml"), default=False))
