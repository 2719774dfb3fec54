"""The web portal under ``/portal/``: server-rendered pages (Jinja2 templates, German and English), small
JavaScript modules, pdf.js (vendored by ``make portal-assets``), sessions with CSRF tokens and second
factors. ``site.py`` holds the route table and the request handling, ``account.py`` login, second factors
and password reset, ``documents.py`` verify and sign, ``inbox.py`` the workflow steps due, ``admin.py`` the
admin dashboard, ``admin_workflows.py`` the admin's workflow list and detail."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from server.archive.service import ArchiveService
from server.audit import AuditLog
from server.branding.service import BrandService
from server.identity.directory import DirectorySync
from server.identity.twofactor import TwoFactorService
from server.identity.users import UserService
from server.pki.ca import CertificateAuthorityService
from server.signing.service import SigningService
from server.validation.service import VerificationService
from server.web.portal.sessions import PortalSessions
from server.workflows.overview import WorkflowOverview
from server.workflows.service import WorkflowService


@dataclass
class PortalApp:
    """The services the portal's pages call."""

    users: UserService
    twofactor: TwoFactorService
    sessions: PortalSessions
    signing: SigningService
    verification: VerificationService
    ca: CertificateAuthorityService
    audit: AuditLog
    directory: Callable[[], DirectorySync | None]
    health: dict[str, Callable[[], dict[str, Any]]]
    workflows: Callable[[], WorkflowService]
    brands: BrandService
    templates: Path  # the operator's template overrides (branding.templates); see server.branding.templates
    remote_overview: Callable[[], list[dict[str, Any]]]  # adapters.remote_signing.overview.accounts_overview
    archive: Callable[[], ArchiveService]
    audit_counts: Callable[[Sequence[str], str], dict[tuple[str, str], int]]  # server.audit.stats.daily_counts
    workflow_overview: WorkflowOverview  # the workflow list and durations (read-only)
