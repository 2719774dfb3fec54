"""Brands: a company's name, logo, colours, footer links, public base URL, mail sender and support contact.

Several brands can exist; one may be marked the default (``siegel brand set NAME --default``), and without one
the ``[branding]`` settings are the default brand (named :data:`BUILT_IN`, with no logo). A workflow takes its
brand when it starts: the brand of the API client that starts it, else its template's, else the default; the
portal shows the brand whose public base URL has the request's host name (so each company is served under its
own address), else the default. Every change is one transaction with its audit entry ``brand.*``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from typing import Any, Callable
from urllib.parse import urlsplit

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session, sessionmaker

from server.audit import AuditLog
from server.branding.logo import CheckedLogo, LogoLimits, check_logo
from server.config import BrandingSettings
from server.db.models import ApiClient, Brand, Workflow, WorkflowTemplate
from server.errors import Code, SiegelError
from server.signing.order import Format, SignOrder, StampBrand

BUILT_IN = "default"
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
_COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$")
_ADDRESS = re.compile(r"^[^@\s<>\"]+@[^@\s<>\"]+$")
_URL = re.compile(r"^https?://[^/\s\"'<>]+(/[^\s\"'<>]*)?$")


@dataclass(frozen=True)
class BrandInfo:
    """A brand as the pages, mails and stamps use it; ``id`` is None for the built-in default."""

    id: int | None
    name: str
    company_name: str
    primary_color: str  # #rrggbb: the header bar, buttons, the stamp's border
    accent_color: str  # links and highlights
    text_color: str  # text on the primary colour
    public_base_url: str  # links in mails and on stamps start with it (no trailing slash)
    imprint_url: str | None
    privacy_url: str | None
    mail_from_name: str
    mail_from_address: str
    support_contact: str | None
    logo_type: str | None  # image/png | image/svg+xml; None: no logo
    logo_version: str  # changes with the logo (cache buster of its URL)
    is_default: bool

    def public(self) -> dict[str, Any]:
        """As ``siegel brand show`` and the JSON answers give it."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "id"}


#: What ``set`` takes: field name → (kind of value, longest length).
SETTABLE: dict[str, tuple[str, int]] = {
    "company_name": ("text", 200), "primary_color": ("colour", 7), "accent_color": ("colour", 7),
    "text_color": ("colour", 7), "public_base_url": ("url", 500), "imprint_url": ("url", 500),
    "privacy_url": ("url", 500), "mail_from_name": ("text", 200), "mail_from_address": ("address", 320),
    "support_contact": ("text", 320)}


def _check(name: str, value: str | None) -> str | None:
    """A field's value as stored (empty: None), or BAD_REQUEST naming the field and the expected form."""
    kind, limit = SETTABLE[name]
    if value is None or not value.strip():
        if name == "company_name":
            raise SiegelError(Code.BAD_REQUEST, "company_name: a brand needs a company name")
        return None
    value = value.strip()
    forms = {"colour": (_COLOUR, "a colour #rrggbb"), "url": (_URL, "an http:// or https:// URL"),
             "address": (_ADDRESS, "an e-mail address such as sign@example.com")}
    if len(value) > limit or kind == "text" and any(ord(c) < 32 for c in value) or \
            kind in forms and not forms[kind][0].match(value):
        form = forms[kind][1] if kind in forms else f"a text of at most {limit} characters on one line"
        raise SiegelError(Code.BAD_REQUEST, f"{name}: expected {form}, not {value[:80]!r}")
    if kind == "colour":
        return value.lower()
    if name == "public_base_url":
        return value.rstrip("/")
    return value


