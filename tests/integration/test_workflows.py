"""Workflows on SQLite and PostgreSQL with the session's SoftHSM2 token and the internal PKI: the state machine
and what the server enforces (order, assignee, link, separation of duties, one signature per step under
concurrency, verification after each signature, audit), and the outbound mail queue against a real SMTP
server that goes down and comes back."""

from __future__ import annotations

import base64
import io
import json
import re
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Callable

import pytest
from sqlalchemy import func, select

from adapters.delivery.callback import post_signed, verify_signature
from adapters.mail import SmtpMailSender
from adapters.remote_signing.client import CscClient, RemoteAccount, RemoteServiceError
from adapters.remote_signing.operations import RemoteSigning
from server.db.models import (ArchiveObject, AuditEntry, Group, GroupMember, OutboundMail, RemoteOperation,
                              WorkflowAssignment, WorkflowLink, WorkflowStep)
from server.errors import Code, SiegelError
from server.identity.users import Principal, UserService
from server.archive.jobs import ArchiveTrees, stamp_in_process
from server.archive.service import ArchiveItem, ArchiveObjectInfo, ArchiveService
from server.archive.store import DocumentStore
from server.pki.ca import ROOT
from server.signing.keys import SigningKeys
from server.signing.service import SigningService
from server.validation.service import VerificationService
from server.workflows.delivery import DeliveryQueue
from server.workflows.leased import LEASE
from server.workflows.documents import WorkflowDocuments
from server.workflows.outbox import MailOutbox
from server.workflows.service import Actor, Placement, RemoteKey, WorkflowService, token_hash
from server.workflows.template import Auth
from server.workflows.templates import TemplateRepository
from tests.fixtures.pdf import EmptyField, make_pdf
from tests.fixtures.pdfa import pdfa_2b_text
from tests.fixtures.pki import OnlinePki, Pki, user_key
from tests.integration.test_remote_signing_client import INSTALLATION_KEY, OTP, PIN, FakeCsc
from tests.fixtures.http_sink import HttpSink, http_sink  # noqa: F401 (a fixture)
from tests.fixtures.smtp import SmtpServer

pytestmark = pytest.mark.integration
PASSWORD = "correct horse battery"


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


class World:
    def __init__(self, pki: Pki, store: Path, smtp: SmtpServer, sink: HttpSink) -> None:
        self.pki = pki
        self.clock = Clock()
        self.users = UserService(pki.engine, pki.audit, 0)
        verification = VerificationService(pki.settings, lambda: pki.ca.ca_certificate_der(ROOT))
        signing = SigningService(pki.settings, pki.engine, pki.ca, lambda: pki.hsm, pki.audit,
                                 SigningKeys(pki.engine, pki.audit, pki.ca), lambda: verification.trust().roots)
        self.signing, self.verification = signing, verification
        self.remote: RemoteSigning | None = None  # a test with remote qualified steps sets it
        self.smtp = smtp
        self.mailer = SmtpMailSender(smtp.host, smtp.port, "siegel@example.com", False, 5)
        self.outbox = MailOutbox(pki.engine, self.mailer, "siegel@example.com", 60, clock=self.clock)
        self.templates = TemplateRepository(pki.engine, pki.audit, clock=self.clock)
        self.sink, self.delivery_root, self.key = sink, store.parent / "delivery", b"k" * 32
        documents = WorkflowDocuments(store)
        self.archive: Callable[[], Any] = self._no_archive  # a test that archives sets its ArchiveService
        self.deliveries = DeliveryQueue(pki.engine, documents, self.delivery_root, lambda: self.key, post_signed, 5,
                                        60, self.outbox, lambda: self.archive(), "http://siegel.test",
                                        clock=self.clock)
        self.wf = WorkflowService(pki.engine, pki.audit, pki.settings.workflows, self.templates, signing,
                                  verification, pki.ca, documents, self.outbox, self.deliveries,
                                  "http://siegel.test", clock=self.clock, remote=self._remote)
        self.admin = self.users.add("chef", "chef@example.com", "template_manager", PASSWORD)

    def _remote(self) -> RemoteSigning:
        assert self.remote is not None, "this test signs with no remote qualified key"
        return self.remote

    @staticmethod
    def _no_archive() -> Any:
        raise AssertionError("this test delivers nothing into the archive")

    def person(self, name: str, sign: bool = True) -> Principal:
        p = self.users.add(name, f"{name}@example.com", "signer", PASSWORD)
        if sign:
            self.pki.ca.issue_user(name)
        return p

    def group(self, name: str, *members: Principal) -> None:
        with self.pki.engine.begin() as conn:
            gid = conn.execute(Group.__table__.insert().values(name=name, source="local", created_at=self.clock())
                               .returning(Group.__table__.c.id)).scalar_one()
            conn.execute(GroupMember.__table__.insert(), [{"group_id": gid, "user_id": m.user_id} for m in members])

    def audit(self, action: str) -> list[dict[str, Any]]:
        with self.pki.engine.connect() as conn:
            rows = conn.execute(select(AuditEntry.actor, AuditEntry.target, AuditEntry.details)
                                .where(AuditEntry.action == action).order_by(AuditEntry.seq)).all()
        return [{"actor": r.actor, "target": r.target, **json.loads(r.details)} for r in rows]

    def mails(self, count: int) -> list[Any]:
        self.outbox.deliver()
        return self.smtp.wait_for(count)


