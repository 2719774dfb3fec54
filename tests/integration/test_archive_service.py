"""ArchiveService over the real internal PKI (HSM-signed TSA tokens), SQLite and PostgreSQL: submission, collection
into one tree per algorithm with one timestamp each, evidence records (ERS and XMLERS) that verify, signature
policy, ownership, deletion, versions, the bulk path, timestamp renewal and hash-tree renewal."""

from __future__ import annotations

import base64
import functools
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from lxml import etree
from sqlalchemy import func, select, update

from server.archive import ers, xmlers
from server.archive.jobs import ArchiveTrees, stamp_in_process, token_signature
from server.archive.service import ArchiveItem, ArchiveService
from server.archive.store import DocumentStore
from server.db.models import ArchiveItem as ItemRow, ArchiveTimestampRow, ArchiveTree, AuditEntry
from server.config import load
from server.errors import Code, ConfigError, SiegelError
from server.identity.users import Principal, UserService
from server.signing.keys import SigningKeys
from server.signing.levels import Level, Packaging
from server.signing.order import Document, Format, SignOrder
from server.signing.service import SigningService
from server.validation.model import Indication
from server.validation.service import VerificationService
from tests.fixtures.bouncycastle import BouncyCastle, bouncycastle  # noqa: F401 (the fixture)
from tests.fixtures.pki import OnlinePki

pytestmark = pytest.mark.integration

CONTRACT = b"Liefervertrag Nr. 4711, unterschrieben am 7.12.2026\n" * 40


@dataclass
class Archive:
    pki: OnlinePki
    service: ArchiveService
    store: DocumentStore
    users: dict[str, Principal]
    signing: SigningService


def _service(pki: OnlinePki, store: DocumentStore, policy: str = "refuse", horizons: str | None = None,
             signature_horizons: str | None = None) -> ArchiveService:
    defaults = pki.settings.archive
    settings = replace(defaults, invalid_signatures=policy,
                       algorithm_horizons=defaults.algorithm_horizons if horizons is None else horizons,
                       signature_horizons=defaults.signature_horizons if signature_horizons is None
                       else signature_horizons)
    root = lambda: pki.ca.ca_certificate_der("ROOT")  # noqa: E731
    trees = ArchiveTrees(pki.engine, pki.audit, store, functools.cache(lambda: stamp_in_process(pki.tsa.respond)),
                         ["sha256", "sha512"], settings.max_tree_leaves)
    return ArchiveService(pki.engine, pki.audit, store, trees, VerificationService(pki.settings, root), settings)


@pytest.fixture
def archive(pki_online: OnlinePki, tmp_path: Path) -> Iterator[Archive]:
    users = UserService(pki_online.engine, pki_online.audit, 0)
    principals = {name: users.add(name, f"{name}@example.com", role, "correct horse battery")
                  for name, role in (("erp", "integration"), ("greta", "signer"), ("otto", "signer"),
                                     ("audrey", "auditor"), ("ada", "admin"))}
    pki_online.ca.issue_user("greta", "test")
    store = DocumentStore(tmp_path / "store", grace=0)
    verification = VerificationService(pki_online.settings, lambda: pki_online.ca.ca_certificate_der("ROOT"))
    signing = SigningService(pki_online.settings, pki_online.engine, pki_online.ca, lambda: pki_online.hsm,
                             pki_online.audit, SigningKeys(pki_online.engine, pki_online.audit, pki_online.ca),
                             lambda: verification.trust().roots)
    yield Archive(pki_online, _service(pki_online, store), store, principals, signing)


def _count(pki: OnlinePki, model: type) -> int:
    with pki.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(model)).scalar_one()


def _actions(pki: OnlinePki) -> list[tuple[str, str]]:
    with pki.engine.connect() as conn:
        return [(r.action, r.target) for r in conn.execute(select(AuditEntry).order_by(AuditEntry.seq))]


