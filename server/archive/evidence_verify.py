"""Verification of an evidence record against a document (bytes) or its given hash(es) (RFC 4998 5.3 / RFC 6283 5).

Every Archive Time-Stamp (ATS) is checked in three steps — **reference** (the value it must cover is
in its first partial hash tree, or is the timestamp's imprint when there is no tree), **hash-tree**
(the reduced tree leads to the timestamp's message imprint), **timestamp** (the RFC 3161 token,
``adapters.timestamp.client.verify_token``: imprint, CMS signature, TSA certificate EKU and validity
at genTime, ESSCertID, chain) — and the record as a whole in **chain** (timestamp renewal: each ATS
covers the previous one, times ascending, same algorithm) and **sequence** steps (hash-tree
renewal: each new chain covers the document together with the previous ATS sequence; RFC 4998 says
H(h(d) + ha), reported erratum 7411 sorts the pair, EU DSS's XML puts h(d) and ha side by side in the
first partial hash tree — each is accepted and the report names which), and **algorithm**
(a chain whose hash algorithm passed its horizon before the next chain began, or before now for the
last chain, is reported).

Trust: a token whose signature verifies but whose TSA does not chain to one of ``trust.roots`` (the
internal CA and the configured anchors, from the caller) is INDETERMINATE /
NO_CERTIFICATE_CHAIN_FOUND, never PASSED: the vectors' "valid(crypto)". A record proves existence
at the time of its first timestamp (``EvidenceReport.proof_time``) only when TOTAL-PASSED.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from asn1crypto import cms, tsp
from cryptography import x509

from adapters.timestamp.client import HASHES as TOKEN_HASHES
from adapters.timestamp.client import InvalidToken, TimestampError, TstInfo, verify_token
from server.archive import ers, xmlers
from server.archive.hashtree import HASHES, digest, group_hash, root_of
from server.archive.record import ArchiveTimestamp, EvidenceRecord, sequence_digest, timestamp_renewal_digest
from server.errors import Code, SiegelError
from server.validation.model import Indication, SubIndication, Trust
from server.validation.timestamps import message_imprint

DEFAULT_HORIZONS: Mapping[str, datetime] = {
    "sha1": datetime(2010, 12, 31, tzinfo=UTC),
    "sha224": datetime(2015, 12, 31, tzinfo=UTC),
}
"""When a hash algorithm stopped protecting evidence (BSI TR-02102-1 / SOG-IS); the caller may pass its own."""


@dataclass(frozen=True)
class Step:
    """One check: ``passed`` is True, False (failed) or None (could not be decided)."""

    check: str  # format | reference | hash-tree | timestamp | chain | sequence | algorithm
    passed: bool | None
    message: str
    chain: int | None = None  # 1-based, as RFC 6283's Order
    timestamp: int | None = None  # 1-based within the chain
    sub_indication: SubIndication | None = None
    time: datetime | None = None


@dataclass
class EvidenceReport:
    """The verdict on one evidence record with every step that led to it."""

    indication: Indication
    sub_indication: SubIndication | None
    steps: list[Step] = field(default_factory=list)
    proof_time: datetime | None = None  # existence proven since (the first ATS's time) when TOTAL-PASSED

    @property
    def passed(self) -> bool:
        return self.indication is Indication.TOTAL_PASSED

    def to_json(self) -> dict[str, Any]:
        """Stable JSON form (times ISO 8601 UTC) for REST, CLI and S.4."""
        return {
            "indication": self.indication.value,
            "subIndication": self.sub_indication.value if self.sub_indication else None,
            "proofTime": _iso(self.proof_time),
            "steps": [{"check": s.check, "passed": s.passed, "message": s.message, "chain": s.chain,
                       "timestamp": s.timestamp,
                       "subIndication": s.sub_indication.value if s.sub_indication else None,
                       "time": _iso(s.time)} for s in self.steps],
        }


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z") if moment else None


def decode(data: bytes) -> EvidenceRecord:
    """An ERS (DER) or XMLERS record, told apart by its first byte."""
    start = data.lstrip()[:1]
    return xmlers.decode(data) if start in (b"<", b"\xef") else ers.decode(data)


def verify(record: EvidenceRecord | bytes, *, data: bytes | None = None, digests: Mapping[str, bytes] | None = None,
           trust: Trust | None = None, horizons: Mapping[str, datetime] = DEFAULT_HORIZONS,
           now: datetime | None = None) -> EvidenceReport:
    """The report on ``record`` for the document ``data`` or its hash(es) ``digests`` (algorithm → hash)."""
    if data is None and not digests:
        raise SiegelError(Code.BAD_REQUEST, "verifying an evidence record needs the document or its hash")
    if isinstance(record, bytes):
        try:
            record = decode(record)
        except SiegelError as exc:
            failed = exc.code is Code.BAD_REQUEST or exc.code is Code.MALFORMED_XML
            sub = SubIndication.FORMAT_FAILURE if failed else SubIndication.GENERIC
            return _report([Step("format", False if failed else None, exc.message, sub_indication=sub)])
    return _Verifier(record, data, dict(digests or {}), trust or Trust(()), horizons,
                     now or datetime.now(UTC)).run()


class _Verifier:
    def __init__(self, record: EvidenceRecord, data: bytes | None, digests: dict[str, bytes], trust: Trust,
                 horizons: Mapping[str, datetime], now: datetime) -> None:
        self.record = record
        self.data = data
        self.digests = digests
        self.roots = tuple(trust.roots)
        self.horizons = horizons
        self.now = now
        self.steps: list[Step] = []

    def run(self) -> EvidenceReport:
        previous_time: datetime | None = None
        times: list[list[datetime | None]] = []
        for c, chain in enumerate(self.record.chains):
            algorithm = chain[0].digest_algorithm
            chain_times: list[datetime | None] = []
            for i, ats in enumerate(chain):
                if ats.digest_algorithm != algorithm:
                    self._step("chain", False, f"uses {ats.digest_algorithm}, its chain {algorithm}", c, i,
                               SubIndication.FORMAT_FAILURE)
                covered = self._covered(c, i)
                if covered is None:
                    chain_times.append(None)
                    continue
                time = self._timestamp(ats, covered, c, i)
                if time is not None and previous_time is not None:
                    kind = "chain" if i else "sequence"
                    if time < previous_time:
                        self._step(kind, False, f"made at {_iso(time)}, before the timestamp it renews "
                                                f"({_iso(previous_time)})", c, i, SubIndication.TIMESTAMP_ORDER_FAILURE)
                    else:
                        self._step(kind, True, f"made at {_iso(time)}, after the timestamp it renews", c, i)
                previous_time = time or previous_time
                chain_times.append(time)
            times.append(chain_times)
        self._algorithms(times)
        first = times[0][0] if times and times[0] else None
        report = _report(self.steps)
        if report.passed:
            report.proof_time = first
        return report

    def _step(self, check: str, passed: bool | None, message: str, chain: int | None = None,
              index: int | None = None, sub: SubIndication | None = None, time: datetime | None = None) -> None:
        self.steps.append(Step(check, passed, message, None if chain is None else chain + 1,
                               None if index is None else index + 1, sub, time))

    def _document_hash(self, algorithm: str, c: int) -> bytes | None:
        if self.data is not None:
            return digest(algorithm, self.data)
        value = self.digests.get(algorithm)
        if value is None:
            self._step("reference", None, f"no {algorithm} hash of the document was given (chain "
                                          f"{c + 1} needs one)", c, 0, SubIndication.SIGNED_DATA_NOT_FOUND)
        return value

    def _covered(self, c: int, i: int) -> _Cover | None:
        """What ATS (c, i) must cover: the alternatives, and a value that must sit beside them."""
        chain = self.record.chains[c]
        algorithm = chain[i].digest_algorithm
        xml = self.record.syntax == "xml"
        if i:
            if xml:
                return _Cover([("the previous ATS's TimeStamp element",
                                xmlers.timestamp_renewal_digest(self.record, c, i - 1))])
            return _Cover([("the previous ATS's timeStamp", timestamp_renewal_digest(chain[i - 1], algorithm))])
        document = self._document_hash(algorithm, c)
        if document is None:
            return None
        if not c:
            return _Cover([("the document", document)])
        if xml:
            return _Cover([("the document", document)], ("the previous ArchiveTimeStampSequence",
                                                         xmlers.sequence_digest(self.record, c, algorithm)))
        ha = sequence_digest(EvidenceRecord(self.record.digest_algorithms, self.record.chains[:c]), algorithm)
        return _Cover([("the document and the previous ATS sequence (h(d) + ha, RFC 4998 text)",
                        digest(algorithm, document + ha)),
                       ("the document and the previous ATS sequence (sorted, RFC 4998 erratum 7411)",
                        group_hash(algorithm, [document, ha]))], group=(document, ha))

    def _timestamp(self, ats: ArchiveTimestamp, cover: _Cover, c: int, i: int) -> datetime | None:
        """Steps reference, hash-tree and timestamp of one ATS; its time when the token's signature verifies."""
        try:
            imprint_algorithm, imprint = message_imprint(ats.timestamp)
        except ValueError as exc:
            self._step("timestamp", False, str(exc), c, i, SubIndication.FORMAT_FAILURE)
            return None
        first = ats.reduced_tree[0] if ats.reduced_tree else (imprint,)
        found = [(what, value) for what, value in cover.values if value in first]
        if not found and cover.group and all(v in first for v in cover.group):
            found = [("the document and the previous ATS sequence (both in the first partial hash tree)",
                      cover.group[0])]
        if not found:
            where = "first partial hash tree" if ats.reduced_tree else "timestamp's message imprint"
            what = cover.values[0][0].split(" (")[0]
            self._step("reference", False, f"the hash of {what} is not in the {where}", c, i,
                       SubIndication.HASH_FAILURE)
            return None
        what, value = found[0]
        if cover.beside is not None:
            if cover.beside[1] not in first:
                self._step("sequence", False, f"the hash of {cover.beside[0]} is not in the first partial hash "
                                              "tree", c, i, SubIndication.HASH_FAILURE)
                return None
            self._step("sequence", True, f"the first partial hash tree holds the hash of {cover.beside[0]}", c, i)
        if ats.reduced_tree:
            self._step("reference", True, f"the hash of {what} is in the first partial hash tree", c, i)
            root = root_of(value, ats.reduced_tree, ats.digest_algorithm)
            if root != imprint or imprint_algorithm != ats.digest_algorithm:
                self._step("hash-tree", False, f"the reduced hash tree leads to {root.hex()}, the timestamp covers "
                                               f"{imprint_algorithm} {imprint.hex()}", c, i, SubIndication.HASH_FAILURE)
                return None
            self._step("hash-tree", True, f"the reduced hash tree ({len(ats.reduced_tree)} levels) leads to the "
                                          "timestamp's imprint", c, i)
        else:
            self._step("reference", True, f"the timestamp covers the hash of {what} directly", c, i)
        return self._token(ats.timestamp, imprint, imprint_algorithm, c, i)

    def _token(self, token: bytes, imprint: bytes, algorithm: str, c: int, i: int) -> datetime | None:
        if algorithm not in TOKEN_HASHES:
            self._step("timestamp", None, f"the token's imprint uses {algorithm}, which Siegel's timestamp "
                                          "verification does not accept", c, i,
                       SubIndication.CRYPTO_CONSTRAINTS_FAILURE_NO_POE)
            return None
        outcome = _check_token(token, imprint, algorithm, self.roots)
        if isinstance(outcome, InvalidToken) and outcome.check == "trust anchor":
            # the last check: imprint, signature and TSA certificate passed
            self._step("timestamp", None, outcome.message, c, i, SubIndication.NO_CERTIFICATE_CHAIN_FOUND,
                       _gen_time(token))
            return _gen_time(token)
        if isinstance(outcome, InvalidToken) and outcome.check == "signature" and "not accepted" in outcome.detail:
            self._step("timestamp", None, outcome.message, c, i, SubIndication.CRYPTO_CONSTRAINTS_FAILURE_NO_POE)
            return None
        if isinstance(outcome, TimestampError):
            sub = SubIndication.FORMAT_FAILURE
            if isinstance(outcome, InvalidToken):
                sub = SubIndication.HASH_FAILURE if outcome.check == "message imprint" else SubIndication.SIG_CRYPTO_FAILURE
            self._step("timestamp", False, outcome.message, c, i, sub)
            return None
        info = outcome
        tsa = info.signer.subject.rfc4514_string()
        if not self.roots:
            self._step("timestamp", None, f"token of {tsa} at {_iso(info.gen_time)} verifies, but no trust anchor "
                                          "is configured", c, i, SubIndication.NO_CERTIFICATE_CHAIN_FOUND, info.gen_time)
        else:
            self._step("timestamp", True, f"token of {tsa} at {_iso(info.gen_time)} is valid", c, i, time=info.gen_time)
        return info.gen_time

    def _algorithms(self, times: list[list[datetime | None]]) -> None:
        for c, chain in enumerate(self.record.chains):
            algorithm = chain[0].digest_algorithm
            horizon = self.horizons.get(algorithm)
            if horizon is None:
                continue
            until = next((t for t in times[c + 1][:1] if t), None) if c + 1 < len(times) else self.now
            if until is None or until <= horizon:
                self._step("algorithm", True, f"{algorithm} was renewed before its horizon {_iso(horizon)}", c)
            else:
                self._step("algorithm", None, f"{algorithm} protected the evidence until {_iso(until)}, after its "
                                              f"horizon {_iso(horizon)}", c, sub=SubIndication.CRYPTO_CONSTRAINTS_FAILURE_NO_POE)
        unknown = {a.digest_algorithm for chain in self.record.chains for a in chain} - set(HASHES)
        if unknown:
            self._step("algorithm", None, f"unknown hash algorithm(s) {', '.join(sorted(unknown))}",
                       sub=SubIndication.CRYPTO_CONSTRAINTS_FAILURE)