def as_user(p: Principal, auth: Auth = Auth.PASSWORD) -> Actor:
    return Actor(auth, "192.0.2.7", principal=p)


def link_of(mail: Any) -> str:
    match = re.search(r"/portal/link\?token=([A-Za-z0-9_-]+)", mail.message.get_content())
    assert match, mail.message.get_content()
    return match.group(1)


SIGN = {"level": "B-B"}


@pytest.fixture
def world(pki_online: OnlinePki, tmp_path: Path, smtp_server: SmtpServer, http_sink: HttpSink) -> World:
    """Verification after each signature fetches revocation data: the PKI's /ocsp and /crl answer."""
    return World(pki_online, tmp_path / "store", smtp_server, http_sink)


def _contract(world: World, steps: list[dict[str, Any]], **extra: Any) -> int:
    return world.templates.create(world.admin, f"t{len(steps)}-{id(steps)}", {"steps": steps, **extra})["id"]


def test_order_assignee_link_and_completion_with_four_valid_signatures(world: World) -> None:
    anna, bert, carla = world.person("anna"), world.person("bert"), world.person("carla")
    fields = [EmptyField(f"Sig{i}", 0, (40 + 130 * (i - 1), 100, 160 + 130 * (i - 1), 150)) for i in range(1, 5)]
    template = _contract(world, [
        {"name": "Vertrieb", "assignee": {"user": "anna"}, "action": "sign", "signature": {**SIGN, "field": "Sig1"}},
        {"name": "Recht", "assignee": {"user": "bert"}, "action": "sign", "signature": {**SIGN, "field": "Sig2"}},
        {"name": "Leitung", "assignee": {"user": "carla"}, "action": "sign", "auth": "password+2fa",
         "signature": {**SIGN, "field": "Sig3"}},
        {"name": "Partner", "assignee": {"external": "{{partner}}"}, "action": "sign",
         "signature": {**SIGN, "field": "Sig4"}}])
    started = world.wf.start(world.admin, template, make_pdf(fields=fields), "vertrag.pdf",
                             {"partner": "partner@example.org"})
    wid = started["id"]
    assert [s["state"] for s in started["steps"]] == ["active", "waiting", "waiting", "waiting"]
    (invite,) = world.mails(1)
    assert invite.rcpt_tos == ("anna@example.com",) and "/api/v1/workflows/%d/steps/1" % wid in invite.message.get_content()

    with pytest.raises(SiegelError) as early:  # bert's turn has not come
        world.wf.act(as_user(bert), wid, 2, "sign")
    assert early.value.kind.http_status == 409 and "not due yet" in early.value.message
    with pytest.raises(SiegelError) as other:  # bert on anna's step
        world.wf.act(as_user(bert), wid, 1, "sign")
    assert other.value.kind.http_status == 403
    with pytest.raises(SiegelError) as wrong:
        world.wf.act(as_user(anna), wid, 1, "approve")
    assert wrong.value.kind.http_status == 400

    world.wf.act(as_user(anna), wid, 1, "sign")
    world.wf.act(as_user(bert), wid, 2, "sign")
    with pytest.raises(SiegelError) as weak:  # password+2fa step with the password alone
        world.wf.act(as_user(carla), wid, 3, "sign")
    assert weak.value.kind.http_status == 401
    status = world.wf.act(as_user(carla, Auth.PASSWORD_2FA), wid, 3, "sign")
    assert status["steps"][3]["state"] == "active"

    mails = world.mails(4)  # anna, bert, carla, partner
    assert mails[-1].rcpt_tos == ("partner@example.org",)
    token = link_of(mails[-1])
    with world.pki.engine.connect() as conn:  # stored hashed only
        assert conn.execute(select(WorkflowLink.token_hash).where(WorkflowLink.token_hash == token_hash(token))).first()
        assert not conn.execute(select(WorkflowLink).where(WorkflowLink.token_hash == token)).first()
    with pytest.raises(SiegelError) as by_user:  # the external step is not anna's
        world.wf.act(as_user(anna), wid, 4, "sign")
    assert by_user.value.kind.http_status == 403
    view = world.wf.link_view(token)[1]
    assert (view["step"], view["email"], view["action"]) == (4, "partner@example.org", "sign")
    done = world.wf.act_by_link(token, "sign", None, "198.51.100.9")
    assert done["state"] == "completed" and done["revision"] == 4
    with pytest.raises(SiegelError) as again:  # a link works once
        world.wf.act_by_link(token, "sign", None, "198.51.100.9")
    assert again.value.kind.http_status == 403

    name, pdf = world.wf.document(world.admin, wid)
    report = world.wf._verification.verify(pdf)
    assert report.passed and sorted(s.id for s in report.signatures) == ["Sig1", "Sig2", "Sig3", "Sig4"]
    signs = world.audit("workflow.sign")
    assert [s["auth"] for s in signs] == ["password", "password", "password+2fa", "link"]
    assert all(s["verification"]["passed"] for s in signs)
    assert signs[-1]["address"] == "198.51.100.9" and signs[-1]["actor"] == "partner@example.org"
    assert world.audit("workflow.complete")[0]["target"] == f"workflow:{wid}"
    completion = [m for m in world.mails(8)[4:] if "completed" in m.message["Subject"]]
    assert {m.rcpt_tos[0] for m in completion} == {"chef@example.com", "anna@example.com", "bert@example.com",
                                                   "carla@example.com", "partner@example.org"}
    assert world.pki.audit.verify()[1] is None