def test_documents_and_hashes_are_collected_into_one_tree_per_algorithm_and_their_records_verify(
        archive: Archive) -> None:
    erp, s = archive.users["erp"], archive.service
    text = b"an unsigned invoice\n"
    other_hash = hashlib.sha256(b"kept elsewhere").digest()
    a = s.submit(erp, [ArchiveItem("invoice.txt", "text/plain", text)], {"customer": "4711"})
    b = s.submit(erp, [ArchiveItem("elsewhere.bin", "application/octet-stream", None, {"sha256": other_hash}),
                       ArchiveItem("contract.txt", "text/plain", CONTRACT)])
    assert (a.state, b.state) == ("pending", "pending")
    assert a.versions[0].metadata == {"customer": "4711"}
    assert archive.store.exists(hashlib.sha256(text).hexdigest())
    assert s.trees.pending()[0] == 3

    assert s.trees.collect() == 2  # sha256 over the three items, sha512 over the two with content
    assert _count(archive.pki, ArchiveTree) == 2 and _count(archive.pki, ArchiveTimestampRow) == 2
    assert s.trees.pending()[0] == 0
    assert s.info(erp, a.aoid).state == "archived"

    (record,) = s.evidence(erp, a.aoid)
    report = s.verify(record, data=text)
    assert report.indication is Indication.TOTAL_PASSED, report.to_json()
    assert {step.check for step in report.steps} >= {"reference", "hash-tree", "timestamp"}
    assert s.verify(record, data=text + b"x").indication is not Indication.TOTAL_PASSED

    hashed, contract = s.evidence(erp, b.aoid)
    assert s.verify(hashed, digests={"sha256": other_hash}).passed
    assert s.verify(contract, data=CONTRACT).passed
    (xml,) = s.evidence(erp, a.aoid, "xml")
    assert xml.startswith(b"<?xml") and s.verify(xml, data=text).passed
    assert ers.decode(record).chains[0][0].reduced_tree  # three leaves: a real reduced tree
    actions = [action for action, _ in _actions(archive.pki)]
    assert actions.count("archive.submit") == 2 and actions.count("archive.collect") == 2


def test_evidence_seals_pending_items_and_collect_due_waits_for_its_thresholds(archive: Archive) -> None:
    erp, s = archive.users["erp"], archive.service
    info = s.submit(erp, [ArchiveItem("a.txt", "text/plain", b"A")])
    assert s.trees.collect_due(3600, 10) == 0  # one item, young: waits
    with pytest.raises(SiegelError) as raised:
        s.evidence(erp, info.aoid, seal=False)
    assert raised.value.code is Code.CONFLICT
    (record,) = s.evidence(erp, info.aoid)  # seal: the tree is built now
    assert s.verify(record, data=b"A").passed
    s.submit(erp, [ArchiveItem("b.txt", "text/plain", b"B")])
    assert s.trees.collect_due(3600, 1) == 2  # enough pending items: both algorithms' trees
    s.submit(erp, [ArchiveItem("c.txt", "text/plain", b"C")])
    assert s.trees.collect_due(3600, 10) == 0
    with archive.pki.engine.begin() as conn:  # the one pending item has waited longer than the interval
        conn.execute(update(ItemRow).values(created_at=datetime.now(timezone.utc) - timedelta(hours=2)))
    assert s.trees.collect_due(3600, 10) == 2 and s.trees.pending()[0] == 0


