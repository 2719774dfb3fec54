"""The directory sync's workflow flags against a real slapd (on SQLite and PostgreSQL): an account disabled in
the directory gets its pending assignments flagged, enabled again it gets them cleared, each with an audit entry;
an assignment that is no longer pending keeps its flag, and another account's flag is left alone; an
administrator's enable clears them through the same hook (and an administrator's later disable sticks). The admin
portal's list and duration chart (server.workflows.overview) count the flagged steps per workflow and the time
to completion on both databases."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from server.db.models import Workflow, WorkflowAssignment, WorkflowStep, WorkflowTemplate
from server.identity.directory import DirectorySync
from server.identity.users import UserService
from server.workflows.flags import DISABLED_FLAG, clear_enabled_in, flag_disabled_in
from server.workflows.overview import WorkflowOverview
from tests.fixtures.pki import Pki
from tests.fixtures.slapd import Org, SlapdServer, org_ldif
from tests.integration.test_directory import ROLES, Readers, directory_settings, users_by_name


@pytest.fixture
def org(slapd_server: SlapdServer) -> Org:
    ldif, made = org_ldif(f"f{uuid.uuid4().hex[:8]}", users=3, team_size=3, teams_per_department=1)
    slapd_server.add_ldif(ldif)
    return made


def _workflow(engine: Engine, starter: int, assignees: list[tuple[int, str]]) -> list[int]:
    """A running one-step workflow with an assignment (user id, state) each; their ids."""
    now = datetime.now(UTC)
    with Session(engine) as session, session.begin():
        template = WorkflowTemplate(name=f"t-{uuid.uuid4().hex[:8]}", current_version=1, created_at=now)
        session.add(template)
        session.flush()
        workflow = Workflow(template_id=template.id, template_version=1, state="running", started_by=starter,
                            document_name="vertrag.pdf", revision=1, document_sha256="0" * 64, variables="{}",
                            created_at=now)
        session.add(workflow)
        session.flush()
        step = WorkflowStep(workflow_id=workflow.id, position=1, state="active", version=0, activated_at=now)
        session.add(step)
        session.flush()
        rows = [WorkflowAssignment(step_id=step.id, user_id=user, email=f"{user}@example.com", external=False,
                                   state=state) for user, state in assignees]
        session.add_all(rows)
        session.flush()
        return [r.id for r in rows]


def _workflow_of(engine: Engine, assignment: int) -> int:
    with engine.connect() as conn:
        return conn.execute(select(WorkflowStep.workflow_id).join(
            WorkflowAssignment, WorkflowAssignment.step_id == WorkflowStep.id).where(
            WorkflowAssignment.id == assignment)).scalar_one()


def _flagged(engine: Engine) -> dict[int, int]:
    """The admin list's workflows with flagged steps: id → how many."""
    return {w.id: w.flagged for w in WorkflowOverview(engine).workflows(flagged_only=True)}


def _flags(engine: Engine, ids: list[int]) -> list[tuple[str | None, bool]]:
    with engine.connect() as conn:
        found = {r.id: (r.flag, r.flagged_at is not None) for r in conn.execute(
            select(WorkflowAssignment.__table__).where(WorkflowAssignment.__table__.c.id.in_(ids)))}
    return [found[i] for i in ids]


def _flagging_sync(pki: Pki, slapd_server: SlapdServer, org: Org) -> DirectorySync:
    """The directory sync wired as server.app wires it (flags on disable, cleared on enable), after a full run."""
    settings = directory_settings(pki.settings.directory, slapd_server, org)
    sync = DirectorySync(pki.engine, pki.audit, settings, Readers(settings, slapd_server.password), None, ROLES,
                         on_disable=flag_disabled_in, on_enable=clear_enabled_in)
    assert sync.run(full=True).errors == []
    return sync