def test_four_eyes_approver_rejects_and_cannot_be_the_signer(world: World) -> None:
    anna, bert = world.person("anna"), world.person("bert", sign=False)
    world.group("leitung", anna, bert)
    template = _contract(world, [
        {"name": "Antrag", "assignee": {"group": "leitung", "mode": "any"}, "action": "sign",
         "signature": {**SIGN, "page": 1, "box": [50, 50, 200, 60]}},
        {"name": "Freigabe", "assignee": {"group": "leitung", "mode": "any"}, "action": "approve",
         "fourEyesWith": "Antrag"},
        {"name": "Ablage", "assignee": {"user": "chef"}, "action": "copy"}])
    wid = world.wf.start(world.admin, template, make_pdf(), "antrag.pdf", {})["id"]
    world.wf.act(as_user(anna), wid, 1, "sign")
    with pytest.raises(SiegelError) as sod:
        world.wf.act(as_user(anna), wid, 2, "approve")
    assert sod.value.kind.http_status == 403 and "separation of duties" in sod.value.message
    with pytest.raises(SiegelError, match="needs a reason"):
        world.wf.act(as_user(bert), wid, 2, "reject", " ")
    status = world.wf.act(as_user(bert), wid, 2, "reject", "Budget fehlt")
    assert (status["state"], status["reason"]) == ("rejected", "Budget fehlt")
    assert [s["state"] for s in status["steps"]] == ["done", "rejected", "cancelled"]
    assert world.audit("workflow.reject")[0]["reason"] == "Budget fehlt"
    with pytest.raises(SiegelError) as after:
        world.wf.act(as_user(anna), wid, 2, "approve")
    assert after.value.kind.http_status in (403, 409)


def test_an_every_group_step_waits_for_each_member_once_and_refuses_outsiders(world: World) -> None:
    """A group step in mode ``every`` stays due until each of the three members approved, each once; the next
    step starts only then; a member acting again gets 409, someone outside the group 403, and neither records
    anything."""
    anna, bert, carla, dora = (world.person(n, sign=False) for n in ("anna", "bert", "carla", "dora"))
    world.group("vorstand", anna, bert, carla)
    template = _contract(world, [
        {"name": "Vorstand", "assignee": {"group": "vorstand", "mode": "every"}, "action": "approve"},
        {"name": "Ablage", "assignee": {"user": "chef"}, "action": "approve"}])
    wid = world.wf.start(world.admin, template, make_pdf(), "beschluss.pdf", {})["id"]

    world.wf.act(as_user(anna), wid, 1, "approve")
    with pytest.raises(SiegelError) as twice:
        world.wf.act(as_user(anna), wid, 1, "approve")
    assert twice.value.kind.http_status == 409 and "acted on already" in twice.value.message
    status = world.wf.act(as_user(bert), wid, 1, "approve")
    assert [s["state"] for s in status["steps"]] == ["active", "waiting"]
    assert [(a["user"], a["state"]) for a in status["steps"][0]["assignees"]] == [
        ("anna", "done"), ("bert", "done"), ("carla", "pending")]
    with pytest.raises(SiegelError) as early:  # the next step has not started
        world.wf.act(as_user(world.admin), wid, 2, "approve")
    assert early.value.kind.http_status == 409 and "not due yet" in early.value.message
    with pytest.raises(SiegelError) as outsider:
        world.wf.act(as_user(dora), wid, 1, "approve")
    assert outsider.value.kind.http_status == 403
    with pytest.raises(SiegelError) as again:
        world.wf.act(as_user(bert), wid, 1, "approve")
    assert again.value.kind.http_status == 409
    assert len(world.audit("workflow.approve")) == 2

    status = world.wf.act(as_user(carla), wid, 1, "approve")
    assert [s["state"] for s in status["steps"]] == ["done", "active"] and status["state"] == "running"
    assert [a["state"] for a in status["steps"][0]["assignees"]] == ["done"] * 3
    with pytest.raises(SiegelError) as after:  # the step is done: nobody acts on it any more
        world.wf.act(as_user(carla), wid, 1, "approve")
    assert after.value.kind.http_status == 409
    assert world.wf.act(as_user(world.admin), wid, 2, "approve")["state"] == "completed"
    assert [e["actor"] for e in world.audit("workflow.approve")] == ["anna", "bert", "carla", "chef"]