def test_signed_documents_are_verified_before_archiving_and_refused_or_reported_by_policy(archive: Archive) -> None:
    greta, s = archive.users["greta"], archive.service
    order = SignOrder(Format.CADES, Level.B_B, Packaging.ENVELOPING, (Document("file.txt", CONTRACT),))
    (signed,) = archive.signing.sign(greta.user_id, "greta", order)
    ok = s.submit(greta, [ArchiveItem("file.p7m", "application/pkcs7-mime", signed.data)])
    assert ok.versions[0].items[0].indication == "TOTAL-PASSED"
    assert ok.versions[0].items[0].report["signatures"]

    broken = bytearray(signed.data)
    at = broken.find(CONTRACT[:20])
    broken[at] ^= 0x01  # the signed content altered
    objects, files = _count(archive.pki, ItemRow), list(archive.store.digests())
    with pytest.raises(SiegelError) as raised:
        s.submit(greta, [ArchiveItem("broken.p7m", "application/pkcs7-mime", bytes(broken))])
    assert raised.value.code is Code.BAD_REQUEST and "refuses" in raised.value.message
    assert _count(archive.pki, ItemRow) == objects and list(archive.store.digests()) == files  # nothing stored

    lenient = _service(archive.pki, archive.store, "archive-with-report")
    kept = lenient.submit(greta, [ArchiveItem("broken.p7m", "application/pkcs7-mime", bytes(broken))])
    assert kept.versions[0].items[0].indication in ("TOTAL-FAILED", "INDETERMINATE")
    assert kept.versions[0].items[0].report


def test_objects_belong_to_their_submitter_and_deletion_is_logged_and_removes_the_content(archive: Archive) -> None:
    u, s = archive.users, archive.service
    info = s.submit(u["greta"], [ArchiveItem("mine.txt", "text/plain", b"greta's document")])
    for who in ("otto", "erp"):
        with pytest.raises(SiegelError) as raised:
            s.info(u[who], info.aoid)
        assert raised.value.code is Code.FORBIDDEN
    assert s.info(u["audrey"], info.aoid).aoid == info.aoid  # the auditor reads anyone's
    with pytest.raises(SiegelError) as raised:
        s.submit(u["audrey"], [ArchiveItem("x.txt", "text/plain", b"x")])
    assert raised.value.code is Code.FORBIDDEN
    with pytest.raises(SiegelError) as raised:
        s.delete(u["greta"], info.aoid, "no longer needed")  # signers do not delete
    assert raised.value.code is Code.FORBIDDEN
    with pytest.raises(SiegelError):
        s.delete(u["ada"], info.aoid, "  ")
    digest = hashlib.sha256(b"greta's document").hexdigest()
    s.delete(u["ada"], info.aoid, "retention period over (contract 4711)")
    assert not archive.store.exists(digest)
    with pytest.raises(SiegelError) as raised:
        s.retrieve(u["ada"], info.aoid)
    assert raised.value.code is Code.NOT_FOUND and "deleted" in raised.value.message
    assert ("archive.delete", info.aoid) in _actions(archive.pki)
    with pytest.raises(SiegelError) as raised:
        s.info(u["ada"], "no-such-aoid")
    assert raised.value.code is Code.NOT_FOUND


def test_a_deleted_document_still_stored_for_another_object_stays(archive: Archive) -> None:
    erp, s = archive.users["erp"], archive.service
    first = s.submit(erp, [ArchiveItem("same.txt", "text/plain", b"same bytes")])
    second = s.submit(erp, [ArchiveItem("same.txt", "text/plain", b"same bytes")])
    s.delete(erp, first.aoid, "duplicate")
    assert [(item.name, content) for item, content in s.retrieve(erp, second.aoid)] == [("same.txt", b"same bytes")]


def test_update_adds_a_version_and_retrieve_reads_each(archive: Archive) -> None:
    erp, s = archive.users["erp"], archive.service
    info = s.submit(erp, [ArchiveItem("v1.txt", "text/plain", b"one")])
    updated = s.update(erp, info.aoid, [ArchiveItem("v2.txt", "text/plain", b"two"),
                                        ArchiveItem("h.bin", "application/octet-stream", None,
                                                    {"sha512": hashlib.sha512(b"h").digest()})], {"note": "v2"})
    assert [v.version for v in updated.versions] == [1, 2]
    assert [c for _, c in s.retrieve(erp, info.aoid)] == [b"two", None]
    assert [c for _, c in s.retrieve(erp, info.aoid, 1)] == [b"one"]
    text, hashed = s.evidence(erp, info.aoid)
    assert s.verify(text, data=b"two").passed
    assert ers.decode(hashed).digest_algorithms == ("sha512",)  # its only algorithm
    assert s.verify(hashed, digests={"sha512": hashlib.sha512(b"h").digest()}).passed
    with pytest.raises(SiegelError) as raised:
        s.submit(erp, [ArchiveItem("bad.bin", "application/octet-stream", None, {"sha256": b"short"})])
    assert raised.value.code is Code.BAD_REQUEST
    with pytest.raises(SiegelError):
        s.submit(erp, [ArchiveItem("t.txt", "text/plain", b"t", {"sha256": hashlib.sha256(b"other").digest()})])


