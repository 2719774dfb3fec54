"""The administrators' view of the remote signing accounts: per account the service, its credentials with
their certificates' validity, the signatures Siegel made with each (counted in the audit log: one
``sign.<format>`` entry per document, its ``key_label`` ``remote:<account>/<credential>``), and the quota
or terms when the service's ``info`` reports them."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from sqlalchemy import Engine, select

from adapters.remote_signing.client import CscClient, RemoteServiceError, certificate_validity
from adapters.remote_signing.operations import remote_key_label
from server.db.models import AuditEntry

INFO_EXTRAS = ("quota", "terms", "termsOfService", "remainingSignatures")  # non-standard info fields shown when present


def signature_counts(engine: Engine) -> Counter[str]:
    """Documents signed per remote key label, from the audit log."""
    counts: Counter[str] = Counter()
    with engine.connect() as conn:
        rows = conn.execute(select(AuditEntry.details).where(AuditEntry.action.like("sign.%"),
                                                             AuditEntry.details.like('%"key_label":"remote:%')))
        for (details,) in rows:
            label = json.loads(details).get("key_label", "")
            if label.startswith("remote:"):
                counts[label] += 1
    return counts


def accounts_overview(clients: dict[str, CscClient], engine: Engine) -> list[dict[str, Any]]:
    """One entry per configured account; a service that does not answer is reported with its error."""
    counts = signature_counts(engine)
    out: list[dict[str, Any]] = []
    for name, client in sorted(clients.items()):
        a = client.account
        entry: dict[str, Any] = {"name": name, "url": a.url, "auth": a.auth, "users": sorted(a.users),
                                 "credentials": [], "error": None}
        try:
            info = client.info()
            entry["service"] = {k: info.get(k) for k in ("name", "specs", "region", "description")}
            entry.update({k: info[k] for k in INFO_EXTRAS if k in info})
            for credential in client.credentials():
                details = client.credential_info(credential)
                entry["credentials"].append({
                    "id": credential, "scal": details.scal, "authMode": details.auth_mode,
                    "keyStatus": details.key_status, "certificateStatus": details.certificate_status,
                    "otp": details.otp_type if details.needs_otp else None, "multisign": details.multisign,
                    **certificate_validity(details),
                    "signaturesBySiegel": counts.get(remote_key_label(name, credential), 0)})
        except RemoteServiceError as exc:
            entry["error"] = exc.message
        out.append(entry)
    return out