def test_twenty_simultaneous_signatures_of_one_step_make_one(world: World) -> None:
    anna = world.person("anna")
    template = _contract(world, [{"name": "a", "assignee": {"user": "anna"}, "action": "sign",
                                  "signature": {**SIGN, "page": 1, "box": [50, 50, 200, 60]}},
                                 {"name": "b", "assignee": {"user": "chef"}, "action": "approve"}])
    wid = world.wf.start(world.admin, template, make_pdf(), "x.pdf", {})["id"]
    barrier, outcomes = threading.Barrier(20), []

    def attempt() -> None:
        barrier.wait()
        try:
            world.wf.act(as_user(anna), wid, 1, "sign")
            outcomes.append(200)
        except SiegelError as exc:
            outcomes.append(exc.kind.http_status)

    threads = [threading.Thread(target=attempt) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == [200] + [409] * 19
    assert len(world.audit("workflow.sign")) == 1 and len(world.audit("sign.pades")) == 1
    status = world.wf.status(anna, wid)
    assert status["revision"] == 1 and status["steps"][1]["state"] == "active"


def test_a_placement_is_refused_where_the_template_fixes_the_place_and_kept_where_it_does_not(world: World) -> None:
    """The template decides: a step with a box or a field refuses the signer's placement with 400 and stays due
    (nothing signed); a step with neither puts its signature where the signer placed it."""
    anna = world.person("anna")
    template = _contract(world, [
        {"name": "box", "assignee": {"user": "anna"}, "action": "sign",
         "signature": {**SIGN, "page": 1, "box": [50, 50, 200, 60]}},
        {"name": "field", "assignee": {"user": "anna"}, "action": "sign", "signature": {**SIGN, "field": "Sig"}},
        {"name": "free", "assignee": {"user": "anna"}, "action": "sign", "signature": SIGN}])
    pdf = make_pdf(pages=2, fields=[EmptyField("Sig", 0, (300, 700, 500, 760))])
    wid = world.wf.start(world.admin, template, pdf, "x.pdf", {})["id"]
    dropped = Placement(2, (120.0, 300.0, 180.0, 60.0))
    for position in (1, 2):
        with pytest.raises(SiegelError) as refused:
            world.wf.act(as_user(anna), wid, position, "sign", placement=dropped)
        assert refused.value.kind.http_status == 400 and "as its template says" in refused.value.message
        status = world.wf.status(anna, wid)
        assert status["steps"][position - 1]["state"] == "active" and status["revision"] == position - 1
        assert len(world.audit("sign.pades")) == position - 1
        world.wf.act(as_user(anna), wid, position, "sign")
    status = world.wf.act(as_user(anna), wid, 3, "sign", placement=dropped)
    assert status["state"] == "completed"

    from pyhanko.pdf_utils.reader import PdfFileReader

    _, signed = world.wf.document(anna, wid)
    reader = PdfFileReader(io.BytesIO(signed))
    last = reader.embedded_signatures[-1]
    assert [round(float(v)) for v in last.sig_field["/Rect"]] == [120, 300, 300, 360]
    page_two = reader.root["/Pages"]["/Kids"][1]
    assert any(a.get_object().get("/T") == last.field_name for a in page_two["/Annots"])


def test_a_running_workflow_keeps_its_template_version_and_can_be_cancelled(world: World) -> None:
    world.person("anna")
    bert = world.person("bert", sign=False)
    template = _contract(world, [{"name": "a", "assignee": {"user": "anna"}, "action": "approve"}])
    wid = world.wf.start(world.admin, template, make_pdf(), "x.pdf", {})["id"]
    world.templates.update(world.admin, template, {"steps": [{"name": "b", "assignee": {"user": "bert"},
                                                              "action": "approve"}]})
    status = world.wf.status(world.admin, wid)
    assert status["template"]["version"] == 1 and status["steps"][0]["name"] == "a"
    with pytest.raises(SiegelError) as hidden:  # neither starter nor assignee
        world.wf.status(bert, wid)
    assert hidden.value.kind.http_status == 404
    assert world.wf.start(world.admin, template, make_pdf(), "y.pdf", {})["steps"][0]["name"] == "b"
    cancelled = world.wf.cancel(world.admin, wid, "falsches Dokument")
    assert cancelled["state"] == "cancelled" and cancelled["steps"][0]["state"] == "cancelled"
    with pytest.raises(SiegelError) as twice:
        world.wf.cancel(world.admin, wid, None)
    assert twice.value.kind.http_status == 409


def test_who_may_start_and_bad_starts_leave_nothing(world: World) -> None:
    bert = world.person("bert", sign=False)
    template = _contract(world, [{"name": "a", "assignee": {"user": "chef"}, "action": "approve"}],
                         starters={"roles": ["template_manager"]})
    with pytest.raises(SiegelError) as refused:
        world.wf.start(bert, template, make_pdf(), "x.pdf", {})
    assert refused.value.kind.http_status == 403
    with pytest.raises(SiegelError, match="a workflow document is a PDF"):
        world.wf.start(world.admin, template, b"hello", "x.pdf", {})
    with pytest.raises(SiegelError, match="does not use"):
        world.wf.start(world.admin, template, make_pdf(), "x.pdf", {"who": "x"})
    assert world.audit("workflow.start") == []


def test_reminders_and_expiry(world: World) -> None:
    world.person("anna")
    template = _contract(world, [{"name": "a", "assignee": {"user": "anna"}, "action": "approve",
                                  "deadlineHours": 48, "remindAfterHours": [24]}])
    wid = world.wf.start(world.admin, template, make_pdf(), "x.pdf", {})["id"]
    world.clock.now += timedelta(hours=25)
    world.wf.run_deadlines()
    world.wf.run_deadlines()  # a reminder once
    subjects = [m.message["Subject"] for m in world.mails(2)]
    assert subjects == ["Siegel: please approve x.pdf", "Siegel: reminder: please approve x.pdf"]
    world.clock.now += timedelta(hours=24)
    world.wf.run_deadlines()
    assert world.wf.status(world.admin, wid)["state"] == "expired"
    assert "expired" in world.mails(4)[-1].message["Subject"]


def test_mail_queued_while_smtp_is_down_goes_out_once_when_it_is_back(world: World) -> None:
    world.person("anna")
    template = _contract(world, [{"name": "a", "assignee": {"user": "anna"}, "action": "approve"}])
    world.smtp.stop()
    world.wf.start(world.admin, template, make_pdf(), "x.pdf", {})
    assert world.outbox.deliver() == 0
    with world.pki.engine.connect() as conn:
        row = conn.execute(select(OutboundMail)).one()
    assert row.state == "queued" and row.attempts == 1 and row.last_error
    world.smtp.start()
    world.clock.now += timedelta(seconds=4)
    assert world.outbox.deliver() == 0  # not due yet (5 s after the first failure)
    world.clock.now += timedelta(seconds=2)
    assert world.outbox.deliver() == 1
    assert world.outbox.deliver() == 0
    (mail,) = world.smtp.wait_for(1)
    assert mail.message["Message-ID"] == row.message_id
    world.clock.now += timedelta(hours=1)
    assert world.outbox.deliver() == 0 and len(world.smtp.messages) == 1


def test_a_mail_whose_sender_crashed_after_smtp_accepted_it_is_sent_again_with_the_same_message_id(world: World) -> None:
    world.person("anna")
    template = _contract(world, [{"name": "a", "assignee": {"user": "anna"}, "action": "approve"}])
    world.wf.start(world.admin, template, make_pdf(), "x.pdf", {})
    with world.pki.engine.begin() as conn:  # as a node that died after SMTP's 250, before its commit
        conn.execute(OutboundMail.__table__.update().values(state="sending", attempts=1,
                                                            lease_until=world.clock() + timedelta(minutes=5)))
    assert world.outbox.deliver() == 0  # leased: the other node may still be at it
    world.clock.now += timedelta(minutes=6)
    assert world.outbox.deliver() == 1
    with world.pki.engine.connect() as conn:
        row = conn.execute(select(OutboundMail)).one()
    assert row.state == "sent" and row.attempts == 2
    assert world.smtp.wait_for(1)[0].message["Message-ID"] == row.message_id


def test_history_and_the_signed_certificate_of_completion(world: World, tmp_path: Path) -> None:
    anna = world.person("anna")
    template = _contract(world, [{"name": "Vertrieb", "assignee": {"user": "anna"}, "action": "sign",
                                  "signature": {**SIGN, "page": 1, "box": [50, 50, 200, 60]}}])
    wid = world.wf.start(world.admin, template, make_pdf(), "vertrag.pdf", {})["id"]
    with pytest.raises(SiegelError) as running:
        world.wf.certificate(world.admin, wid)
    assert running.value.kind.http_status == 409
    world.wf.act(as_user(anna), wid, 1, "sign")
    record = world.wf.history(anna, wid)
    assert [e["action"] for e in record["events"]] == ["workflow.start", "workflow.sign", "workflow.complete"]
    sign = record["events"][1]
    assert (sign["actor"], sign["details"]["auth"], sign["details"]["address"]) == ("anna", "password", "192.0.2.7")
    assert sign["details"]["verification"]["passed"] is True
    pdf = world.wf.certificate(world.admin, wid)
    report = world.wf._verification.verify(pdf)
    assert report.passed and len(report.signatures) == 1
    assert "system.workflows" in (report.signatures[0].signer_name or "")
    text = pdfa_2b_text(pdf, tmp_path)
    assert "vertrag.pdf" in text and "anna: sign at" in text and "authenticated by password from 192.0.2.7" in text


def test_completed_workflows_are_delivered_to_a_folder_and_a_signed_callback_retried_until_it_answers(
        world: World) -> None:
    anna = world.person("anna")
    template = _contract(world, [{"name": "a", "assignee": {"user": "anna"}, "action": "sign",
                                  "signature": {**SIGN, "page": 1, "box": [50, 50, 200, 60]}}],
                         delivery=[{"folder": "vertraege/2026"}, {"callback": world.sink.url}])
    wid = world.wf.start(world.admin, template, make_pdf(), "Vertrag (final).pdf", {})["id"]
    assert world.deliveries.deliver() == 0  # nothing before completion
    world.sink.status = 503
    world.wf.act(as_user(anna), wid, 1, "sign")
    assert world.deliveries.deliver() == 1  # the folder; the callback failed
    target = world.delivery_root / "vertraege" / "2026" / f"{wid}-Vertrag_final_.pdf"
    signed = world.wf.document(anna, wid)[1]
    assert target.read_bytes() == signed
    assert [p.name for p in target.parent.iterdir()] == [target.name]  # no temporary file left
    states = {d["kind"]: d for d in world.wf.status(anna, wid)["deliveries"]}
    assert states["folder"]["state"] == "delivered" and states["callback"]["state"] == "queued"
    assert "answered 503" in states["callback"]["lastError"]
    world.sink.status = 202
    assert world.deliveries.deliver() == 0  # waits 5 s after the first failure
    world.clock.now += timedelta(seconds=6)
    assert world.deliveries.deliver() == 1
    first, second = world.sink.wait_for(2)
    assert first.headers["x-siegel-delivery"] == second.headers["x-siegel-delivery"]  # one delivery, retried
    assert verify_signature(world.key, second.body, second.headers["x-siegel-signature"])
    assert not verify_signature(b"x" * 32, second.body, second.headers["x-siegel-signature"])
    assert not verify_signature(world.key, second.body + b" ", second.headers["x-siegel-signature"])
    body = second.json()
    assert (body["event"], body["workflow"], body["state"]) == ("workflow.completed", wid, "completed")
    assert base64.b64decode(body["document"]) == signed
    world.clock.now += timedelta(hours=1)
    assert world.deliveries.deliver() == 0 and len(world.sink.received) == 2


class Crash(BaseException):
    """The process dying: not an error the delivery job handles."""


def test_an_archive_delivery_that_died_after_the_archive_committed_makes_no_second_object(
        world: World, tmp_path: Path) -> None:
    pki = world.pki
    store = DocumentStore(tmp_path / "archive", grace=0)
    trees = ArchiveTrees(pki.engine, pki.audit, store, lambda: stamp_in_process(pki.tsa.respond), ["sha256"],
                         pki.settings.archive.max_tree_leaves)
    archive = ArchiveService(pki.engine, pki.audit, store, trees,
                             VerificationService(pki.settings, lambda: pki.ca.ca_certificate_der(ROOT)),
                             pki.settings.archive)
    submitted: list[str] = []

    class DiesAfterSubmit:
        def submit(self, principal: Principal, items: list[ArchiveItem], metadata: dict[str, str]) -> ArchiveObjectInfo:
            submitted.append(archive.submit(principal, items, metadata).aoid)
            raise Crash()  # the archive's transaction is committed; the workflow's never happens

    erp = world.users.add("erp", "erp@example.com", "integration", PASSWORD)
    anna = world.person("anna")
    template = _contract(world, [{"name": "a", "assignee": {"user": "anna"}, "action": "sign",
                                  "signature": {**SIGN, "page": 1, "box": [50, 50, 200, 60]}}],
                         delivery=[{"archive": True}])
    wid = world.wf.start(erp, template, make_pdf(), "archiv.pdf", {})["id"]
    world.wf.act(as_user(anna), wid, 1, "sign")
    world.archive = DiesAfterSubmit
    with pytest.raises(Crash):
        world.deliveries.deliver()
    (delivery,) = world.wf.status(erp, wid)["deliveries"]
    assert delivery["state"] == "delivering" and world.wf.status(erp, wid)["archiveObjectId"] is None
    world.archive = lambda: archive  # the restarted process
    assert world.deliveries.deliver() == 0  # the dead attempt's lease holds the row
    world.clock.now += LEASE + timedelta(seconds=1)
    assert world.deliveries.deliver() == 1
    status = world.wf.status(erp, wid)
    assert status["archiveObjectId"] == submitted[0] and len(submitted) == 1
    assert [(d["state"], d["attempts"]) for d in status["deliveries"]] == [("delivered", 2)]
    with pki.engine.connect() as conn:
        assert conn.execute(select(ArchiveObject.aoid).where(ArchiveObject.owner_id == erp.user_id)
                            ).scalars().all() == submitted
    (version,) = archive.info(erp, submitted[0]).versions
    assert version.metadata["workflow"] == str(wid)


def remote_service(world: World) -> FakeCsc:
    """The world's remote signing account "qtsp": the fake CSC service of test_remote_signing_client, signing with
    quinn's HSM key of the test PKI (the caller shuts it down)."""
    fake = FakeCsc(user_key(world.pki, "quinn"))
    world.remote = RemoteSigning({"qtsp": CscClient(RemoteAccount("qtsp", fake.url, "basic", "acme", "secret"),
                                                    timeout=5.0, retries=0)},
                                 world.signing, world.pki.engine, world.pki.audit, 5, 5, INSTALLATION_KEY, 60.0)
    return fake


def test_a_step_signs_with_a_remote_qualified_key_once_the_signer_gives_the_otp(world: World) -> None:
    """The step's remote account is a CSC service (the fake of test_remote_signing_client, signing with quinn's HSM
    key of the test PKI); quinn starts with credential and PIN, the service sends an OTP, quinn finishes."""
    fake = remote_service(world)
    try:
        quinn = world.users.find("quinn")
        anna = world.person("anna")
        qualified = {**SIGN, "page": 1, "box": [50, 50, 200, 60], "keySource": "remote", "remoteService": "qtsp"}
        elsewhere = _contract(world, [{"name": "q", "assignee": {"user": "quinn"}, "action": "sign",
                                       "signature": {**qualified, "remoteService": "anderswo"}}])
        with pytest.raises(SiegelError) as unknown:
            world.wf.start(world.admin, elsewhere, make_pdf(), "q.pdf", {})
        assert unknown.value.code is Code.BAD_REQUEST and "no remote signing account 'anderswo'" in unknown.value.message
        template = _contract(world, [
            {"name": "qualifiziert", "assignee": {"user": "quinn"}, "action": "sign", "signature": qualified},
            {"name": "intern", "assignee": {"user": "anna"}, "action": "sign",
             "signature": {**SIGN, "page": 1, "box": [300, 50, 200, 60]}}])
        wid = world.wf.start(world.admin, template, make_pdf(), "q.pdf", {})["id"]
        for key, words in ((None, "give credential and pin"), (RemoteKey(pin=PIN, otp=OTP), "none is waiting")):
            with pytest.raises(SiegelError) as missing:
                world.wf.act(as_user(quinn), wid, 1, "sign", remote=key)
            assert missing.value.code is Code.BAD_REQUEST and words in missing.value.message

        first = world.wf.act(as_user(quinn), wid, 1, "sign", remote=RemoteKey("cred-1", PIN))
        assert first["remoteSignature"]["state"] == "awaiting-otp" and first["remoteSignature"]["otpSent"]
        waiting = world.wf.act(as_user(quinn), wid, 1, "sign", remote=RemoteKey("cred-1", PIN))  # replaces it
        assert fake.calls["credentials/sendOTP"] == 2 and waiting["steps"][0]["state"] == "active"
        with world.pki.engine.connect() as conn:
            (operation,) = conn.execute(select(RemoteOperation.id)).scalars().all()  # the first was cancelled
            assert conn.execute(select(WorkflowAssignment.remote_operation).where(
                WorkflowAssignment.user_id == quinn.user_id)).scalar_one() == operation
        assert waiting["revision"] == 0 and fake.calls["signatures/signHash"] == 0
        with pytest.raises(SiegelError) as not_hers:
            world.wf.act(as_user(anna), wid, 1, "sign", remote=RemoteKey(pin=PIN, otp=OTP))
        assert not_hers.value.code is Code.FORBIDDEN
        with pytest.raises(RemoteServiceError):  # a wrong PIN: the operation keeps waiting
            world.wf.act(as_user(quinn), wid, 1, "sign", remote=RemoteKey(pin="falsch", otp=OTP))

        done = world.wf.act(as_user(quinn), wid, 1, "sign", remote=RemoteKey(pin=PIN, otp=OTP))
        assert "remoteSignature" not in done and done["revision"] == 1
        assert [s["state"] for s in done["steps"]] == ["done", "active"] and fake.calls["signatures/signHash"] == 1
        with pytest.raises(SiegelError) as internal:
            world.wf.act(as_user(anna), wid, 2, "sign", remote=RemoteKey("cred-1", PIN))
        assert internal.value.code is Code.BAD_REQUEST and "does not sign with a remote" in internal.value.message
        world.wf.act(as_user(anna), wid, 2, "sign")
        report = world.verification.verify(world.wf.document(anna, wid)[1], name="q.pdf")
        assert report.passed and ["CN=quinn" in r.signer_name for r in report.signatures] == [True, False]
        (signed,) = [e for e in world.audit("workflow.sign") if e["step"] == "qualifiziert"]
        assert signed["actor"] == "quinn" and signed["verification"]["passed"]
        with world.pki.engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(RemoteOperation)).scalar_one() == 0
            assert conn.execute(select(WorkflowAssignment.remote_operation).where(
                WorkflowAssignment.user_id == quinn.user_id)).scalar_one() is None
    finally:
        fake.server.shutdown()