def test_the_bulk_path_archives_many_hashes_in_one_transaction(archive: Archive) -> None:
    erp, s = archive.users["erp"], archive.service
    hashes = [{"sha256": hashlib.sha256(str(i).encode()).digest()} for i in range(2500)]
    aoids = s.submit_hashes(erp, hashes)
    assert len(set(aoids)) == 2500
    assert s.trees.collect() == 1  # sha256 only: the sha512 tree has no leaves
    (tree_id,) = [t for t, _ in s.trees.current()]
    records = dict(s.trees.tree_records(tree_id))
    assert len(records) == 2500
    (record,) = s.evidence(erp, aoids[1234])
    assert record == ers.encode(next(r for i, r in records.items() if i == min(records) + 1234))
    assert s.verify(record, digests=hashes[1234]).passed
    assert not s.verify(record, digests=hashes[1236]).passed  # 1235 is its sibling: in the first partial tree
    assert [a for a, _ in _actions(archive.pki)].count("archive.submit-bulk") == 1
    info = s.info(erp, aoids[7])  # the rows written past SQLAlchemy read back like any other object's
    assert info.state == "archived" and info.owner_id == erp.user_id and info.created_at.year >= 2026
    (item,) = info.versions[0].items
    assert (item.digests, item.stored, item.size, item.indication) == (hashes[7], False, None, None)
    s.delete(erp, aoids[7], "bulk entry withdrawn")
    with pytest.raises(SiegelError):
        s.info(erp, aoids[7])
    with pytest.raises(SiegelError) as raised:
        s.submit_hashes(erp, [{"sha256": b"short"}])
    assert raised.value.code is Code.BAD_REQUEST


def _assert_official_xmlers(xml: bytes) -> None:
    """``xml`` is valid by both editions of the official RFC 6283 schema (../shared/standards)."""
    standards = Path(__file__).resolve().parents[3] / "shared" / "standards"
    if not standards.is_dir():
        pytest.skip(f"the official schemas are not at {standards}")
    for name in ("rfc6283_xmlers.xsd", "xml-ers-rfc6283.xsd"):
        schema = etree.XMLSchema(etree.parse(str(standards / name)))
        assert schema.validate(etree.fromstring(xml)), (name, schema.error_log.last_error)


