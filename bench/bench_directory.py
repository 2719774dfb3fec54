"""Directory sync: a full sync of 10,000 users in nested groups, an incremental one with 10 changes,
and certificates enrolled per second against the raw HSM key-generation rate.

slapd (our AD-like schema) is loaded with slapadd: 10,000 users in 200 teams of 50, teams in 50
departments, departments in all-staff, all-staff in signers (roles three groups down), the first team
in admins; every 97th user disabled (userAccountControl 514). The database is the embedded default,
SQLite under a fresh ``siegel init`` data directory (EC P-256 keys on its SoftHSM2 token).

- full: ``DirectorySync.run(full=True)`` on an empty database, no enrolment group (certificates excluded);
- incremental: 10 users' mail changed with ldapmodify, then ``run()``;
- enrolment: one department (200 users) made the enrolment group, then ``run()``: each enabled member
  gets an EC P-256 key in the HSM and a certificate from the issuing CA (database rows and audit entries
  included); the rate is over the enrolment phase (first to last ``issue_user``);
- baseline: EC P-256 key pairs generated on the same token (``generate_key``), one thread, same run.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from adapters.directory.ldap import LdapDirectory
from bench.report import write_result
from server import config
from server.app import build_services
from server.identity.directory import DirectorySync
from server.identity.users import Role
from server.signing.keysource import KeyKind
from tests.fixtures.ports import free_port
from tests.fixtures.server import make_instance
from tests.fixtures.slapd import SlapdServer, org_ldif

USERS = 10_000
CHANGES = 10
ENROL_DEPARTMENT = "big-dept-1"  # 4 teams of 50
RAW_KEYS = 100


class TimedCa:
    """The CA service with the span of its ``issue_user`` calls recorded."""

    def __init__(self, ca: Any) -> None:
        self._ca = ca
        self.first: float | None = None
        self.last: float | None = None

    def issue_user(self, name: str, actor: str) -> Any:
        if self.first is None:
            self.first = time.monotonic()
        try:
            return self._ca.issue_user(name, actor)
        finally:
            self.last = time.monotonic()

    def revoke(self, serial: str, reason: str, actor: str) -> Any:
        return self._ca.revoke(serial, reason, actor)


def _keygen_rate(hsm: Any, tag: str) -> float:
    started = time.monotonic()
    for i in range(RAW_KEYS):
        hsm.generate_key(f"bench-raw-{tag}-{i}", KeyKind.EC_P256)
    return RAW_KEYS / (time.monotonic() - started)


def run(work: Path) -> Path:
    inst = make_instance(work / "directory")
    slapd = SlapdServer(base=work / "slapd", port=free_port(), base_dn="dc=big,dc=test", bind_dn="cn=admin,dc=big,dc=test")
    ldif, org = org_ldif("big", users=USERS, team_size=50, teams_per_department=4, disabled_every=97,
                         parent="dc=big,dc=test", with_base=True)
    started = time.monotonic()
    slapd.load_offline(ldif)
    slapadd_seconds = time.monotonic() - started
    slapd.start()
    services = build_services(config.load(data_dir=inst.data_dir, environ={"SIEGEL_PKI_KEY_ALGORITHM": "ec-p256"}))
    try:
        settings = replace(services.settings.directory, enabled=True, servers=slapd.url, start_tls=False,
                           bind_dn=slapd.bind_dn, user_base=org.users_dn, group_base=org.groups_dn,
                           role_groups="big-admins=admin, big-signers=signer", default_role="signer", enrol_groups="")
        roles = [r.value for r in Role]
        readers: list[LdapDirectory] = []

        def reader() -> LdapDirectory:
            readers.append(LdapDirectory(settings, slapd.password))
            return readers[-1]

        sync = DirectorySync(services.engine, services.audit, settings, reader, services.ca, roles)
        started = time.monotonic()
        full = sync.run(full=True)
        full_seconds = time.monotonic() - started
        assert full.created == USERS and not full.errors, full.lines()[:5]

        started = time.monotonic()
        resync = sync.run(full=True)
        resync_seconds = time.monotonic() - started
        assert resync.unchanged == USERS, resync.lines()[:5]

        changed = org.users[100:100 + CHANGES * 97:97][:CHANGES]
        slapd.modify_ldif("\n".join(f"dn: {org.user_dn(u)}\nchangetype: modify\nreplace: mail\nmail: {u}@moved.test\n"
                                    for u in changed))
        started = time.monotonic()
        incremental = sync.run()
        incremental_seconds = time.monotonic() - started
        assert (incremental.users_read, incremental.updated) == (CHANGES, CHANGES), incremental.lines()[:5]

        hsm = services.hsm.get()
        keygen_before = _keygen_rate(hsm, "before")
        timed = TimedCa(services.ca)
        enrol = DirectorySync(services.engine, services.audit, replace(settings, enrol_groups=ENROL_DEPARTMENT), reader,
                              timed, roles)  # type: ignore[arg-type]
        started = time.monotonic()
        enrolled = enrol.run()
        enrol_run_seconds = time.monotonic() - started
        assert enrolled.certificates_issued > 0 and not enrolled.errors, enrolled.lines()[:5]
        assert timed.first is not None and timed.last is not None
        enrol_rate = enrolled.certificates_issued / (timed.last - timed.first)

        keygen_after = _keygen_rate(hsm, "after")
        keygen_rate = (keygen_before + keygen_after) / 2
    finally:
        services.close()
        slapd.stop()
    return write_result(
        "directory",
        measured={"full_sync_10000_users_s": round(full_seconds, 2),
                  "full_resync_10000_unchanged_s": round(resync_seconds, 2),
                  "incremental_10_changes_of_10000_s": round(incremental_seconds, 3),
                  "certificates_enrolled_per_s": round(enrol_rate, 1),
                  "enrolment_run_s": round(enrol_run_seconds, 2),
                  "certificates_enrolled": enrolled.certificates_issued,
                  "slapadd_10000_users_s": round(slapadd_seconds, 2)},
        baseline={"hsm_ec_p256_keygen_per_s": round(keygen_rate, 1),
                  "hsm_ec_p256_keygen_per_s_before_enrolment": round(keygen_before, 1),
                  "hsm_ec_p256_keygen_per_s_after_enrolment": round(keygen_after, 1)},
        ratios={"enrolment_vs_raw_keygen": round(enrol_rate / keygen_rate, 3)},
        goals={"full_sync_10000_users_s": "<= 30", "incremental_10_changes_of_10000_s": "<= 2"},
        notes=f"slapd on loopback (entryCSN high-water mark, nested groups expanded by Siegel: {full.groups_read} "
              "groups read on every run), SQLite database (WAL) of a `siegel init` data directory, one process; "
              "full sync without certificates on an empty database, re-sync of the unchanged directory, "
              f"incremental after {CHANGES} mail changes; enrolment: {enrolled.certificates_issued} enabled members "
              f"of {ENROL_DEPARTMENT} each get an EC P-256 key on SoftHSM2 and a certificate (rows, audit entries) "
              f"sequentially; baseline: {RAW_KEYS} EC P-256 key pairs generated on the same token by Pkcs11Hsm.generate_key, "
              "one thread, just before and just after the enrolment (the token grows; the mean is the baseline); "
              "the machine is shared with other work, so only same-run ratios mean much",
    )
