"""Workflow templates and their versions: every change is a new immutable version, so a running workflow keeps
the definition it started with; a retired template starts no new workflows. A template's brand (the look of its
workflows' pages, mails and stamps, server.branding) belongs to the template, not to a version."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Callable

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from server.audit import AuditLog
from server.branding.service import BUILT_IN, BrandService
from server.db.models import WorkflowTemplate, WorkflowTemplateVersion
from server.errors import Code, SiegelError
from server.identity.users import Principal
from server.workflows.template import Definition, parse_definition


class Keep(Enum):
    """An update's brand when the request names none: the template keeps its brand."""

    BRAND = "keep"


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise SiegelError(Code.BAD_REQUEST, "name: expected a template name of 1 to 200 characters")
    return name.strip()


class TemplateRepository:
    def __init__(self, engine: Engine, audit: AuditLog, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._audit = audit
        self._clock = clock
        self._parsed: dict[tuple[int, int], Definition] = {}  # versions never change: safe to keep
        self._lock = threading.Lock()

    def create(self, principal: Principal, name: Any, definition: Any, brand: Any = None) -> dict[str, Any]:
        """Version 1 of a new template, of brand ``brand`` (a brand's name; None: the default brand)."""
        checked = parse_definition(definition)
        name = _check_name(name)
        now = self._clock()
        try:
            with self._sessions.begin() as session:
                template = WorkflowTemplate(name=name, current_version=1, created_by=principal.user_id, created_at=now,
                                            brand_id=BrandService.id_in(session, brand))
                session.add(template)
                session.flush()
                session.add(WorkflowTemplateVersion(template_id=template.id, version=1,
                                                    definition=json.dumps(checked.to_json()),
                                                    created_by=principal.user_id, created_at=now))
                self._audit.append_in(session, principal.name, "workflow.template.create", f"template:{template.id}",
                                      name=name, version=1, brand=BrandService.name_in(session, template.brand_id))
        except IntegrityError:
            raise SiegelError(Code.CONFLICT, f"a workflow template named {name!r} exists already") from None
        return self.describe(template.id)

    def update(self, principal: Principal, template_id: int, definition: Any,
               brand: Any = Keep.BRAND) -> dict[str, Any]:
        """A new version (``definition`` None: none); workflows already running keep theirs. ``brand``: the
        template's brand from now on (a name; None: the default brand). One transaction: a wrong definition or an
        unknown brand changes nothing."""
        checked = parse_definition(definition) if definition is not None else None
        if checked is None and brand is Keep.BRAND:
            raise SiegelError(Code.BAD_REQUEST, "give the template's new definition, its brand, or both")
        with self._sessions.begin() as session:
            template = self._template(session, template_id, lock=True)
            if template.retired_at is not None:
                raise SiegelError(Code.CONFLICT, f"workflow template {template_id} is retired")
            if brand is not Keep.BRAND:
                template.brand_id = BrandService.id_in(session, brand)
                self._audit.append_in(session, principal.name, "brand.assign", f"template:{template.name}",
                                      brand=BrandService.name_in(session, template.brand_id) or BUILT_IN)
            if checked is not None:
                template.current_version += 1
                session.add(WorkflowTemplateVersion(template_id=template.id, version=template.current_version,
                                                    definition=json.dumps(checked.to_json()),
                                                    created_by=principal.user_id, created_at=self._clock()))
                self._audit.append_in(session, principal.name, "workflow.template.update",
                                      f"template:{template.id}", version=template.current_version)
        return self.describe(template_id)

    def retire(self, principal: Principal, template_id: int) -> None:
        with self._sessions.begin() as session:
            template = self._template(session, template_id, lock=True)
            if template.retired_at is None:
                template.retired_at = self._clock()
                self._audit.append_in(session, principal.name, "workflow.template.retire", f"template:{template.id}")

    def list(self) -> list[dict[str, Any]]:
        with self._sessions() as session:
            rows = session.execute(select(WorkflowTemplate).where(WorkflowTemplate.retired_at.is_(None))
                                   .order_by(WorkflowTemplate.name)).scalars().all()
        return [{"id": t.id, "name": t.name, "version": t.current_version} for t in rows]

    def describe(self, template_id: int, version: int | None = None) -> dict[str, Any]:
        with self._sessions() as session:
            template = self._template(session, template_id)
            brand = BrandService.name_in(session, template.brand_id)
        chosen = version or template.current_version
        return {"id": template.id, "name": template.name, "version": chosen, "currentVersion": template.current_version,
                "retired": template.retired_at is not None, "brand": brand,
                "definition": self.definition(template_id, chosen).to_json()}

    def find(self, ref: Any) -> WorkflowTemplate:
        """A template by id or name (a start's ``template``)."""
        with self._sessions() as session:
            if isinstance(ref, int) and not isinstance(ref, bool):
                return self._template(session, ref)
            if isinstance(ref, str) and ref.strip():
                row = session.execute(select(WorkflowTemplate).where(WorkflowTemplate.name == ref.strip())
                                      ).scalar_one_or_none()
                if row is not None:
                    return row
                raise SiegelError(Code.NOT_FOUND, f"no workflow template named {ref!r}")
        raise SiegelError(Code.BAD_REQUEST, "template: expected a template id or name")

    def definition(self, template_id: int, version: int) -> Definition:
        """The parsed definition of one version (kept: versions are immutable)."""
        key = (template_id, version)
        with self._lock:
            hit = self._parsed.get(key)
        if hit is not None:
            return hit
        with self._sessions() as session:
            row = session.get(WorkflowTemplateVersion, key)
        if row is None:
            raise SiegelError(Code.NOT_FOUND, f"workflow template {template_id} has no version {version}")
        parsed = parse_definition(json.loads(row.definition))
        with self._lock:
            self._parsed[key] = parsed
        return parsed

    @staticmethod
    def _template(session: Session, template_id: int, lock: bool = False) -> WorkflowTemplate:
        query = select(WorkflowTemplate).where(WorkflowTemplate.id == template_id)
        row = session.execute(query.with_for_update() if lock else query).scalar_one_or_none()
        if row is None:
            raise SiegelError(Code.NOT_FOUND, f"no workflow template {template_id}")
        return row