def test_timestamp_renewal_is_per_tree_and_hashtree_renewal_continues_the_records(archive: Archive) -> None:
    erp, s = archive.users["erp"], archive.service
    documents = [f"document {i}".encode() * (i + 1) for i in range(5)]
    infos = [s.submit(erp, [ArchiveItem(f"d{i}.txt", "text/plain", d)]) for i, d in enumerate(documents)]
    only_hash = hashlib.sha256(b"hash only").digest()
    hashed = s.submit(erp, [ArchiveItem("h.bin", "application/octet-stream", None, {"sha256": only_hash})])
    s.trees.collect()
    assert s.renew(timestamps=True) == {"timestamps": 0}  # nothing due: the TSA certificate is young
    assert s.renew(timestamps=True, force=True) == {"timestamps": 2}  # one request per tree, not per object
    (record,) = s.evidence(erp, infos[2].aoid)
    assert len(ers.decode(record).chains[0]) == 2
    report = s.verify(record, data=documents[2])
    assert report.passed and any(step.check == "chain" for step in report.steps), report.to_json()
    (renewal,) = ers.decode(record).chains[0][1:]  # its reduced tree: the ERS and the XMLERS renewal hash
    assert len(renewal.reduced_tree) == 1 and len(renewal.reduced_tree[0]) == 2
    (xml,) = s.evidence(erp, infos[2].aoid, "xml")  # the same renewal timestamp serves RFC 6283
    decoded_xml = xmlers.decode(xml)
    assert decoded_xml.syntax == "xml" and [len(c) for c in decoded_xml.chains] == [2]
    report = s.verify(xml, data=documents[2])
    assert report.passed and any(step.check == "chain" for step in report.steps), report.to_json()
    assert not s.verify(xml, data=documents[0]).passed  # documents[3] is its sibling: in the first partial tree
    tampered = xml.replace(base64.b64encode(renewal.timestamp)[:40], base64.b64encode(renewal.timestamp)[:40].swapcase())
    assert tampered != xml and not s.verify(tampered, data=documents[2]).passed

    done = s.renew(timestamps=False, hashtree="sha384")
    assert done["hashtree"] == {"algorithm": "sha384", "trees": 2, "renewed": 10, "notRenewable": 1}
    (record,) = s.evidence(erp, infos[2].aoid)
    decoded = ers.decode(record)
    assert len(decoded.chains) == 2 and decoded.digest_algorithms == ("sha256", "sha384")
    report = s.verify(record, data=documents[2])
    assert report.passed and any(step.check == "sequence" for step in report.steps), report.to_json()
    assert not s.verify(record, data=documents[3]).passed
    (kept,) = s.evidence(erp, hashed.aoid)  # hash only: its tree stays current with its timestamps
    assert len(ers.decode(kept).chains) == 1 and s.verify(kept, digests={"sha256": only_hash}).passed
    assert s.renew(timestamps=True, force=True)["timestamps"] == 3  # the old sha256 tree (hash-only leaf) + 2 new
    (record,) = s.evidence(erp, infos[2].aoid)
    assert [len(c) for c in ers.decode(record).chains] == [2, 2] and s.verify(record, data=documents[2]).passed
    (xml,) = s.evidence(erp, infos[2].aoid, "xml")  # the renewal group holds the XMLERS hashes as well
    _assert_official_xmlers(xml)
    decoded_xml = xmlers.decode(xml)
    assert [len(c) for c in decoded_xml.chains] == [2, 2] and decoded_xml.digest_algorithms == ("sha256", "sha384")
    report = s.verify(xml, data=documents[2])
    sequence = [step for step in report.steps if step.check == "sequence"]
    assert report.passed and any("ArchiveTimeStampSequence" in step.message for step in sequence), report.to_json()
    assert not s.verify(xml, data=documents[3]).passed
    assert s.verify(ers.encode(ers.decode(record)), data=documents[2]).passed
    stats = s.stats()
    assert stats["objects"] == 6 and stats["pending"] == 0 and stats["nextTimestampRenewal"]
    actions = [a for a, _ in _actions(archive.pki)]
    assert actions.count("archive.renew-timestamp") == 5 and actions.count("archive.renew-hashtree") == 2


def test_a_hash_algorithm_near_its_horizon_moves_its_trees_to_the_one_trusted_longest(archive: Archive) -> None:
    """archive.algorithm_horizons: without being asked for a hash-tree renewal, renew() renews the trees of an
    algorithm whose horizon is within renew_timestamps_before_days into the algorithm trusted longest (5.3)."""
    erp = archive.users["erp"]
    soon = date.today() + timedelta(days=30)  # within the 180 days of renew_timestamps_before_days
    s = _service(archive.pki, archive.store, horizons=f"sha256={soon},sha512=2045-12-31")
    info = s.submit(erp, [ArchiveItem("d.txt", "text/plain", b"kept for thirty years")])
    s.trees.collect()
    assert s.stats()["nextHashTreeRenewal"] is not None
    done = s.renew()
    assert done["hashtree"] == {"algorithm": "sha512", "trees": 1, "renewed": 1, "notRenewable": 0}, done
    assert done["timestamps"] == 0  # the TSA certificate is young
    assert sorted(a for _, a in s.trees.current()) == ["sha512", "sha512"]
    assert "hashtree" not in s.renew()  # nothing left in sha256
    (record,) = s.evidence(erp, info.aoid)
    assert ers.decode(record).digest_algorithms == ("sha256", "sha512")
    assert s.verify(record, data=b"kept for thirty years").passed


