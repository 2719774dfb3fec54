"""A workflow's history — who, when, what, from where, how authenticated, the verification of each signature —
as JSON and as a certificate of completion: a PDF listing the same, signed by Siegel's workflow account.

The history is read from the audit log (every entry whose target is the workflow or one of its steps), so it
says exactly what the hash chain holds. The certificate is signed (invisible PAdES, ``signing.default_level``)
with the user-signing certificate of the system account ``system.workflows`` (no password: it never logs in),
issued by the internal CA on first use.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from sqlalchemy import Engine, or_, select

from server.db.models import AuditEntry
from server.signing.levels import Level, Packaging
from server.signing.order import Document, Format, PdfOptions, SignOrder
from server.signing.service import SigningService

SYSTEM_ACCOUNT = "system.workflows"


def audit_target(workflow_id: int, position: int | None = None) -> str:
    """The audit entries' target naming a workflow (``workflow:7``) or one of its steps (``workflow:7/2``)."""
    return f"workflow:{workflow_id}" + (f"/{position}" if position is not None else "")


def history(engine: Engine, workflow_id: int, status: dict[str, Any]) -> dict[str, Any]:
    """The workflow's status and its audit entries in order."""
    with engine.connect() as conn:
        rows = conn.execute(select(AuditEntry).where(or_(AuditEntry.target == audit_target(workflow_id),
                                                         AuditEntry.target.like(audit_target(workflow_id) + "/%")))
                            .order_by(AuditEntry.seq)).all()
    events = [{"seq": r.seq, "at": r.at, "actor": r.actor, "action": r.action, "target": r.target,
               "details": json.loads(r.details), "hash": r.hash} for r in rows]
    return {"workflow": status, "events": events}


def _lines(record: dict[str, Any], company: str) -> list[str]:
    wf = record["workflow"]
    out = [company, f"Certificate of completion - workflow {wf['id']}", "",
           f"Document: {wf['documentName']}  (SHA-256 {wf['documentSha256']})",
           f"Template: {wf['template']['name']} version {wf['template']['version']}",
           f"Started by {wf['startedBy']} at {wf['created']}; {wf['state']} at {wf['finished'] or '-'}"
           + (f": {wf['reason']}" if wf["reason"] else ""), "", "Steps:"]
    for step in wf["steps"]:
        out.append(f"{step['position']}. {step['name']} ({step['action']}, auth {step['auth']}): {step['state']}")
        for a in step["assignees"]:
            verification = a["verification"] or {}
            checked = ("" if not verification else
                       " - signatures verified: " + ("all passed" if verification.get("passed") else "FAILED"))
            out.append(f"   {a['user'] or a['email']}: {a['action'] or a['state']} at {a['actedAt'] or '-'}, "
                       f"authenticated by {a['auth'] or '-'} from {a['address'] or '-'}{checked}")
    out += ["", "Audit log entries (sequence, time, actor, action, entry hash):"]
    for e in record["events"]:
        out.append(f"#{e['seq']} {e['at']} {e['actor']} {e['action']} {e['target']} {e['hash'][:16]}")
    return out


def certificate_pdf(record: dict[str, Any], company: str = "Siegel", logo_png: bytes | None = None) -> bytes:
    """The unsigned certificate of completion: the history as text lines (server.branding.pdf) under the
    company's name and (on the first page, top right) its logo."""
    from server.branding.pdf import text_pdf  # fonts, HarfBuzz, Pillow: ~16 MB, on first use

    return text_pdf(_lines(record, company), logo_png)


def signed_certificate(record: dict[str, Any], signing: SigningService, signer: Callable[[], tuple[int, str]],
                       level: Level, company: str = "Siegel", logo_png: bytes | None = None) -> bytes:
    """The certificate of completion signed (invisibly) by the workflow system account ``signer`` names."""
    user_id, name = signer()
    content = certificate_pdf(record, company, logo_png)
    order = SignOrder(Format.PADES, level, Packaging.ENVELOPED,
                      (Document(f"completion-{record['workflow']['id']}.pdf", content=content,
                                mime_type="application/pdf"),), pdf=PdfOptions(invisible=True))
    return signing.sign(user_id, name, order)[0].data