def test_a_cancelled_expired_or_rejected_workflow_cancels_its_waiting_remote_signature(world: World) -> None:
    """Each way a workflow ends while its step's remote signature waits for the OTP cancels that operation at
    the service's side of Siegel (RemoteSigning.cancel): nothing is left to authorise, nothing was signed. The
    inbox names the step's remote account and the waiting signature; the credentials offered are the account's
    list, none when the service does not answer."""
    fake = remote_service(world)
    try:
        quinn = world.users.find("quinn")
        template = _contract(world, [{"name": "qualifiziert", "assignee": {"user": "quinn"}, "action": "sign",
                                      "deadlineHours": 24, "signature": {
                                          **SIGN, "page": 1, "box": [50, 50, 200, 60], "keySource": "remote",
                                          "remoteService": "qtsp"}}])

        assert world.wf.remote_credentials("qtsp", "quinn") == ["cred-1"]  # the choice the portal offers
        fake.faults = {"credentials/list": [(500, {"error": "server_error", "error_description": "down"})]}
        assert world.wf.remote_credentials("qtsp", "quinn") is None  # the portal asks for the name instead
        assert world.wf.remote_credentials("anderswo", "quinn") is None

        def waiting() -> tuple[int, str]:
            wid = world.wf.start(world.admin, template, make_pdf(), "q.pdf", {})["id"]
            assert world.wf.inbox(quinn)[0]["remote"] == {"account": "qtsp", "waiting": None}
            started = world.wf.act(as_user(quinn), wid, 1, "sign", remote=RemoteKey("cred-1", PIN))
            assert started["remoteSignature"]["state"] == "awaiting-otp"
            (item,) = world.wf.inbox(quinn)
            assert item["remote"]["waiting"]["credential"] == "cred-1" and item["remote"]["waiting"]["otpSent"]
            with world.pki.engine.connect() as conn:
                (operation,) = conn.execute(select(RemoteOperation.id)).scalars().all()
            return wid, operation

        def ended(wid: int, operation: str, state: str) -> None:
            assert world.wf.status(world.admin, wid)["state"] == state
            with world.pki.engine.connect() as conn:
                assert conn.execute(select(func.count()).select_from(RemoteOperation)).scalar_one() == 0
                assert conn.execute(select(WorkflowAssignment.remote_operation).join(
                    WorkflowStep, WorkflowStep.id == WorkflowAssignment.step_id).where(
                    WorkflowStep.workflow_id == wid)).scalar_one() is None
            with pytest.raises(SiegelError) as gone:  # the OTP would come too late
                world.remote.authorize(quinn.user_id, operation, PIN, OTP)  # type: ignore[union-attr]
            assert gone.value.code is Code.NOT_FOUND

        wid, operation = waiting()
        world.wf.cancel(world.admin, wid, "falsches Dokument")
        ended(wid, operation, "cancelled")

        wid, operation = waiting()
        world.wf.act(as_user(quinn), wid, 1, "reject", "nicht mein Vertrag")
        ended(wid, operation, "rejected")

        wid, operation = waiting()
        world.clock.now += timedelta(hours=25)
        world.wf.run_deadlines()
        ended(wid, operation, "expired")
        assert fake.calls["credentials/sendOTP"] == 3 and fake.calls["signatures/signHash"] == 0
    finally:
        fake.server.shutdown()