def test_a_timestamp_signature_near_its_horizon_renews_its_trees_with_the_current_tsa(archive: Archive) -> None:
    """archive.signature_horizons: without force, renew() renews the timestamps of the trees whose last token's
    signature key (or digest) reaches its horizon within renew_timestamps_before_days; a far horizon does not."""
    erp, s = archive.users["erp"], archive.service
    info = s.submit(erp, [ArchiveItem("d.txt", "text/plain", b"signed by a key that weakens")])
    s.trees.collect()
    with archive.pki.engine.connect() as conn:
        token = conn.execute(select(ArchiveTimestampRow.token)).scalars().first()
    key, digest = token_signature(token)
    assert re.fullmatch(r"rsa-\d+|ecdsa-p(256|384|521)", key) and digest in ("sha256", "sha384", "sha512"), key
    named = key if key.startswith("ecdsa-") else f"rsa-{int(key[4:]) - 1}"  # an RSA class reaching up to this key
    far = _service(archive.pki, archive.store, signature_horizons=f"{named}=2099-12-31")
    assert far.renew() == {"timestamps": 0} and far.stats()["nextTimestampRenewal"] < "2099"
    soon = date.today() + timedelta(days=30)  # within the 180 days of renew_timestamps_before_days
    for horizons in (f"{named}={soon}", f"{digest}={soon},{named}=2099-12-31"):
        near = _service(archive.pki, archive.store, signature_horizons=horizons)
        assert near.stats()["nextTimestampRenewal"] < (soon - timedelta(days=179)).isoformat()
        assert near.renew() == {"timestamps": 2}, horizons  # both trees (sha256, sha512): one request each
    (record,) = s.evidence(erp, info.aoid)
    assert [len(c) for c in ers.decode(record).chains] == [3]
    assert s.verify(record, data=b"signed by a key that weakens").passed


def test_a_bad_signature_horizon_is_refused_at_config_load(tmp_path: Path) -> None:
    for bad in ("rsa=2030-12-31", "dsa-2048=2030-12-31", "ecdsa-p256=2030-13-01", "sha256"):
        config = tmp_path / "siegel.toml"
        config.write_text(f'[archive]\nsignature_horizons = "{bad}"\n')
        with pytest.raises(ConfigError, match="archive.signature_horizons: expected comma-separated SIG=YYYY-MM-DD"):
            load(config, tmp_path, {})
    config.write_text('[archive]\nsignature_horizons = "rsa-3000=2031-12-31,ecdsa-p384=2031-12-31,sha1=2015-12-31"\n')
    assert load(config, tmp_path, {}).archive.signature_horizons.startswith("rsa-3000")


def test_a_deleted_object_is_deleted_only_for_who_may_see_it(archive: Archive) -> None:
    u, s = archive.users, archive.service
    gone = s.submit(u["greta"], [ArchiveItem("gone.txt", "text/plain", b"greta's old document")])
    live = s.submit(u["greta"], [ArchiveItem("live.txt", "text/plain", b"greta's current document")])
    s.delete(u["ada"], gone.aoid, "retention period over")
    for call in (s.info, s.retrieve, s.evidence):
        refusals = []
        for aoid in (gone.aoid, live.aoid):  # another's object, deleted or not: the same refusal
            with pytest.raises(SiegelError) as raised:
                call(u["otto"], aoid)
            refusals.append((raised.value.code, raised.value.message.replace(aoid, "AOID")))
        assert refusals[0] == refusals[1] and refusals[0][0] is Code.FORBIDDEN and "deleted" not in refusals[0][1]
        for who in ("greta", "audrey"):  # the owner and who reads every object learn it was deleted
            with pytest.raises(SiegelError) as raised:
                call(u[who], gone.aoid)
            assert raised.value.code is Code.NOT_FOUND and "deleted" in raised.value.message