def test_an_administrators_enable_clears_the_flags_as_the_syncs_does(pki: Pki, slapd_server: SlapdServer,
                                                                     org: Org) -> None:
    sync = _flagging_sync(pki, slapd_server, org)
    leaving, other, starter = org.users
    ids = users_by_name(pki.engine)
    pending, done = _workflow(pki.engine, ids[starter].id, [(ids[leaving].id, "pending"), (ids[leaving].id, "done")])
    (others,) = _workflow(pki.engine, ids[starter].id, [(ids[other].id, "pending")])
    slapd_server.set_disabled(org, leaving, True)
    slapd_server.set_disabled(org, other, True)
    assert sync.run().workflow_steps == 2
    with pki.engine.begin() as conn:  # acted on while flagged: the flag stays as history
        conn.execute(WorkflowAssignment.__table__.update().where(WorkflowAssignment.__table__.c.id == done)
                     .values(flag=DISABLED_FLAG, flagged_at=datetime.now(UTC)))

    users = UserService(pki.engine, pki.audit, 0)
    users.on_enable = clear_enabled_in  # the wiring's (server.app)
    assert users.enable(leaving, actor="root") is True
    assert not users_by_name(pki.engine)[leaving].disabled
    assert _flags(pki.engine, [pending, done, others]) == [(None, False), (DISABLED_FLAG, True), (DISABLED_FLAG, True)]
    entries = pki.audit.search(action="workflow.unflag")
    assert [(e.actor, e.target) for e in entries] == [("root", f"workflow:{_workflow_of(pki.engine, pending)}/1")]
    assert [e.actor for e in pki.audit.search(action="user.enable")] == ["root"]
    assert users.enable(leaving, actor="root") is False  # enabled already: nothing more
    assert len(pki.audit.search(action="workflow.unflag")) == 1

    slapd_server.set_disabled(org, leaving, False)  # the directory agrees now; the administrator disables it
    assert users.disable(leaving, actor="root") is True
    assert sync.run().enabled == 0  # an administrator's disable sticks: the sync no longer counts it as its own
    assert users_by_name(pki.engine)[leaving].disabled
    assert pki.audit.verify()[1] is None


def test_disabled_flags_and_enabled_again_clears(pki: Pki, slapd_server: SlapdServer, org: Org) -> None:
    sync = _flagging_sync(pki, slapd_server, org)
    leaving, other, starter = org.users
    ids = users_by_name(pki.engine)
    pending, done = _workflow(pki.engine, ids[starter].id, [(ids[leaving].id, "pending"), (ids[leaving].id, "done")])
    (others,) = _workflow(pki.engine, ids[starter].id, [(ids[other].id, "pending")])

    slapd_server.set_disabled(org, leaving, True)
    slapd_server.set_disabled(org, other, True)
    off = sync.run()
    assert (off.disabled, off.workflow_steps, off.workflow_steps_cleared) == (2, 2, 0), off.lines()
    assert _flags(pki.engine, [pending, done, others]) == [(DISABLED_FLAG, True), (None, False), (DISABLED_FLAG, True)]
    assert _flagged(pki.engine) == {_workflow_of(pki.engine, pending): 1, _workflow_of(pki.engine, others): 1}
    with pki.engine.begin() as conn:  # acted on since: the flag stays as history
        conn.execute(WorkflowAssignment.__table__.update().where(WorkflowAssignment.__table__.c.id == pending)
                     .values(state="cancelled"))
    (again,) = _workflow(pki.engine, ids[starter].id, [(ids[leaving].id, "pending")])
    with pki.engine.begin() as conn:  # a newer pending assignment of the disabled account, flagged by hand here
        conn.execute(WorkflowAssignment.__table__.update().where(WorkflowAssignment.__table__.c.id == again)
                     .values(flag=DISABLED_FLAG, flagged_at=datetime.now(UTC)))

    slapd_server.set_disabled(org, leaving, False)
    back = sync.run()
    assert (back.enabled, back.workflow_steps, back.workflow_steps_cleared) == (1, 0, 1), back.lines()
    assert "workflow step flags cleared: 1" in back.lines()
    assert not users_by_name(pki.engine)[leaving].disabled
    assert _flags(pki.engine, [again, pending, others]) == [(None, False), (DISABLED_FLAG, True), (DISABLED_FLAG, True)]
    workflow_of = _workflow_of(pki.engine, again)
    assert _flagged(pki.engine) == {_workflow_of(pki.engine, others): 1}  # pending's is cancelled now
    assert {w.id for w in WorkflowOverview(pki.engine).workflows(state="running")} >= {workflow_of}
    entries = pki.audit.search(action="workflow.unflag")
    assert [(e.actor, e.target) for e in entries] == [("ldap-sync", f"workflow:{workflow_of}/1")], entries
    assert len(pki.audit.search(action="workflow.flag")) == 2
    assert sync.run().workflow_steps_cleared == 0  # cleared once
    assert pki.audit.verify()[1] is None

    workflows = Workflow.__table__  # completed 90 s after its start: the duration chart's numbers
    with pki.engine.begin() as conn:
        created = conn.execute(select(workflows.c.created_at).where(workflows.c.id == workflow_of)).scalar_one()
        conn.execute(workflows.update().where(workflows.c.id == workflow_of)
                     .values(state="completed", finished_at=created + timedelta(seconds=90)))
    (durations,) = WorkflowOverview(pki.engine).durations(datetime.now(UTC) - timedelta(days=1))
    assert durations.seconds == [90.0] and durations.percentile(90) == 90.0
