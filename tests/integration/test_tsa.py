"""The RFC 3161 TSA (TimestampAuthority) on the fixture's CA, SoftHSM2 token, SQLite and PostgreSQL.

Tokens are checked by the independent ``openssl ts -verify`` and by our own client's ``verify_token``
with the internal root as trust anchor; the audit log and ``issued_timestamps`` show what was issued.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import cms, tsp
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import func, select, text, update

from adapters.timestamp.client import InvalidToken, parse_response, verify_token
from server.db.models import AuditEntry, Certificate, Counter, IssuedTimestamp
from server.errors import Code, SiegelError
from server.pki import ca as ca_module
from server.pki.keystore import KeyStore
from server.pki.tsa import SERIAL_BLOCK, TimestampAuthority, TsaReply
from tests.fixtures.pki import Pki

pytestmark = pytest.mark.integration

DIGESTS = {"sha256": hashlib.sha256, "sha384": hashlib.sha384, "sha512": hashlib.sha512}
ESS_SIGNING_CERTIFICATE_V2 = "1.2.840.113549.1.9.16.2.47"


@pytest.fixture
def tsa(pki: Pki) -> TimestampAuthority:
    return TimestampAuthority(pki.engine, pki.audit, pki.ca, lambda: pki.hsm, pki.settings.tsa)


def _request(digest: bytes, algorithm: str = "sha256", *, nonce: int | None = None, cert_req: bool = True,
             policy: str | None = None, version: int = 1, extensions: bool = False) -> bytes:
    fields: dict[str, Any] = {"version": version, "cert_req": cert_req, "message_imprint": {
        "hash_algorithm": {"algorithm": algorithm}, "hashed_message": digest}}
    if nonce is not None:
        fields["nonce"] = nonce
    if policy is not None:
        fields["req_policy"] = policy
    if extensions:
        fields["extensions"] = [{"extn_id": "1.3.6.1.4.1.99999.7", "critical": False, "extn_value": b"\x05\x00"}]
    return tsp.TimeStampReq(fields).dump()


def _token(reply: TsaReply) -> bytes:
    status, token = parse_response(reply.der)
    assert status.granted and token is not None and reply.problem is None, status.describe()
    return token


def _parts(token: bytes) -> tuple[cms.SignedData, tsp.TSTInfo, dict[str, Any]]:
    signed_data = cms.ContentInfo.load(token)["content"]
    tst = signed_data["encap_content_info"]["content"].parsed
    attrs = {a["type"].dotted: a["values"][0] for a in signed_data["signer_infos"][0]["signed_attrs"]}
    return signed_data, tst, attrs


def _openssl(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=60,
                          check=False)


def _write_pems(pki: Pki, where: Path) -> dict[str, x509.Certificate]:
    """root.pem, issuing.pem and tsa.pem (the TSA's certificate and the issuing CA's) in ``where``."""
    chain = [x509.load_der_x509_certificate(d) for d in pki.ca.service_credentials("tsa")[1]]
    tsa_cert, issuing, root = chain
    for name, certs in (("root", [root]), ("issuing", [issuing]), ("tsa", [tsa_cert, issuing])):
        (where / f"{name}.pem").write_text("".join(c.public_bytes(Encoding.PEM).decode() for c in certs))
    return {"root": root, "issuing": issuing, "tsa": tsa_cert}


def _rows(pki: Pki) -> list[IssuedTimestamp]:
    with pki.engine.connect() as conn:
        return list(conn.execute(select(IssuedTimestamp).order_by(IssuedTimestamp.serial)).all())


def _tsa_entries(pki: Pki) -> list[AuditEntry]:
    return [e for e in pki.audit.entries() if e.action == "tsa.issue"]


def _audit_count(pki: Pki) -> int:
    with pki.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(AuditEntry)).scalar_one())


# --- granted tokens --------------------------------------------------------------------------------

@pytest.mark.parametrize("algorithm", list(DIGESTS))
def test_tokens_for_every_imprint_hash_verify_with_openssl_and_our_client(
        pki: Pki, tsa: TimestampAuthority, tmp_path: Path, algorithm: str) -> None:
    digest = DIGESTS[algorithm](b"the document").digest()
    nonce = 0x1234567890ABCDEF1234
    certs = _write_pems(pki, tmp_path)
    started = datetime.now(timezone.utc).replace(microsecond=0)

    reply = tsa.respond(_request(digest, algorithm, nonce=nonce))

    finished = datetime.now(timezone.utc)
    token = _token(reply)
    signed_data, tst, attrs = _parts(token)
    assert tst["version"].native == "v1"
    assert tst["policy"].dotted == pki.settings.tsa.policy_oid
    assert tst["message_imprint"]["hash_algorithm"]["algorithm"].native == algorithm
    assert tst["message_imprint"]["hashed_message"].native == digest
    assert tst["nonce"].native == nonce
    assert tst["accuracy"]["seconds"].native == pki.settings.tsa.accuracy_seconds == 1
    assert started <= tst["gen_time"].native <= finished
    (row,) = _rows(pki)
    assert tst["serial_number"].native == row.serial
    assert (row.hash_algorithm, row.imprint, row.policy) == (algorithm, digest.hex(), pki.settings.tsa.policy_oid)

    # ESSCertIDv2 (RFC 5816) names the TSA's certificate; certReq brought the chain below the root
    ess = attrs[ESS_SIGNING_CERTIFICATE_V2]["certs"][0]
    tsa_der = certs["tsa"].public_bytes(Encoding.DER)
    assert ess["hash_algorithm"]["algorithm"].native == "sha256"
    assert ess["cert_hash"].native == hashlib.sha256(tsa_der).digest()
    assert ess["issuer_serial"]["serial_number"].native == certs["tsa"].serial_number
    assert sorted(c.chosen.dump() for c in signed_data["certificates"]) == sorted(
        [tsa_der, certs["issuing"].public_bytes(Encoding.DER)])

    info = verify_token(token, digest, algorithm, [certs["root"]], nonce=nonce)
    assert (info.serial, info.policy, info.signer) == (row.serial, pki.settings.tsa.policy_oid, certs["tsa"])

    (tmp_path / "resp.der").write_bytes(reply.der)
    result = _openssl("ts", "-verify", "-digest", digest.hex(), "-in", "resp.der", "-CAfile", "root.pem",
                      "-untrusted", "issuing.pem", cwd=tmp_path)
    assert result.returncode == 0 and "Verification: OK" in result.stdout, result.stdout + result.stderr
    other = DIGESTS[algorithm](b"another document").hexdigest()
    wrong = _openssl("ts", "-verify", "-digest", other, "-in", "resp.der", "-CAfile", "root.pem",
                     "-untrusted", "issuing.pem", cwd=tmp_path)
    assert wrong.returncode != 0 and "Verification: FAILED" in wrong.stdout

    (entry,) = _tsa_entries(pki)
    assert (entry.actor, entry.target) == ("tsa", str(row.serial))
    assert json.loads(entry.details) | {"gen_time": None} == {
        "hash_algorithm": algorithm, "imprint": digest.hex(), "policy": pki.settings.tsa.policy_oid, "gen_time": None}
    assert pki.audit.verify()[1] is None


@pytest.mark.parametrize("algorithm", list(DIGESTS))
def test_openssl_queries_are_answered(pki: Pki, tsa: TimestampAuthority, tmp_path: Path, algorithm: str) -> None:
    (tmp_path / "document").write_bytes(b"signed by somebody")
    _write_pems(pki, tmp_path)
    made = _openssl("ts", "-query", "-data", "document", f"-{algorithm}", "-cert", "-tspolicy",
                    pki.settings.tsa.policy_oid, "-out", "req.tsq", cwd=tmp_path)
    assert made.returncode == 0, made.stderr

    (tmp_path / "resp.tsr").write_bytes(tsa.respond((tmp_path / "req.tsq").read_bytes()).der)

    result = _openssl("ts", "-verify", "-queryfile", "req.tsq", "-in", "resp.tsr", "-CAfile", "root.pem",
                      "-untrusted", "issuing.pem", cwd=tmp_path)
    assert result.returncode == 0 and "Verification: OK" in result.stdout, result.stdout + result.stderr
    shown = _openssl("ts", "-reply", "-in", "resp.tsr", "-text", cwd=tmp_path).stdout
    assert "Status: Granted." in shown and f"Policy OID: {pki.settings.tsa.policy_oid}" in shown
    assert "Accuracy: 0x01 seconds" in shown and "Nonce: 0x" in shown


def test_without_cert_req_the_token_carries_no_certificates(
        pki: Pki, tsa: TimestampAuthority, tmp_path: Path) -> None:
    digest = hashlib.sha256(b"no certificates please").digest()
    certs = _write_pems(pki, tmp_path)

    reply = tsa.respond(_request(digest, cert_req=False))

    token = _token(reply)
    signed_data, _, _ = _parts(token)
    assert not signed_data["certificates"]
    with pytest.raises(InvalidToken) as caught:
        verify_token(token, digest, "sha256", [certs["root"]])
    assert caught.value.check == "signer certificate"
    assert verify_token(token, digest, "sha256", [certs["root"]],
                        certificates=[certs["tsa"], certs["issuing"]]).signer == certs["tsa"]
    (tmp_path / "resp.der").write_bytes(reply.der)
    result = _openssl("ts", "-verify", "-digest", digest.hex(), "-in", "resp.der", "-CAfile", "root.pem",
                      "-untrusted", "tsa.pem", cwd=tmp_path)
    assert result.returncode == 0 and "Verification: OK" in result.stdout, result.stdout + result.stderr


def test_the_configured_policy_may_be_asked_for_and_the_nonce_is_optional(
        pki: Pki, tsa: TimestampAuthority) -> None:
    digest = hashlib.sha256(b"policy").digest()
    _, tst, _ = _parts(_token(tsa.respond(_request(digest, policy=pki.settings.tsa.policy_oid))))
    assert tst["policy"].dotted == pki.settings.tsa.policy_oid and tst["nonce"].native is None


# --- rejections ------------------------------------------------------------------------------------

_GOOD = _request(hashlib.sha256(b"x").digest(), nonce=7)
BAD_REQUESTS = {
    "truncated": (_GOOD[:-5], "badDataFormat"),
    "trailing-bytes": (_GOOD + b"\x00", "badDataFormat"),
    "garbage": (b"this is no DER at all", "badDataFormat"),
    "empty": (b"", "badDataFormat"),
    "md5": (_request(hashlib.md5(b"x").digest(), "md5"), "badAlg"),
    "sha1": (_request(hashlib.sha1(b"x").digest(), "sha1"), "badAlg"),
    "short-imprint": (_request(hashlib.sha1(b"x").digest(), "sha256"), "badDataFormat"),
    "long-imprint": (_request(hashlib.sha512(b"x").digest(), "sha384"), "badDataFormat"),
    "other-policy": (_request(hashlib.sha256(b"x").digest(), policy="1.3.6.1.4.1.99999.1.2"), "unacceptedPolicy"),
    "extensions": (_request(hashlib.sha256(b"x").digest(), extensions=True), "unacceptedExtension"),
    "version-2": (_request(hashlib.sha256(b"x").digest(), version=2), "badRequest"),
}


@pytest.mark.parametrize("name", list(BAD_REQUESTS))
def test_bad_requests_are_rejected_without_a_trace(pki: Pki, name: str) -> None:
    der, fail_info = BAD_REQUESTS[name]
    audited = _audit_count(pki)
    untouchable = TimestampAuthority(pki.engine, pki.audit, pki.ca, _no_hsm, pki.settings.tsa)

    reply = untouchable.respond(der)

    status, token = parse_response(reply.der)
    assert (status.status, status.fail_info, token) == ("rejection", (fail_info,), None)
    assert reply.problem and status.text == reply.problem
    assert _rows(pki) == [] and _audit_count(pki) == audited


def _no_hsm() -> KeyStore:
    raise AssertionError("the HSM must not be touched")


# --- serial numbers and failures -------------------------------------------------------------------

def test_processes_take_serial_numbers_from_their_own_blocks(pki: Pki) -> None:
    """Each TSA (one per worker process or node) reserves SERIAL_BLOCK numbers at a time from the
    database counter: interleaved requests never share a number, a restarted one leaves a gap."""
    def authority() -> TimestampAuthority:
        return TimestampAuthority(pki.engine, pki.audit, pki.ca, lambda: pki.hsm, pki.settings.tsa)

    def serial(tsa: TimestampAuthority, i: int) -> int:
        return int(_parts(_token(tsa.respond(_request(hashlib.sha256(str(i).encode()).digest()))))[1]
                   ["serial_number"].native)

    first, second = authority(), authority()
    serials = [serial(tsa, i) for i in range(3) for tsa in (first, second)]
    assert serials[0::2] == [1, 2, 3] and serials[1::2] == [SERIAL_BLOCK + 1, SERIAL_BLOCK + 2, SERIAL_BLOCK + 3]
    with pki.engine.connect() as conn:
        assert conn.execute(select(Counter.value).where(Counter.name == "tsa_serial")).scalar_one() == 2 * SERIAL_BLOCK
    assert serial(authority(), 99) == 2 * SERIAL_BLOCK + 1  # a restarted process: the rest of its block is a gap
    assert sorted(r.serial for r in _rows(pki)) == sorted([*serials, 2 * SERIAL_BLOCK + 1])
    assert sorted(int(e.target) for e in _tsa_entries(pki)) == sorted([*serials, 2 * SERIAL_BLOCK + 1])


def test_serial_numbers_are_unique_across_threads(pki: Pki, tsa: TimestampAuthority) -> None:
    threads, per_thread = 8, 25
    start = threading.Barrier(threads)

    def work(worker: int) -> list[tuple[int, bytes, bytes]]:
        start.wait()
        out = []
        for i in range(per_thread):
            digest = hashlib.sha256(f"{worker}/{i}".encode()).digest()
            token = _token(tsa.respond(_request(digest, nonce=worker * 1000 + i)))
            out.append((_parts(token)[1]["serial_number"].native, digest, token))
        return out

    with ThreadPoolExecutor(threads) as pool:
        issued = [t for f in [pool.submit(work, w) for w in range(threads)] for t in f.result()]

    serials = [serial for serial, _, _ in issued]
    assert len(serials) == len(set(serials)) == threads * per_thread
    rows = _rows(pki)
    assert sorted(serials) == [r.serial for r in rows]
    assert {r.serial: r.imprint for r in rows} == {serial: digest.hex() for serial, digest, _ in issued}
    root = pki.ca.ca_certificates()["ROOT"]
    for serial, digest, token in issued:
        assert verify_token(token, digest, "sha256", [root]).serial == serial
    assert sorted(int(e.target) for e in _tsa_entries(pki)) == sorted(serials)
    assert pki.audit.verify()[1] is None


def _system_failure(reply: TsaReply) -> None:
    status, token = parse_response(reply.der)
    assert (status.status, status.fail_info, token) == ("rejection", ("systemFailure",), None)
    assert status.text == "the TSA cannot issue a token now" and reply.problem


def test_an_unreachable_hsm_is_a_system_failure_that_costs_no_serial(pki: Pki, tsa: TimestampAuthority) -> None:
    def down() -> KeyStore:
        raise SiegelError(Code.HSM_UNAVAILABLE, "token removed")

    first = _parts(_token(tsa.respond(_request(hashlib.sha256(b"1").digest()))))[1]["serial_number"].native
    audited = _audit_count(pki)

    reply = TimestampAuthority(pki.engine, pki.audit, pki.ca, down, pki.settings.tsa).respond(
        _request(hashlib.sha256(b"2").digest()))

    _system_failure(reply)
    assert reply.problem == "token removed"
    assert [r.serial for r in _rows(pki)] == [first] and _audit_count(pki) == audited


def test_a_failed_signature_leaves_a_gap_never_a_duplicate(pki: Pki, tsa: TimestampAuthority,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ca_module, "SERVICE_CACHE_SECONDS", 0.0)  # the key label is changed behind its back
    first = _parts(_token(tsa.respond(_request(hashlib.sha256(b"1").digest()))))[1]["serial_number"].native
    with pki.engine.begin() as conn:
        real = conn.execute(select(Certificate.key_label).where(Certificate.profile == "tsa")).scalar_one()
        conn.execute(update(Certificate).where(Certificate.profile == "tsa").values(key_label="no-such-key"))

    reply = tsa.respond(_request(hashlib.sha256(b"2").digest()))

    _system_failure(reply)
    assert "no-such-key" in (reply.problem or "")
    rows = _rows(pki)
    assert len(rows) == 2 and rows[0].serial == first  # reserved with its audit entry before the HSM failed
    gap = rows[1].serial
    with pki.engine.begin() as conn:
        conn.execute(update(Certificate).where(Certificate.profile == "tsa").values(key_label=real))
    after = _parts(_token(tsa.respond(_request(hashlib.sha256(b"3").digest()))))[1]["serial_number"].native
    assert first < gap < after
    assert [int(e.target) for e in _tsa_entries(pki)] == [first, gap, after]
    assert pki.audit.verify()[1] is None


def test_a_failing_database_is_a_system_failure(pki: Pki, tsa: TimestampAuthority) -> None:
    with pki.engine.begin() as conn:
        conn.execute(text("DROP TABLE issued_timestamps"))
    audited = _audit_count(pki)

    reply = tsa.respond(_request(hashlib.sha256(b"no table").digest()))

    _system_failure(reply)
    assert _audit_count(pki) == audited


def test_a_revoked_tsa_certificate_is_not_used_and_a_renewed_one_is(pki: Pki, tsa: TimestampAuthority) -> None:
    digest = hashlib.sha256(b"renewal").digest()
    root = pki.ca.ca_certificates()["ROOT"]
    old = verify_token(_token(tsa.respond(_request(digest))), digest, "sha256", [root]).signer

    pki.ca.revoke(format(old.serial_number, "x"), "keyCompromise")
    _system_failure(tsa.respond(_request(digest)))
    pki.ca.init("admin")

    new = verify_token(_token(tsa.respond(_request(digest))), digest, "sha256", [root]).signer
    assert new != old and new.public_key() != old.public_key()
    assert new.serial_number == x509.load_der_x509_certificate(pki.ca.service_credentials("tsa")[1][0]).serial_number