def test_stats_are_archive_wide_for_the_admin_and_per_account_for_the_others(archive: Archive) -> None:
    u, s = archive.users, archive.service
    s.submit(u["greta"], [ArchiveItem("g1.txt", "text/plain", b"g1"), ArchiveItem("g2.txt", "text/plain", b"g2")])
    s.trees.collect()
    s.submit(u["greta"], [ArchiveItem("g3.txt", "text/plain", b"g3")])
    s.submit(u["otto"], [ArchiveItem("o.txt", "text/plain", b"o")])
    gone = s.submit(u["otto"], [ArchiveItem("o2.txt", "text/plain", b"o2")])
    s.delete(u["ada"], gone.aoid, "withdrawn")
    greta = s.stats(u["greta"])
    assert (greta["scope"], greta["objects"], greta["items"], greta["pending"]) == ("account", 2, 3, 1)
    assert greta["oldestPending"] and "trees" not in greta and "accounts" not in greta
    otto = s.stats(u["otto"])
    assert (otto["objects"], otto["items"], otto["pending"]) == (1, 2, 2)  # a deleted object's hashes get a tree
    assert s.stats(u["erp"])["objects"] == 0
    for who in ("ada", "audrey"):
        whole = s.stats(u[who])
        assert (whole["scope"], whole["objects"], whole["items"], whole["pending"]) == ("archive", 3, 5, 3)
        assert whole["trees"] == 2 and whole["accounts"] == {"greta": {"objects": 2, "items": 3, "pending": 1},
                                                             "otto": {"objects": 1, "items": 2, "pending": 2}}
    assert s.stats() == s.stats(u["ada"])  # the operator (CLI, admin portal)


def test_bouncycastle_validates_the_archives_records_through_both_renewals(archive: Archive,
                                                                           bouncycastle: BouncyCastle) -> None:
    """The records as the archive makes them (renewal timestamps over the ERS/XMLERS pair, renewal leaves over
    the group) are RFC 4998 to an independent implementation, a changed document refused by it; their XMLERS form
    of each stage verifies here and is valid by the official schemas."""
    erp, s = archive.users["erp"], archive.service
    documents = [f"Vertrag {i}: Laufzeit 30 Jahre\n".encode() * (i + 3) for i in range(3)]
    infos = [s.submit(erp, [ArchiveItem(f"v{i}.txt", "text/plain", d)]) for i, d in enumerate(documents)]
    s.trees.collect()
    stages: dict[str, tuple[list[bytes], list[bytes]]] = {}

    def stage(name: str, shape: list[int]) -> None:
        records = [s.evidence(erp, info.aoid)[0] for info in infos]
        assert [len(c) for c in ers.decode(records[0]).chains] == shape, name
        stages[name] = records, [s.evidence(erp, info.aoid, "xml")[0] for info in infos]

    stage("initial", [1])
    s.renew(timestamps=True, force=True)
    stage("timestamp renewal", [2])
    s.renew(timestamps=False, hashtree="sha512")
    stage("hash-tree renewal", [2, 1])
    s.renew(timestamps=True, force=True)
    stage("timestamp renewal after the hash-tree renewal", [2, 2])
    s.renew(timestamps=False, hashtree="sha384")
    stage("second hash-tree renewal", [2, 2, 1])
    for name, (records, xml) in stages.items():
        cases = [*zip(records, documents), (records[1], documents[1] + b"\n"), (records[0], documents[2])]
        verdicts = bouncycastle.verdicts(cases)
        assert verdicts[:3] == ["VALID"] * 3, (name, verdicts)
        assert all(v.startswith("INVALID") for v in verdicts[3:]), (name, verdicts)
        assert all(s.verify(r, data=d).passed for r, d in zip(records, documents)), name
        assert all(s.verify(r, data=d).passed for r, d in zip(xml, documents)), name
        assert not s.verify(xml[1], data=documents[1] + b"\n").passed, name
        _assert_official_xmlers(xml[0])