@lru_cache(maxsize=4096)
def _check_token(token: bytes, imprint: bytes, algorithm: str, roots: tuple[bytes, ...]) -> TstInfo | TimestampError:
    """``verify_token``'s answer (its error as a value), remembered: every record of a tree shares its tokens,
    and the answer depends on nothing but these arguments (certificates are checked at genTime, not now)."""
    try:
        return verify_token(_without_unreadable_revocation_info(token), imprint, algorithm,
                            [x509.load_der_x509_certificate(der) for der in roots])
    except TimestampError as exc:
        return exc


def _gen_time(token: bytes) -> datetime:
    """genTime of a token whose signature ``verify_token`` has checked."""
    encap = cms.ContentInfo.load(_without_unreadable_revocation_info(token))["content"]["encap_content_info"]
    return tsp.TSTInfo.load(bytes(encap["content"]))["gen_time"].native


def _without_unreadable_revocation_info(token: bytes) -> bytes:
    """``token`` without its SignedData ``crls`` when asn1crypto cannot read them (BouncyCastle puts
    OCSP responses there as OtherRevocationInfoFormat); they are outside the signature, so it still verifies."""
    try:
        signed = cms.ContentInfo.load(token)["content"]
        signed["crls"].native
        return token
    except (ValueError, TypeError, KeyError):
        pass
    try:
        fields = {name: signed[name] for name in ("version", "digest_algorithms", "encap_content_info", "signer_infos")}
        if signed["certificates"].contents is not None:
            fields["certificates"] = signed["certificates"]
        return cms.ContentInfo({"content_type": "signed_data", "content": cms.SignedData(fields)}).dump()
    except (ValueError, TypeError, KeyError):
        return token


@dataclass(frozen=True)
class _Cover:
    """What one ATS must cover: ``values`` (alternatives, each with what it is), optionally a value that must
    be in the first partial hash tree as well (``beside``), or a ``group`` whose members may stand there."""

    values: list[tuple[str, bytes]]
    beside: tuple[str, bytes] | None = None
    group: tuple[bytes, ...] = ()


def _report(steps: list[Step]) -> EvidenceReport:
    failed = next((s for s in steps if s.passed is False), None)
    if failed:
        return EvidenceReport(Indication.TOTAL_FAILED, failed.sub_indication, steps)
    open_ = next((s for s in steps if s.passed is None), None)
    if open_:
        return EvidenceReport(Indication.INDETERMINATE, open_.sub_indication, steps)
    return EvidenceReport(Indication.TOTAL_PASSED, None, steps)