class BrandService:
    def __init__(self, engine: Engine, audit: AuditLog, settings: BrandingSettings, public_base_url: str,
                 mail_sender: str, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._audit = audit
        self._settings = settings
        self._base = public_base_url.rstrip("/")
        self._sender = mail_sender
        self._clock = clock
        self.limits = LogoLimits(settings.max_logo_bytes, settings.max_logo_width, settings.max_logo_height)

    # --- reading -----------------------------------------------------------------------------------

    def built_in(self) -> BrandInfo:
        """The default brand of the configuration ([branding]); no logo."""
        s = self._settings
        return BrandInfo(None, BUILT_IN, s.company_name, s.primary_color.lower(), s.accent_color.lower(),
                         s.text_color.lower(), self._base, s.imprint_url or None, s.privacy_url or None,
                         s.company_name, self._sender, s.support_contact or None, None, "0", True)

    def _info(self, row: Brand) -> BrandInfo:
        return BrandInfo(row.id, row.name, row.company_name, row.primary_color, row.accent_color, row.text_color,
                         row.public_base_url or self._base, row.imprint_url, row.privacy_url,
                         row.mail_from_name or row.company_name, row.mail_from_address or self._sender,
                         row.support_contact, row.logo_type,
                         hashlib.sha256(row.logo).hexdigest()[:16] if row.logo else "0", row.is_default)

    def list(self) -> list[BrandInfo]:
        with self._sessions() as session:
            rows = session.execute(select(Brand).order_by(Brand.name)).scalars().all()
            infos = [self._info(row) for row in rows]
        return infos if any(i.is_default for i in infos) else [self.built_in(), *infos]

    def get(self, name: str) -> BrandInfo:
        """The brand named ``name`` (``default`` without a brand of that name: the default brand)."""
        with self._sessions() as session:
            row = session.execute(select(Brand).where(Brand.name == name)).scalar_one_or_none()
            if row is not None:
                return self._info(row)
        if name == BUILT_IN:
            return self.default()
        raise SiegelError(Code.NOT_FOUND, f"there is no brand {name!r}")

    def default(self) -> BrandInfo:
        with self._sessions() as session:
            row = session.execute(select(Brand).where(Brand.is_default.is_(True))).scalar_one_or_none()
            return self._info(row) if row is not None else self.built_in()

    def by_id(self, brand_id: int | None) -> BrandInfo:
        """The brand a workflow, template or client refers to; None (or a deleted one): the default."""
        if brand_id is not None:
            with self._sessions() as session:
                row = session.get(Brand, brand_id)
                if row is not None:
                    return self._info(row)
        return self.default()

    def for_host(self, host: str | None) -> BrandInfo:
        """The brand served under ``host`` (the request's Host header, port included or not), else the default."""
        wanted = (host or "").strip().lower()
        if wanted:
            with self._sessions() as session:
                for row in session.execute(select(Brand).where(Brand.public_base_url.is_not(None))).scalars():
                    url = urlsplit(row.public_base_url or "")
                    if wanted in ((url.netloc or "").lower(), (url.hostname or "").lower()):
                        return self._info(row)
        return self.default()

    def for_client(self, client_key: str | None) -> BrandInfo | None:
        """The brand assigned to the API client ``client_key`` (None: no client, or one without a brand)."""
        if client_key is None:
            return None
        with self._sessions() as session:
            brand_id = session.execute(select(ApiClient.brand_id).where(ApiClient.client_key == client_key)
                                       ).scalar_one_or_none()
        return self.by_id(brand_id) if brand_id is not None else None

    def for_request(self, client_key: str | None, host: str | None) -> BrandInfo:
        """The brand of what a request gets (a report, a mail): its API client's, else its host's, else the
        default."""
        return self.for_client(client_key) or self.for_host(host)

    def stamp(self, brand: BrandInfo) -> StampBrand:
        """The brand's look on the default visible signature stamp."""
        return StampBrand(self.logo_png(brand), brand.primary_color, brand.public_base_url)

    def client_stamp(self, order: SignOrder, client_key: str | None) -> SignOrder:
        """``order`` with the default stamp of its API client's brand, when it is a PAdES order that names no
        appearance or brand of its own and the client has a brand; else ``order`` as it is."""
        if order.format is not Format.PADES or order.pdf.appearance is not None or order.pdf.brand is not None:
            return order
        brand = self.for_client(client_key)
        return order if brand is None else replace(order, pdf=replace(order.pdf, brand=self.stamp(brand)))

    def for_workflow(self, workflow_id: int) -> BrandInfo:
        with self._sessions() as session:
            workflow = session.get(Workflow, workflow_id)
            brand_id = workflow.brand_id if workflow is not None else None
        return self.by_id(brand_id)

    def logo(self, name: str) -> tuple[bytes, str] | None:
        """The logo as the portal serves it (content, MIME type), or None."""
        with self._sessions() as session:
            row = session.execute(select(Brand).where(Brand.name == name)).scalar_one_or_none()
            if row is None or row.logo is None or row.logo_type is None:
                return None
            return row.logo, row.logo_type

    def logo_png(self, brand: BrandInfo) -> bytes | None:
        """The logo as PNG (stamps, e-mails), or None."""
        if brand.id is None:
            return None
        with self._sessions() as session:
            row = session.get(Brand, brand.id)
            return row.logo_png if row is not None else None

    @staticmethod
    def choose_in(session: Session, template_id: int, client_key: str | None) -> int | None:
        """The brand of a workflow starting now: its API client's, else its template's (None: the default)."""
        if client_key is not None:
            brand_id = session.execute(select(ApiClient.brand_id).where(ApiClient.client_key == client_key)
                                       ).scalar_one_or_none()
            if brand_id is not None:
                return brand_id
        return session.execute(select(WorkflowTemplate.brand_id).where(WorkflowTemplate.id == template_id)
                               ).scalar_one_or_none()

    # --- changing ----------------------------------------------------------------------------------

    def set(self, actor: str, name: str, values: dict[str, str | None], make_default: bool = False) -> BrandInfo:
        """Create brand ``name`` or change the given fields; ``make_default`` makes it the default brand."""
        if not _NAME.match(name or ""):
            raise SiegelError(Code.BAD_REQUEST, f"brand name {name!r}: expected lower-case letters, digits and - "
                                                "(at most 64, starting with a letter or digit)")
        unknown = set(values) - set(SETTABLE)
        if unknown:
            raise SiegelError(Code.BAD_REQUEST, f"unknown brand fields {', '.join(sorted(unknown))} "
                                                f"(known: {', '.join(SETTABLE)})")
        checked = {key: _check(key, value) for key, value in values.items()}
        with self._sessions.begin() as session:
            row = session.execute(select(Brand).where(Brand.name == name).with_for_update()).scalar_one_or_none()
            created = row is None
            if row is None:
                if "company_name" not in checked:
                    raise SiegelError(Code.BAD_REQUEST, f"brand {name!r} is new: give its company name")
                s = self._settings
                row = Brand(name=name, primary_color=s.primary_color.lower(), accent_color=s.accent_color.lower(),
                            text_color=s.text_color.lower(), is_default=False)
                session.add(row)
            for key, value in checked.items():
                setattr(row, key, value)
            row.updated_at = self._clock()
            if make_default:
                session.execute(update(Brand).where(Brand.name != name).values(is_default=False))
                row.is_default = True
            session.flush()
            self._audit.append_in(session, actor, "brand.create" if created else "brand.update", f"brand:{name}",
                                  fields=sorted(checked), default=row.is_default)
            return self._info(row)

    def set_logo(self, actor: str, name: str, data: bytes) -> BrandInfo:
        """Check the logo (:func:`server.branding.logo.check_logo`) and store it; nothing changes if it fails."""
        checked: CheckedLogo = check_logo(data, self.limits)
        with self._sessions.begin() as session:
            row = self._row(session, name)
            row.logo, row.logo_type, row.logo_png = checked.content, checked.mime_type, checked.png
            row.updated_at = self._clock()
            self._audit.append_in(session, actor, "brand.logo", f"brand:{name}", type=checked.mime_type,
                                  sha256=hashlib.sha256(checked.content).hexdigest(), uploaded=len(data))
            return self._info(row)

    def remove_logo(self, actor: str, name: str) -> BrandInfo:
        with self._sessions.begin() as session:
            row = self._row(session, name)
            row.logo = row.logo_type = row.logo_png = None
            row.updated_at = self._clock()
            self._audit.append_in(session, actor, "brand.logo-remove", f"brand:{name}")
            return self._info(row)

    def assign(self, actor: str, kind: str, key: str, name: str | None) -> None:
        """Give a workflow template (``kind`` template, by name) or an API client (``client``, by key) brand
        ``name`` (None or ``default``: the default brand); nothing changes when either is unknown."""
        model, column = {"template": (WorkflowTemplate, WorkflowTemplate.name),
                         "client": (ApiClient, ApiClient.client_key)}[kind]
        with self._sessions.begin() as session:
            brand_id = self.id_in(session, name)
            target = session.execute(select(model).where(column == key)).scalar_one_or_none()
            if target is None:
                what = "workflow template" if kind == "template" else "API client"
                raise SiegelError(Code.NOT_FOUND, f"there is no {what} {key!r}")
            target.brand_id = brand_id
            self._audit.append_in(session, actor, "brand.assign", f"{kind}:{key}", brand=name or BUILT_IN)

    @staticmethod
    def id_in(session: Session, name: Any) -> int | None:
        """The id to store for brand ``name`` given by a request (None, or ``default`` while no brand has that
        name: the default brand, stored as None); NOT_FOUND naming it when there is no such brand."""
        if name is None:
            return None
        if not isinstance(name, str):
            raise SiegelError(Code.BAD_REQUEST, "brand: expected a brand's name, or null for the default brand")
        row = session.execute(select(Brand).where(Brand.name == name)).scalar_one_or_none()
        if row is not None:
            return row.id
        if name == BUILT_IN:
            return None
        raise SiegelError(Code.NOT_FOUND, f"there is no brand {name!r} (create it with siegel brand set)")

    @staticmethod
    def name_in(session: Session, brand_id: int | None) -> str | None:
        """The name of the brand ``brand_id`` (None: the default brand, or one deleted)."""
        row = session.get(Brand, brand_id) if brand_id is not None else None
        return row.name if row is not None else None

    @staticmethod
    def _row(session: Session, name: str | None) -> Brand:
        row = session.execute(select(Brand).where(Brand.name == name).with_for_update()).scalar_one_or_none()
        if row is None:
            raise SiegelError(Code.NOT_FOUND, f"there is no brand {name!r} (create it with siegel brand set)")
        return row
