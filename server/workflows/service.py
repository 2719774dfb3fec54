"""Workflows: start from a template version, the steps in their order, acting on a step, and what the server
enforces there.

- Step order: only the ``active`` step can be acted on; a later step's assignee gets CONFLICT (409) until its
  turn. Steps run one after the other; a group step with mode ``every`` waits for each member.
- Only the assignee acts: a user on a step assigned to someone else gets FORBIDDEN; a link token names one
  assignment (one step, one recipient), works once and until it expires, and only on steps whose auth is
  ``link``; steps asking for ``password`` or ``password+2fa`` need the account's HTTP Basic login (and the
  second factor).
- Separation of duties: the person who acted on a step named by ``fourEyesWith`` may not act on this one.
- One signature per claim: an attempt claims the step with a conditional UPDATE on its ``version`` (and an
  expired or empty ``claimed_until``); of simultaneous attempts exactly one wins, the rest get CONFLICT. The
  finishing transaction checks the claim's version, the workflow's document revision and the link again.
- Each signature is verified right after it is made (VerificationService); a signature that does not verify
  is not kept. Its result, the signer's authentication level and address go into the audit entry, written in
  the transaction that records the step (``append_in``), with the mails the change causes (the outbox).
- A step whose key source is ``remote`` signs with a credential of the step's remote (CSC) signing account
  through ``RemoteSigning`` (``adapters.remote_signing.operations``): the signer gives the credential and PIN
  (:class:`RemoteKey`); a credential that needs an OTP leaves the step pending with the operation kept on the
  assignment (``remote_operation``, 202 on REST) until the signer gives PIN and OTP, which finishes exactly that
  operation. Both phases run under the step's claim.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Callable

from sqlalchemy import Engine, and_, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from server.audit import AuditLog
from server.branding.service import BrandService
from server.config import WorkflowSettings
from server.db.models import (Group, GroupMember, RemoteOperation, User, Workflow, WorkflowAssignment, WorkflowLink,
                              WorkflowStep, WorkflowTemplate)
from server.errors import Code, SiegelError
from server.identity.policy import Action, allowed
from server.identity.users import Principal, Role
from server.pki.ca import CertificateAuthorityService
from server.signing.levels import Level, Packaging
from server.signing.order import Document, Format, PdfOptions, SignOrder, StampBrand
from server.signing.service import SigningService
from server.validation.model import Indication
from server.validation.service import VerificationService
from server.workflows.delivery import DeliveryQueue
from server.workflows.documents import WorkflowDocuments
from server.workflows.history import SYSTEM_ACCOUNT, audit_target, history, signed_certificate
from server.workflows.outbox import MailOutbox
from server.workflows.template import AUTH_RANK, Auth, Definition, KeySourceKind, Step, StepAction, resolve
from server.workflows.templates import TemplateRepository

if TYPE_CHECKING:
    from adapters.remote_signing.operations import RemoteSigning

log = logging.getLogger("siegel.workflows")
LINK_PATH = "/api/v1/workflows/link"
PAGE_PATH = "/portal/link"  # the page an invitation's link opens (server.web.portal.external)
EXTERNAL_PREFIX = "external."  # account names of external signers (no password: they never log in)
MAX_REASON = 2000


def external_account(email: str) -> str:
    """The name of the account an external signer signs with."""
    return EXTERNAL_PREFIX + email.lower()


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Actor:
    """Who acts on a step: an authenticated account (``principal``, with the level its request proved) or the
    holder of a link token (``link_hash``); ``address`` is where the request came from."""

    auth: Auth
    address: str | None
    principal: Principal | None = None
    link_hash: str | None = None

    @property
    def name(self) -> str:
        return self.principal.name if self.principal is not None else "link"


@dataclass(frozen=True)
class RemoteKey:
    """What the signer of a step with a remote qualified key gives: ``credential`` (of the step's remote account)
    and ``pin`` start the signature; ``pin`` and ``otp`` (the code the service sent) finish a waiting one."""

    credential: str | None = None
    pin: str | None = None
    otp: str | None = None


@dataclass(frozen=True)
class Placement:
    """Where the signer put the signature of a step whose template fixes no field, page or box: ``page``
    (1-based) and ``box`` (x, y, width, height in PDF points from the lower left)."""

    page: int
    box: tuple[float, float, float, float]


def _utc(value: datetime | None) -> datetime | None:
    return value if value is None or value.tzinfo is not None else value.replace(tzinfo=UTC)


class WorkflowService:
    def __init__(self, engine: Engine, audit: AuditLog, settings: WorkflowSettings, templates: TemplateRepository,
                 signing: SigningService, verification: VerificationService, ca: CertificateAuthorityService,
                 documents: WorkflowDocuments, outbox: MailOutbox, deliveries: DeliveryQueue, public_base_url: str,
                 record_level: Level = Level.B_T, system_email: str = "siegel@localhost",
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC), brands: BrandService | None = None,
                 remote: Callable[[], RemoteSigning] | None = None) -> None:
        self._engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._audit = audit
        self._settings = settings
        self.templates = templates
        self._signing = signing
        self._verification = verification
        self._ca = ca
        self._documents = documents
        self.outbox = outbox
        self.deliveries = deliveries
        self._base = public_base_url.rstrip("/")
        self._record_level = record_level  # of the certificate of completion
        self._system_email = system_email  # the address of the account that signs it
        self._clock = clock
        self._brands = brands  # None: links under public_base_url, "Siegel" in subjects, the plain stamp
        self._remote = remote  # None: steps with a remote key source cannot start (NOT_SUPPORTED)

    def _look(self, workflow: Workflow) -> tuple[str, str]:
        """The base URL of the workflow's links and the company name its mails speak for."""
        if self._brands is None:
            return self._base, "Siegel"
        brand = self._brands.by_id(workflow.brand_id)
        return brand.public_base_url, brand.company_name

    # --- start ------------------------------------------------------------------------------------

    def start(self, principal: Principal, template_ref: Any, document: bytes, document_name: str,
              variables: dict[str, Any]) -> dict[str, Any]:
        """A new workflow on the template's current version; its first step becomes due at once."""
        if not isinstance(variables, dict) or not all(isinstance(v, str) for v in variables.values()):
            raise SiegelError(Code.BAD_REQUEST, "variables: expected an object of texts")
        if not document.startswith(b"%PDF-"):
            raise SiegelError(Code.BAD_REQUEST, "document: a workflow document is a PDF")
        if not isinstance(document_name, str) or not document_name.strip() or len(document_name) > 255:
            raise SiegelError(Code.BAD_REQUEST, "documentName: expected a file name of 1 to 255 characters")
        template = self.templates.find(template_ref)
        if template.retired_at is not None:
            raise SiegelError(Code.CONFLICT, f"workflow template {template.name!r} is retired")
        definition = self.templates.definition(template.id, template.current_version)
        unknown = set(variables) - definition.variables()
        if unknown:
            raise SiegelError(Code.BAD_REQUEST, f"variables: the template does not use {', '.join(sorted(unknown))}")
        for step in definition.steps:
            if step.signature is not None and step.signature.key_source is KeySourceKind.REMOTE:
                self._check_remote(step.name, step.signature.remote_service)
        now = self._clock()
        with self._sessions.begin() as session:
            self._check_starter(session, principal, definition, template)
            self.deliveries.check_starter(principal, definition, template.name)
            plans = [self._assignees(session, step, variables) for step in definition.steps]
            workflow = Workflow(template_id=template.id, template_version=template.current_version, state="running",
                                started_by=principal.user_id, document_name=document_name.strip(), revision=0,
                                document_sha256=hashlib.sha256(document).hexdigest(),
                                variables=json.dumps(variables), created_at=now,
                                brand_id=self._brand_at_start(session, template.id, principal))
            session.add(workflow)
            session.flush()
            self._documents.write(workflow.id, 0, document)  # durable before the commit refers to it
            steps = []
            for position, plan in enumerate(plans, 1):
                step = WorkflowStep(workflow_id=workflow.id, position=position, state="waiting", version=0,
                                    reminders_sent=0)
                session.add(step)
                session.flush()
                for user_id, email, external in plan:
                    session.add(WorkflowAssignment(step_id=step.id, user_id=user_id, email=email, external=external,
                                                   state="pending"))
                steps.append(step)
            session.flush()
            self._audit.append_in(session, principal.name, "workflow.start", audit_target(workflow.id),
                                  template=template.name, version=template.current_version,
                                  document=workflow.document_name, sha256=workflow.document_sha256)
            self._activate_from(session, workflow, definition, steps, 0, principal.name, now)
            workflow_id = workflow.id
        return self.status_of(workflow_id)

    def _check_remote(self, step: str, account: str | None) -> None:
        if self._remote is None:
            raise SiegelError(Code.NOT_SUPPORTED, f"step {step!r}: signing with the remote qualified service "
                                                  f"{account!r} is not connected to workflows in this installation")
        if account not in self._remote().clients:
            raise SiegelError(Code.BAD_REQUEST, f"step {step!r}: no remote signing account {account!r} (see "
                                                "remote_signing.accounts_file)")

    def _brand_at_start(self, session: Session, template_id: int, principal: Principal) -> int | None:
        """The starting API client's brand, else the template's, else the default brand then (None: built in)."""
        if self._brands is None:
            return None
        return BrandService.choose_in(session, template_id, principal.client) or self._brands.default().id

    def _check_starter(self, session: Session, principal: Principal, definition: Definition,
                       template: WorkflowTemplate) -> None:
        starters = definition.starters
        if starters.anyone or principal.role.value in starters.roles or principal.name in starters.users:
            return
        if starters.groups and session.execute(
                select(Group.id).join(GroupMember, GroupMember.group_id == Group.id)
                .where(GroupMember.user_id == principal.user_id, Group.name.in_(starters.groups))).first():
            return
        raise SiegelError(Code.FORBIDDEN, f"{principal.name} may not start the workflow template {template.name!r}")

    def _assignees(self, session: Session, step: Step, variables: dict[str, str]) -> list[tuple[int | None, str, bool]]:
        """(account id, e-mail address, external) of each assignment of ``step``."""
        who = step.assignee
        if who.user is not None:
            user = session.execute(select(User).where(User.name == who.user)).scalar_one_or_none()
            if user is None or user.disabled:
                raise SiegelError(Code.BAD_REQUEST, f"step {step.name!r}: no enabled account {who.user!r}")
            return [(user.id, user.email, False)]
        if who.group is not None:
            members = session.execute(
                select(User).join(GroupMember, GroupMember.user_id == User.id).join(Group, Group.id == GroupMember.group_id)
                .where(Group.name == who.group, User.disabled.is_(False)).order_by(User.id)).scalars().all()
            if not members:
                raise SiegelError(Code.BAD_REQUEST, f"step {step.name!r}: the group {who.group!r} has no enabled member")
            return [(m.id, m.email, False) for m in members]
        address = resolve(who.external, variables) or ""
        if "@" not in address or len(address) > 320 or any(c.isspace() for c in address):
            raise SiegelError(Code.BAD_REQUEST, f"step {step.name!r}: {address!r} is not an e-mail address")
        return [(None, address, True)]

    # --- step transitions (inside the caller's transaction) ----------------------------------------

    def _activate_from(self, session: Session, workflow: Workflow, definition: Definition,
                       steps: list[WorkflowStep], index: int, actor: str, now: datetime) -> None:
        """Make ``steps[index]`` due (copy steps are done at once: the next follows); past the last: completed."""
        while index < len(steps):
            step, spec = steps[index], definition.steps[index]
            step.state, step.activated_at, step.version = "active", now, step.version + 1
            step.deadline = now + timedelta(hours=spec.deadline_hours) if spec.deadline_hours else None
            step.next_reminder = now + timedelta(hours=spec.remind_after_hours[0]) if spec.remind_after_hours else None
            assignments = self._assignments(session, step.id)
            if spec.action is not StepAction.COPY:
                for assignment in assignments:
                    self._invite(session, workflow, step, spec, assignment, now, "invitation")
                return
            for assignment in assignments:
                assignment.state, assignment.action, assignment.acted_at = "done", "copy", now
                self.outbox.enqueue_in(session, assignment.email, f"{self._look(workflow)[1]}: a copy of "
                                                                  f"{workflow.document_name}",
                                       f"Hello,\n\nthe document {workflow.document_name} (workflow {workflow.id}) "
                                       f"reached the step {spec.name!r}, which sends you a copy.\n"
                                       f"{self._document_hint(workflow, assignment)}", workflow.id)
            step.state, step.finished_at = "done", now
            index += 1
        workflow.state, workflow.finished_at = "completed", now
        self.deliveries.enqueue_in(session, workflow, definition)
        self._audit.append_in(session, actor, "workflow.complete", audit_target(workflow.id),
                              revision=workflow.revision,
                              sha256=workflow.document_sha256)
        self._notify_all(session, workflow, "completed", f"the workflow {workflow.id} for {workflow.document_name} "
                                                         "is completed: every step is done.")

    def _document_hint(self, workflow: Workflow, assignment: WorkflowAssignment) -> str:
        if assignment.external:
            return ""
        return f"You find it at {self._look(workflow)[0]}/api/v1/workflows/{workflow.id}/document\n"

    def _invite(self, session: Session, workflow: Workflow, step: WorkflowStep, spec: Step,
                assignment: WorkflowAssignment, now: datetime, kind: str) -> None:
        """An invitation or reminder mail; a link-auth step's mail carries a new single-use link token."""
        verb = "sign" if spec.action is StepAction.SIGN else "approve"
        base, company = self._look(workflow)
        if spec.auth is Auth.LINK:
            token = secrets.token_urlsafe(32)  # 256 random bits; only its SHA-256 is kept
            session.add(WorkflowLink(token_hash=token_hash(token), assignment_id=assignment.id, created_at=now,
                                     expires_at=now + timedelta(hours=self._settings.link_hours)))
            how = (f"Open this link to see the document and {verb} it (it works once, for "
                   f"{self._settings.link_hours} hours):\n{base}{PAGE_PATH}?token={token}\n")
        else:
            how = (f"Sign in to {company} ({spec.auth.value}) and {verb} it at\n"
                   f"{base}/api/v1/workflows/{workflow.id}/steps/{step.position}\n")
        deadline = f"Deadline: {step.deadline.isoformat()}\n" if step.deadline else ""
        subject = f"{company}: " + ("reminder: " if kind == "reminder" else "") + f"please {verb} {workflow.document_name}"
        self.outbox.enqueue_in(session, assignment.email, subject,
                               f"Hello,\n\nthe document {workflow.document_name} (workflow {workflow.id}, step "
                               f"{step.position} {spec.name!r}) waits for you to {verb} it.\n{deadline}\n{how}",
                               workflow.id)

    def _notify_all(self, session: Session, workflow: Workflow, what: str, text: str) -> None:
        """A mail to the starter and everyone assigned to the workflow (each address once)."""
        starter = session.get(User, workflow.started_by)
        rows = session.execute(select(WorkflowAssignment.email).join(WorkflowStep, WorkflowStep.id ==
                                                                     WorkflowAssignment.step_id)
                               .where(WorkflowStep.workflow_id == workflow.id)).scalars().all()
        addresses = dict.fromkeys(([starter.email] if starter else []) + list(rows))
        for address in addresses:
            self.outbox.enqueue_in(session, address, f"{self._look(workflow)[1]}: {workflow.document_name} {what}",
                                   f"Hello,\n\n{text}\n", workflow.id)

    @staticmethod
    def _assignments(session: Session, step_id: int) -> list[WorkflowAssignment]:
        return list(session.execute(select(WorkflowAssignment).where(WorkflowAssignment.step_id == step_id)
                                    .order_by(WorkflowAssignment.id)).scalars().all())

    @staticmethod
    def _steps(session: Session, workflow_id: int) -> list[WorkflowStep]:
        return list(session.execute(select(WorkflowStep).where(WorkflowStep.workflow_id == workflow_id)
                                    .order_by(WorkflowStep.position)).scalars().all())

    # --- acting on a step --------------------------------------------------------------------------

    def act(self, actor: Actor, workflow_id: int, position: int, action: str, reason: str | None = None,
            remote: RemoteKey | None = None, placement: Placement | None = None) -> dict[str, Any]:
        """Sign, approve or reject step ``position`` of a workflow as an authenticated account: the workflow's
        status, with ``remoteSignature`` while a remote signature waits for its OTP. ``placement`` puts the
        signature of a step whose template fixes no field or box (else it is placed automatically)."""
        if actor.principal is None:
            raise SiegelError(Code.UNAUTHENTICATED, "acting on a step needs an account or a link")
        return self._act(actor, workflow_id, position, action, reason, remote, placement)

    def act_by_link(self, token: str, action: str, reason: str | None, address: str | None,
                    remote: RemoteKey | None = None) -> dict[str, Any]:
        """Sign, approve or reject the one step and recipient a link token names (once, before it expires)."""
        assignment = self._link_assignment(token)
        with self._sessions() as session:
            step = session.get(WorkflowStep, assignment.step_id)
            assert step is not None
        return self._act(Actor(Auth.LINK, address, link_hash=token_hash(token)), step.workflow_id, step.position,
                         action, reason, remote, None)

    def _link_assignment(self, token: str) -> WorkflowAssignment:
        refused = SiegelError(Code.FORBIDDEN, "the workflow link is invalid, used or expired")
        if not isinstance(token, str) or not token or len(token) > 200:
            raise refused
        with self._sessions() as session:
            link = session.get(WorkflowLink, token_hash(token))
            if link is None or link.used_at is not None or _utc(link.expires_at) <= self._clock():  # type: ignore[operator]
                raise refused
            assignment = session.get(WorkflowAssignment, link.assignment_id)
        assert assignment is not None
        return assignment

    def _mine(self, actor: Actor, session: Session, assignments: list[WorkflowAssignment]) -> list[WorkflowAssignment]:
        if actor.link_hash is not None:
            link = session.get(WorkflowLink, actor.link_hash)
            return [a for a in assignments if link is not None and a.id == link.assignment_id]
        assert actor.principal is not None
        return [a for a in assignments if a.user_id == actor.principal.user_id]

    def _act(self, actor: Actor, workflow_id: int, position: int, action: str, reason: str | None,
             remote: RemoteKey | None, placement: Placement | None) -> dict[str, Any]:
        now = self._clock()
        with self._sessions() as session:
            workflow = session.get(Workflow, workflow_id)
            if workflow is None:
                raise SiegelError(Code.NOT_FOUND, f"no workflow {workflow_id}")
            steps = self._steps(session, workflow_id)
            if not 1 <= position <= len(steps):
                raise SiegelError(Code.NOT_FOUND, f"workflow {workflow_id} has no step {position}")
            step = steps[position - 1]
            assignments = self._assignments(session, step.id)
            mine = self._mine(actor, session, assignments)
            acted_before = self._acted_on(session, workflow_id)
        definition = self.templates.definition(workflow.template_id, workflow.template_version)
        spec = definition.steps[position - 1]
        if not mine:
            raise SiegelError(Code.FORBIDDEN, f"step {position} of workflow {workflow_id} is assigned to someone else")
        if workflow.state != "running":
            raise SiegelError(Code.CONFLICT, f"workflow {workflow_id} is {workflow.state}")
        if step.state == "waiting":
            current = next((s.position for s in steps if s.state == "active"), None)
            raise SiegelError(Code.CONFLICT, f"step {position} of workflow {workflow_id} is not due yet: step "
                                             f"{current} comes first")
        if step.state != "active":
            raise SiegelError(Code.CONFLICT, f"step {position} of workflow {workflow_id} is {step.state}")
        assignment = next((a for a in mine if a.state == "pending"), None)
        if assignment is None:
            raise SiegelError(Code.CONFLICT, f"step {position} of workflow {workflow_id}: acted on already")
        self._check_auth(actor, spec)
        allowed_actions = {StepAction.SIGN: ("sign", "reject"), StepAction.APPROVE: ("approve", "reject")}[spec.action]
        if action not in allowed_actions:
            raise SiegelError(Code.BAD_REQUEST, f"action {action!r}: step {position} is a {spec.action.value} step "
                                                f"(expected {' or '.join(allowed_actions)})")
        if remote is not None and not (action == "sign" and spec.signature is not None
                                       and spec.signature.key_source is KeySourceKind.REMOTE):
            raise SiegelError(Code.BAD_REQUEST, f"remote: step {position} of workflow {workflow_id} does not sign "
                                                "with a remote qualified key")
        if placement is not None and not (action == "sign" and spec.signature is not None
                                          and spec.signature.field is None and spec.signature.box is None):
            raise SiegelError(Code.BAD_REQUEST, f"placement: step {position} of workflow {workflow_id} "
                                                + ("places its signature as its template says" if action == "sign"
                                                   else "makes no signature"))
        if action == "reject" and not (isinstance(reason, str) and reason.strip()):
            raise SiegelError(Code.BAD_REQUEST, "reason: a rejection needs a reason")
        if reason is not None and (not isinstance(reason, str) or len(reason) > MAX_REASON):
            raise SiegelError(Code.BAD_REQUEST, f"reason: expected a text of at most {MAX_REASON} characters")
        if spec.four_eyes_with is not None:
            partner = next(i for i, s in enumerate(definition.steps, 1) if s.name == spec.four_eyes_with)
            if self._identity(assignment) in acted_before.get(partner, set()):
                raise SiegelError(Code.FORBIDDEN, f"separation of duties: whoever acted on step {partner} "
                                                  f"({spec.four_eyes_with!r}) may not act on step {position} too")
        claimed = self._claim(step, now)
        try:
            signed = None
            if action == "sign":
                made = self._sign(workflow, spec, assignment, remote, placement)
                if isinstance(made, dict):  # a remote signature waits for its OTP: the step stays as it is
                    self._release(step.id, claimed)
                    return {**self.status_of(workflow.id), "remoteSignature": made}
                signed = made
            return self._perform(actor, workflow, steps, step, claimed, assignment, definition, spec, action,
                                 reason.strip() if reason else None, now, signed)
        except BaseException:
            self._release(step.id, claimed)
            raise

    def _release(self, step_id: int, claimed: int) -> None:
        """Free the claim; a finished step moved on and does not match."""
        with self._engine.begin() as conn:
            conn.execute(update(WorkflowStep).where(WorkflowStep.id == step_id, WorkflowStep.version == claimed)
                         .values(claimed_until=None, version=claimed + 1))

    @staticmethod
    def _identity(assignment: WorkflowAssignment) -> str:
        return f"user:{assignment.user_id}" if assignment.user_id is not None else f"mail:{assignment.email.lower()}"

    def _acted_on(self, session: Session, workflow_id: int) -> dict[int, set[str]]:
        """Step position → identities of who acted on it (for the separation of duties)."""
        rows = session.execute(select(WorkflowStep.position, WorkflowAssignment)
                               .join(WorkflowAssignment, WorkflowAssignment.step_id == WorkflowStep.id)
                               .where(WorkflowStep.workflow_id == workflow_id,
                                      WorkflowAssignment.state == "done")).all()
        out: dict[int, set[str]] = {}
        for position, assignment in rows:
            out.setdefault(position, set()).add(self._identity(assignment))
        return out

    @staticmethod
    def _check_auth(actor: Actor, spec: Step) -> None:
        if actor.link_hash is not None and spec.auth is not Auth.LINK:
            raise SiegelError(Code.UNAUTHENTICATED, f"step {spec.name!r} needs the account's login ({spec.auth.value}), "
                                                    "not the link alone")
        if AUTH_RANK[actor.auth] < AUTH_RANK[spec.auth]:
            raise SiegelError(Code.UNAUTHENTICATED, f"step {spec.name!r} needs a second factor: send X-Siegel-OTP "
                                                    "with the request")

    def _claim(self, step: WorkflowStep, now: datetime) -> int:
        """Claim the step for this attempt (one conditional UPDATE); the claim's version, or CONFLICT."""
        with self._engine.begin() as conn:
            done = conn.execute(update(WorkflowStep).where(
                WorkflowStep.id == step.id, WorkflowStep.state == "active", WorkflowStep.version == step.version,
                or_(WorkflowStep.claimed_until.is_(None), WorkflowStep.claimed_until < now))
                .values(version=step.version + 1,
                        claimed_until=now + timedelta(seconds=self._settings.claim_seconds))).rowcount
        if done != 1:
            raise SiegelError(Code.CONFLICT, f"step {step.position} is being acted on by another request, or was "
                                             "just done: reload the workflow")
        return step.version + 1

    def _signer(self, assignment: WorkflowAssignment) -> tuple[int, str]:
        """The account that signs: the assignee's, or for an external signer its own account (created on its
        first signature) with a user-signing certificate of the internal CA for its address."""
        if assignment.user_id is not None:
            with self._sessions() as session:
                user = session.get(User, assignment.user_id)
                assert user is not None
                return user.id, user.name
        return self._account(external_account(assignment.email), assignment.email, "external")

    def _account(self, name: str, email: str, source: str) -> tuple[int, str]:
        """An account without password (it never logs in) that signs with its own certificate of the internal
        CA: created, and certified, on first use."""
        with self._sessions.begin() as session:
            user = session.execute(select(User).where(User.name == name)).scalar_one_or_none()
            if user is None:
                user = User(name=name, email=email, role=Role.SIGNER.value, password_hash=None,
                            disabled=False, created_at=self._clock(), source=source, failed_logins=0)
                session.add(user)
                session.flush()
                self._audit.append_in(session, "system", "user.add", name, role=Role.SIGNER.value, email=email,
                                      source=source)
            user_id = user.id
        try:
            self._ca.signing_key_of(user_id)
        except SiegelError:
            self._ca.issue_user(name, "workflow")
        return user_id, name

    def _sign(self, workflow: Workflow, spec: Step, assignment: WorkflowAssignment,
              remote: RemoteKey | None, placement: Placement | None) -> tuple[bytes, dict[str, Any]] | dict[str, Any]:
        """The document with the step's signature (where the template or else the signer put it) and the
        verification of that new signature; for a remote signature that waits for its OTP, what the signer needs
        to know of it."""
        settings = spec.signature
        assert settings is not None
        page, box = (placement.page, placement.box) if placement is not None else (settings.page, settings.box)
        content = self._documents.read(workflow.id, workflow.revision, workflow.document_sha256)
        user_id, user_name = self._signer(assignment)
        order = SignOrder(Format.PADES, settings.level, Packaging.ENVELOPED,
                          (Document(workflow.document_name, content=content, mime_type="application/pdf"),),
                          pdf=PdfOptions(field=settings.field, page=page, box=box,
                                         appearance=settings.appearance, brand=self._stamp_brand(workflow)))
        if settings.key_source is KeySourceKind.INTERNAL:
            signed = self._signing.sign(user_id, user_name, order)[0].data
        else:
            made = self._remote_sign(spec, assignment, user_id, user_name, order, remote)
            if isinstance(made, dict):
                return made
            signed = made
            if not signed.startswith(content):  # an incremental update of this revision, nothing else
                raise SiegelError(Code.INTERNAL, f"the remote signature of step {spec.name!r} is not on the "
                                                 "workflow's current document; it is not kept")
        report = self._verification.verify(signed, name=workflow.document_name)
        result = {"passed": report.passed, "signatures": [
            {"id": r.id, "signer": r.signer_name, "indication": r.indication.value,
             "subIndication": r.sub_indication.value if r.sub_indication else None, "level": r.level}
            for r in report.signatures]}
        if not report.passed:  # the new one, or an earlier one it broke: the document would not hold
            failed = next(r for r in report.signatures if r.indication is not Indication.TOTAL_PASSED)
            raise SiegelError(Code.INTERNAL, f"after the signature of step {spec.name!r} the signature {failed.id} does "
                                             f"not verify ({failed.indication.value}); the new signature is not kept")
        return signed, result

    def _remote_sign(self, spec: Step, assignment: WorkflowAssignment, user_id: int, user_name: str,
                     order: SignOrder, key: RemoteKey | None) -> bytes | dict[str, Any]:
        """The step's signature by its remote account: a credential starts an operation (replacing one that
        waits), PIN and OTP finish the waiting one; the signed document, or the waiting operation."""
        from adapters.remote_signing.operations import Pending

        settings = spec.signature
        assert settings is not None and settings.remote_service is not None
        self._check_remote(spec.name, settings.remote_service)
        assert self._remote is not None
        remote = self._remote()
        if key is not None and key.credential:
            if assignment.remote_operation is not None:  # a new start replaces the waiting one
                self._cancel_remote([(user_id, assignment.remote_operation)])
            result = remote.start(user_id, user_name, order, settings.remote_service, key.credential, key.pin,
                                  key.otp)
            if isinstance(result, Pending):
                with self._engine.begin() as conn:
                    conn.execute(update(WorkflowAssignment).where(WorkflowAssignment.id == assignment.id)
                                 .values(remote_operation=result.operation))
                return {"state": "awaiting-otp", "account": result.account, "credential": result.credential,
                        "otpSent": result.otp_sent, "expires": result.expires.isoformat(timespec="seconds")}
            return result[0].data
        if key is None or not key.pin or assignment.remote_operation is None:
            waiting = "the waiting one with pin and otp" if assignment.remote_operation else "none is waiting"
            raise SiegelError(Code.BAD_REQUEST, f"step {spec.name!r} signs with a credential of the remote qualified "
                                                f"service {settings.remote_service!r}: give credential and pin to "
                                                f"start a signature, then finish {waiting}")
        return remote.authorize(user_id, assignment.remote_operation, key.pin, key.otp)[0].data

    def _stamp_brand(self, workflow: Workflow) -> StampBrand | None:
        if self._brands is None:
            return None
        return self._brands.stamp(self._brands.by_id(workflow.brand_id))

    def _perform(self, actor: Actor, workflow: Workflow, steps: list[WorkflowStep], step: WorkflowStep, claimed: int,
                 assignment: WorkflowAssignment, definition: Definition, spec: Step, action: str,
                 reason: str | None, now: datetime, signed: tuple[bytes, dict[str, Any]] | None) -> dict[str, Any]:
        """Record the action (with the signed document and its verification for a signature) and move on."""
        verification: dict[str, Any] | None = None
        revision, sha256 = workflow.revision, workflow.document_sha256
        if signed is not None:
            document, verification = signed
            revision, sha256 = workflow.revision + 1, self._documents.write(workflow.id, workflow.revision + 1, document)
        conflict = SiegelError(Code.CONFLICT, f"step {step.position} of workflow {workflow.id} changed meanwhile "
                                              "(cancelled, expired or done): nothing was recorded")
        waiting: list[tuple[int, str]] = []
        with self._sessions.begin() as session:
            if session.execute(update(WorkflowStep).where(WorkflowStep.id == step.id, WorkflowStep.version == claimed)
                               .values(claimed_until=None, version=claimed + 1)).rowcount != 1:
                raise conflict
            if session.execute(update(Workflow).where(Workflow.id == workflow.id, Workflow.state == "running",
                                                      Workflow.revision == workflow.revision)
                               .values(revision=revision, document_sha256=sha256)).rowcount != 1:
                raise conflict
            if actor.link_hash is not None and session.execute(
                    update(WorkflowLink).where(WorkflowLink.token_hash == actor.link_hash,
                                               WorkflowLink.used_at.is_(None), WorkflowLink.expires_at > now)
                    .values(used_at=now)).rowcount != 1:
                raise SiegelError(Code.FORBIDDEN, "the workflow link is invalid, used or expired")
            mine = session.get(WorkflowAssignment, assignment.id)
            wf = session.get(Workflow, workflow.id)
            current = session.get(WorkflowStep, step.id)
            assert mine is not None and wf is not None and current is not None
            mine.state = "rejected" if action == "reject" else "done"
            mine.action, mine.acted_at, mine.auth_level, mine.address = action, now, actor.auth.value, actor.address
            mine.verification = json.dumps(verification) if verification is not None else None
            if action == "sign":  # spent; one waiting when its signer rejects ends with the workflow (_end)
                mine.remote_operation = None
            who = actor.principal.name if actor.principal is not None else assignment.email
            self._audit.append_in(session, who, f"workflow.{action}", audit_target(workflow.id, step.position),
                                  step=spec.name, auth=actor.auth.value, address=actor.address, email=assignment.email,
                                  external=assignment.external, reason=reason, revision=revision, sha256=sha256,
                                  verification=verification)
            if action == "reject":
                current.state, current.finished_at, current.version = "rejected", now, current.version + 1
                waiting = self._end(session, wf, "rejected", reason, who, now)
            else:
                others = [a for a in self._assignments(session, step.id) if a.id != mine.id and a.state == "pending"]
                if others and not spec.assignee.every:
                    for other in others:
                        other.state = "superseded"
                    others = []
                if not others:
                    current.state, current.finished_at, current.version = "done", now, current.version + 1
                    all_steps = self._steps(session, workflow.id)
                    self._activate_from(session, wf, definition, all_steps, step.position, who, now)
        self._cancel_remote(waiting)
        return self.status_of(workflow.id)

    def _end(self, session: Session, workflow: Workflow, state: str, reason: str | None, actor: str,
             now: datetime) -> list[tuple[int, str]]:
        """Workflow rejected, cancelled or expired: open steps and assignments cancelled, everyone told; the
        remote signatures that waited for an OTP are taken off the assignments and returned as (user id,
        operation) for the caller to cancel once this transaction is committed (:meth:`_cancel_remote`)."""
        workflow.state, workflow.reason, workflow.finished_at = state, reason, now
        held = session.execute(select(WorkflowAssignment)
                               .join(WorkflowStep, WorkflowStep.id == WorkflowAssignment.step_id)
                               .where(WorkflowStep.workflow_id == workflow.id,
                                      WorkflowAssignment.remote_operation.is_not(None))).scalars().all()
        operations = [a.remote_operation for a in held if a.remote_operation is not None]
        for assignment in held:
            assignment.remote_operation = None
        waiting = [(user_id, operation) for operation, user_id in session.execute(
            select(RemoteOperation.id, RemoteOperation.user_id).where(RemoteOperation.id.in_(operations))).all()]
        for step in self._steps(session, workflow.id):
            if step.state in ("waiting", "active"):
                step.state, step.version, step.claimed_until = "cancelled", step.version + 1, None
                for assignment in self._assignments(session, step.id):
                    if assignment.state == "pending":
                        assignment.state = "cancelled"
        if state != "rejected":
            self._audit.append_in(session, actor, f"workflow.{'cancel' if state == 'cancelled' else 'expire'}",
                                  audit_target(workflow.id), reason=reason)
        self._notify_all(session, workflow, state, f"the workflow {workflow.id} for {workflow.document_name} was "
                                                   f"{state} by {actor}" + (f": {reason}" if reason else "."))
        return waiting

    def _cancel_remote(self, waiting: list[tuple[int, str]]) -> None:
        """Each (user id, operation) of a remote signature that waits for its OTP is cancelled (RemoteSigning.cancel);
        one that expired, ended or is being authorised at this moment is left to that."""
        for user_id, operation in waiting:
            assert self._remote is not None  # an operation exists only where remote signing is connected
            try:
                self._remote().cancel(user_id, operation)
            except SiegelError as exc:
                log.info("remote operation %s not cancelled: %s", operation, exc.message)

    # --- cancel, status, document, inbox -------------------------------------------------------------

    def cancel(self, principal: Principal, workflow_id: int, reason: str | None) -> dict[str, Any]:
        now = self._clock()
        with self._sessions.begin() as session:
            workflow = session.execute(select(Workflow).where(Workflow.id == workflow_id).with_for_update()
                                       ).scalar_one_or_none()
            if workflow is None or not allowed(principal, Action.DOCUMENT_CANCEL, owner_id=workflow.started_by):
                raise SiegelError(Code.NOT_FOUND, f"no workflow {workflow_id} this account may cancel")
            if session.execute(update(Workflow).where(Workflow.id == workflow_id, Workflow.state == "running")
                               .values(finished_at=now)).rowcount != 1:
                raise SiegelError(Code.CONFLICT, f"workflow {workflow_id} is {workflow.state}")
            waiting = self._end(session, workflow, "cancelled", (reason or "").strip()[:MAX_REASON] or None,
                                principal.name, now)
        self._cancel_remote(waiting)
        return self.status_of(workflow_id)

    def _readable(self, session: Session, principal: Principal, workflow_id: int) -> Workflow:
        workflow = session.get(Workflow, workflow_id)
        if workflow is not None and (allowed(principal, Action.WORKFLOW_READ, owner_id=workflow.started_by) or
                                     session.execute(select(WorkflowAssignment.id).join(
                                         WorkflowStep, WorkflowStep.id == WorkflowAssignment.step_id).where(
                                         WorkflowStep.workflow_id == workflow_id,
                                         WorkflowAssignment.user_id == principal.user_id)).first() is not None):
            return workflow
        raise SiegelError(Code.NOT_FOUND, f"no workflow {workflow_id} this account may see")

    def status(self, principal: Principal, workflow_id: int) -> dict[str, Any]:
        with self._sessions() as session:
            self._readable(session, principal, workflow_id)
        return self.status_of(workflow_id)

    def status_of(self, workflow_id: int) -> dict[str, Any]:
        with self._sessions() as session:
            workflow = session.get(Workflow, workflow_id)
            if workflow is None:
                raise SiegelError(Code.NOT_FOUND, f"no workflow {workflow_id}")
            template = session.get(WorkflowTemplate, workflow.template_id)
            starter = session.get(User, workflow.started_by)
            steps = self._steps(session, workflow_id)
            assignments = {s.id: self._assignments(session, s.id) for s in steps}
            names = dict(session.execute(select(User.id, User.name).where(User.id.in_(
                [a.user_id for rows in assignments.values() for a in rows if a.user_id is not None]))).all())
        definition = self.templates.definition(workflow.template_id, workflow.template_version)
        return {
            "id": workflow.id, "state": workflow.state, "reason": workflow.reason,
            "template": {"id": workflow.template_id, "name": template.name if template else None,
                         "version": workflow.template_version},
            "documentName": workflow.document_name, "revision": workflow.revision,
            "documentSha256": workflow.document_sha256, "startedBy": starter.name if starter else None,
            "created": workflow.created_at.isoformat(),
            "finished": workflow.finished_at.isoformat() if workflow.finished_at else None,
            "steps": [{
                "position": s.position, "name": spec.name, "action": spec.action.value, "auth": spec.auth.value,
                "state": s.state, "deadline": s.deadline.isoformat() if s.deadline else None,
                "assignees": [{
                    "user": names.get(a.user_id) if a.user_id is not None else None,
                    "email": a.email, "external": a.external, "state": a.state, "action": a.action,
                    "actedAt": a.acted_at.isoformat() if a.acted_at else None, "auth": a.auth_level,
                    "address": a.address,
                    "verification": json.loads(a.verification) if a.verification else None,
                    "flag": a.flag, "flagged": a.flagged_at.isoformat() if a.flagged_at else None}
                    for a in assignments[s.id]]}
                for s, spec in zip(steps, definition.steps)],
            "deliveries": self.deliveries.states(workflow_id),
            "archiveObjectId": workflow.archive_aoid,
        }

    def document(self, principal: Principal, workflow_id: int) -> tuple[str, bytes]:
        """The document's current revision (the signed PDF once completed)."""
        with self._sessions() as session:
            workflow = self._readable(session, principal, workflow_id)
        return workflow.document_name, self._documents.read(workflow.id, workflow.revision, workflow.document_sha256)

    def history(self, principal: Principal, workflow_id: int) -> dict[str, Any]:
        """Who did what when, from where, how authenticated, with which verification result (JSON)."""
        with self._sessions() as session:
            self._readable(session, principal, workflow_id)
        return history(self._engine, workflow_id, self.status_of(workflow_id))

    def certificate(self, principal: Principal, workflow_id: int) -> bytes:
        """The signed certificate of completion of a finished workflow (PDF)."""
        record = self.history(principal, workflow_id)
        if record["workflow"]["state"] == "running":
            raise SiegelError(Code.CONFLICT, f"workflow {workflow_id} is still running: its certificate of "
                                             "completion comes when it is finished")
        company, logo = "Siegel", None
        if self._brands is not None:
            brand = self._brands.for_workflow(workflow_id)
            company, logo = brand.company_name, self._brands.logo_png(brand)
        return signed_certificate(record, self._signing, lambda: self._account(
            SYSTEM_ACCOUNT, self._system_email, "system"), self._record_level, company, logo)

    def link_view(self, token: str) -> tuple[Workflow, dict[str, Any]]:
        """What a link's holder may see: the workflow, its step and what it asks (the token stays unused)."""
        assignment = self._link_assignment(token)
        with self._sessions() as session:
            step = session.get(WorkflowStep, assignment.step_id)
            assert step is not None
            workflow = session.get(Workflow, step.workflow_id)
            assert workflow is not None
            spec = self.templates.definition(workflow.template_id, workflow.template_version).steps[step.position - 1]
            remote = self._remote_state(session, spec, assignment)
        return workflow, {"workflow": workflow.id, "workflowState": workflow.state, "step": step.position,
                          "stepName": spec.name, "stepState": step.state, "action": spec.action.value,
                          "email": assignment.email, "documentName": workflow.document_name,
                          "deadline": step.deadline.isoformat() if step.deadline else None,
                          "document": f"{self._look(workflow)[0]}{LINK_PATH}/document?token={token}",
                          "act": f"{self._look(workflow)[0]}{LINK_PATH}", "remote": remote}

    def link_document(self, token: str) -> tuple[str, bytes]:
        workflow, _ = self.link_view(token)
        return workflow.document_name, self._documents.read(workflow.id, workflow.revision, workflow.document_sha256)

    def inbox(self, principal: Principal) -> list[dict[str, Any]]:
        """The account's pending steps that are due now, with deadline, sender, document and (sign steps) how the
        signature is placed."""
        with self._sessions() as session:
            rows = session.execute(
                select(Workflow, WorkflowStep, WorkflowAssignment, User.name)
                .join(WorkflowStep, WorkflowStep.workflow_id == Workflow.id)
                .join(WorkflowAssignment, WorkflowAssignment.step_id == WorkflowStep.id)
                .join(User, User.id == Workflow.started_by)
                .where(WorkflowAssignment.user_id == principal.user_id, WorkflowAssignment.state == "pending",
                       WorkflowStep.state == "active", Workflow.state == "running")
                .order_by(WorkflowStep.deadline.is_(None), WorkflowStep.deadline, Workflow.id)).all()
            out = []
            for workflow, step, assignment, sender in rows:
                definition = self.templates.definition(workflow.template_id, workflow.template_version)
                spec = definition.steps[step.position - 1]
                out.append({"workflow": workflow.id, "step": step.position, "stepName": spec.name,
                            "action": spec.action.value, "auth": spec.auth.value, "sender": sender,
                            "signature": spec.signature.to_json() if spec.signature else None,
                            "documentName": workflow.document_name,
                            "deadline": step.deadline.isoformat() if step.deadline else None,
                            "since": step.activated_at.isoformat() if step.activated_at else None,
                            "document": f"{self._base}/api/v1/workflows/{workflow.id}/document",
                            "remote": self._remote_state(session, spec, assignment)})
        return out

    def _remote_state(self, session: Session, spec: Step, assignment: WorkflowAssignment) -> dict[str, Any] | None:
        """For a sign step with a remote qualified key: its remote ``account`` and the signature ``waiting`` for
        its OTP (credential, expiry, whether the service sent the code), if one waits; else None."""
        if spec.signature is None or spec.signature.key_source is not KeySourceKind.REMOTE:
            return None
        operation = session.get(RemoteOperation, assignment.remote_operation) if assignment.remote_operation else None
        expires = _utc(operation.expires_at) if operation is not None else None
        waiting = None if operation is None or expires is None or expires <= self._clock() else {
            "credential": operation.credential_id, "otpSent": operation.otp_sent,
            "expires": expires.isoformat(timespec="seconds")}
        return {"account": spec.signature.remote_service, "waiting": waiting}

    def remote_credentials(self, account: str, signer: str) -> list[str] | None:
        """The credentials the remote signing ``account`` lists for the account ``signer`` to choose from; None
        when it cannot tell (not connected, not this signer's, the service does not answer)."""
        if self._remote is None:
            return None
        try:
            return self._remote().client_for(signer, account).credentials()
        except SiegelError as exc:
            log.info("credentials of remote signing account %r not listed: %s", account, exc.message)
            return None

    # --- the job: reminders and deadlines ------------------------------------------------------------

    def run_deadlines(self) -> None:
        """The job ``workflow-deadlines``: reminders that are due, and workflows whose step passed its deadline
        (expired, everyone told)."""
        now = self._clock()
        with self._sessions() as session:
            due = session.execute(select(WorkflowStep.id).where(
                WorkflowStep.state == "active", or_(and_(WorkflowStep.deadline.is_not(None), WorkflowStep.deadline <= now),
                                                    and_(WorkflowStep.next_reminder.is_not(None),
                                                         WorkflowStep.next_reminder <= now)))).scalars().all()
        ended: list[tuple[int, str]] = []  # remote operations of expired workflows, cancelled after their commit
        for step_id in due:
            with self._sessions.begin() as session:
                step = session.get(WorkflowStep, step_id)
                assert step is not None
                workflow = session.get(Workflow, step.workflow_id)
                assert workflow is not None
                if step.state != "active" or workflow.state != "running":
                    continue
                if step.deadline is not None and _utc(step.deadline) <= now:  # type: ignore[operator]
                    if (_utc(step.claimed_until) or now) > now:  # type: ignore[operator]
                        continue  # being signed at this moment: that attempt decides
                    ended.extend(self._end(session, workflow, "expired", f"step {step.position} passed its deadline",
                                           "system", now))
                    continue
                spec = self.templates.definition(workflow.template_id, workflow.template_version).steps[step.position - 1]
                for assignment in self._assignments(session, step.id):
                    if assignment.state == "pending":
                        self._invite(session, workflow, step, spec, assignment, now, "reminder")
                step.reminders_sent += 1
                later = spec.remind_after_hours[step.reminders_sent:]
                activated = _utc(step.activated_at) or now
                step.next_reminder = activated + timedelta(hours=later[0]) if later else None
        self._cancel_remote(ended)
