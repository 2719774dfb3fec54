"""``/api/v1/archive`` of a whole running server: documents and hash-only submissions, evidence records (ERS and
XMLERS) checked by Siegel's verifier, by RFC 4998 section 4.3 recomputed here and by ``openssl ts -verify`` on the
RFC 3161 timestamp inside; tampered data fails; another account's object is 404, roles get 403, no credentials 401;
bad input is problem JSON and stores nothing; deletion needs a reason; renewal is the admin's."""

from __future__ import annotations

import base64
import hashlib
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree

from server.archive import ers
from server.archive.evidence_verify import verify
from server.validation.model import Trust
from server.web.auth import ROUTES
from server.web.openapi import PATHS
from tests.fixtures.server import SiegelInstance, make_instance

pytestmark = pytest.mark.e2e

INVOICE = b"Rechnung 2026-4711: 1.234,56 EUR, aufzubewahren bis 2036\n" * 20
NOTE = b"Lieferschein zur Rechnung 2026-4711\n"
RECEIPT = b"a receipt kept elsewhere; only its hash is archived\n"
FORGED = b"%PDF-1.7\n1 0 obj << /Type /Sig /ByteRange [0 10 20 10] /Contents <3080> >> endobj\n%%EOF\n"
XMLERS_NS = "urn:ietf:params:xml:ns:ers"
ACCOUNTS = {"crm": "integration", "greta": "signer", "audrey": "auditor", "ada": "admin"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SiegelInstance]:
    inst = make_instance(tmp_path_factory.mktemp("archive-api"))
    for name, role in ACCOUNTS.items():
        inst.add_user(name, f"{name}-password-1", role, signing_key=False)
    yield from inst.serving()


def call(server: SiegelInstance, method: str, path: str, who: str | None = "erp", **kwargs: Any) -> requests.Response:
    auth = None if who is None else server.auth if who == "erp" else (who, f"{who}-password-1")
    return requests.request(method, server.url + "/api/v1/archive" + path, auth=auth, timeout=120, **kwargs)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def problem(r: requests.Response, status: int, *words: str) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["Content-Type"] == "application/problem+json", r.headers
    body = r.json()
    assert body["status"] == status and all(w in body["detail"] for w in words), body
    return body


@pytest.fixture(scope="module")
def roots(server: SiegelInstance, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The server's root and issuing CA certificates as PEM files (the TSA chains to them)."""
    where = tmp_path_factory.mktemp("ca")
    for name in ("ROOT", "ISSUING"):
        r = requests.get(f"{server.url}/ca/{name}.crt", timeout=10)
        assert r.status_code == 200, name
        pem = x509.load_der_x509_certificate(r.content).public_bytes(Encoding.PEM)
        (where / f"{name.lower()}.pem").write_bytes(pem)
    return where


@pytest.fixture(scope="module")
def objects(server: SiegelInstance) -> dict[str, str]:
    """A document object (two items), a hash-only object and a single document, submitted together so that
    their first evidence request puts them into one hash tree."""
    made = {}
    for key, items in {
        "documents": [{"name": "invoice.txt", "mimeType": "text/plain", "content": b64(INVOICE)},
                      {"name": "note.txt", "mimeType": "text/plain", "content": b64(NOTE)}],
        "hashes": [{"name": "receipt.pdf", "mimeType": "application/pdf",
                    "digests": {"sha256": hashlib.sha256(RECEIPT).hexdigest()}}],
        "single": [{"name": "single.txt", "content": b64(b"alone")}],
    }.items():
        r = call(server, "POST", "/objects", json={"items": items, "metadata": {"case": key}})
        assert r.status_code == 201, r.text
        assert r.headers["Location"] == "/api/v1/archive/objects/" + r.json()["aoid"]
        assert r.json()["state"] == "pending"
        made[key] = r.json()["aoid"]
    return made


def evidence(server: SiegelInstance, aoid: str, query: str = "", who: str = "erp") -> requests.Response:
    return call(server, "GET", f"/objects/{aoid}/evidence{query}", who)


def rfc4998_root(leaf: bytes, reduced: tuple[tuple[bytes, ...], ...]) -> bytes:
    """RFC 4998 section 4.3, step by step: the first partial hash tree holds the leaf; each list is sorted,
    concatenated and hashed (a list of one value is that value), its result joins the next list."""
    if not reduced:
        return leaf
    assert leaf in reduced[0]
    value = None
    for group in reduced:
        values = sorted([*group, *([] if value is None else [value])])
        value = values[0] if len(values) == 1 else hashlib.sha256(b"".join(values)).digest()
    assert value is not None
    return value


def openssl_ts_verify(roots: Path, token: bytes, imprint: bytes) -> subprocess.CompletedProcess[bytes]:
    (roots / "token.der").write_bytes(token)
    return subprocess.run(["openssl", "ts", "-verify", "-token_in", "-in", "token.der", "-digest", imprint.hex(),
                           "-CAfile", "root.pem", "-untrusted", "issuing.pem"], cwd=roots, capture_output=True,
                          timeout=60, check=False)


def test_submitted_objects_are_described_and_listed(server: SiegelInstance, objects: dict[str, str]) -> None:
    r = call(server, "GET", "/objects/" + objects["documents"])
    assert r.status_code == 200, r.text
    [version] = r.json()["versions"]
    assert version["metadata"] == {"case": "documents"}
    assert [(i["name"], i["stored"], i["size"]) for i in version["items"]] == [
        ("invoice.txt", True, len(INVOICE)), ("note.txt", True, len(NOTE))]
    assert version["items"][0]["digests"]["sha256"] == hashlib.sha256(INVOICE).hexdigest()
    [hashed] = call(server, "GET", "/objects/" + objects["hashes"]).json()["versions"][0]["items"]
    assert (hashed["stored"], hashed["size"], hashed["digests"]) == (
        False, None, {"sha256": hashlib.sha256(RECEIPT).hexdigest()})

    listing = call(server, "GET", "/objects?limit=2").json()
    assert listing["total"] >= 3 and listing["limit"] == 2 and len(listing["objects"]) == 2
    everything = {o["aoid"]: o for o in call(server, "GET", "/objects?limit=200").json()["objects"]}
    assert set(objects.values()) <= set(everything)
    assert everything[objects["documents"]]["items"] == 2
    stats = call(server, "GET", "/stats")
    assert stats.status_code == 200 and stats.json()["scope"] == "account" and stats.json()["objects"] >= 3
    assert call(server, "GET", "/stats", "crm").json()["objects"] == 0  # an account counts its own objects
    whole = call(server, "GET", "/stats", "ada").json()
    assert whole["scope"] == "archive" and whole["objects"] >= stats.json()["objects"] and "trees" in whole
    assert whole["accounts"][server.user]["objects"] == stats.json()["objects"]


def test_evidence_record_verifies_here_with_rfc4998_and_openssl(server: SiegelInstance, objects: dict[str, str],
                                                                 roots: Path) -> None:
    aoid = objects["documents"]
    problem(evidence(server, aoid), 400, "2 items", "item=1..2")
    r = evidence(server, aoid, "?item=1&format=ers")  # seals the pending trees
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/octet-stream", r.text
    record = r.content
    assert call(server, "GET", "/objects/" + aoid).json()["state"] == "archived"

    root_der = x509.load_pem_x509_certificate((roots / "root.pem").read_bytes()).public_bytes(Encoding.DER)
    trust = Trust((root_der,), allow_fetching=False)
    assert verify(record, data=INVOICE, trust=trust).indication.value == "TOTAL-PASSED"
    assert verify(record, data=INVOICE + b"!", trust=trust).indication.value == "TOTAL-FAILED"

    decoded = ers.decode(record)
    [[ats]] = decoded.chains
    assert ats.reduced_tree, "the objects were submitted together: the tree has more than this leaf"
    root = rfc4998_root(hashlib.sha256(INVOICE).digest(), ats.reduced_tree)
    assert root != hashlib.sha256(INVOICE).digest()
    done = openssl_ts_verify(roots, ats.timestamp, root)
    assert done.returncode == 0 and b"Verification: OK" in done.stdout, done.stdout + done.stderr
    leaf, tampered = hashlib.sha256(INVOICE).digest(), hashlib.sha256(INVOICE + b"!").digest()
    forged = (tuple(tampered if v == leaf else v for v in ats.reduced_tree[0]), *ats.reduced_tree[1:])
    wrong = openssl_ts_verify(roots, ats.timestamp, rfc4998_root(tampered, forged))
    assert wrong.returncode != 0 and b"Verification: FAILED" in wrong.stdout  # tampered data, another root

    for data, expected in ((INVOICE, "TOTAL-PASSED"), (INVOICE.replace(b"1.234,56", b"9.234,56"), "TOTAL-FAILED")):
        r = call(server, "POST", "/verify", "erp", json={"record": b64(record), "data": b64(data)})
        assert r.status_code == 200 and r.json()["indication"] == expected, r.text
        assert {s["check"] for s in r.json()["steps"]} >= {"reference"}


def test_xml_evidence_and_hash_only_objects(server: SiegelInstance, objects: dict[str, str]) -> None:
    r = evidence(server, objects["hashes"], "?format=xml")
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/xml", r.text
    assert etree.fromstring(r.content).tag == f"{{{XMLERS_NS}}}EvidenceRecord"
    digest = hashlib.sha256(RECEIPT).hexdigest()
    passed = call(server, "POST", "/verify", json={"record": b64(r.content), "digests": {"sha256": digest}})
    assert passed.status_code == 200 and passed.json()["indication"] == "TOTAL-PASSED", passed.text
    failed = call(server, "POST", "/verify", json={"record": b64(r.content), "data": b64(RECEIPT + b" ")})
    assert failed.json()["indication"] == "TOTAL-FAILED"

    problem(call(server, "GET", f"/objects/{objects['hashes']}/items/1"), 404, "hashes only")
    document = call(server, "GET", f"/objects/{objects['documents']}/items/2")
    assert document.status_code == 200 and document.content == NOTE
    assert document.headers["Content-Type"] == "text/plain"
    problem(call(server, "GET", f"/objects/{objects['documents']}/items/3"), 404, "no item 3")


def test_verify_an_object_against_what_it_archived(server: SiegelInstance, objects: dict[str, str]) -> None:
    for key, names in (("documents", ["invoice.txt", "note.txt"]), ("hashes", ["receipt.pdf"])):
        r = call(server, "POST", "/verify", json={"aoid": objects[key], "format": "xml"})
        assert r.status_code == 200, r.text
        assert r.json()["indication"] == "TOTAL-PASSED"
        assert [i["name"] for i in r.json()["items"]] == names
        assert all(i["report"]["indication"] == "TOTAL-PASSED" for i in r.json()["items"])


def test_pending_evidence_without_sealing_is_a_conflict(server: SiegelInstance) -> None:
    aoid = call(server, "POST", "/objects", json={"items": [{"content": b64(b"fresh")}]}).json()["aoid"]
    problem(evidence(server, aoid, "?seal=false"), 409)
    assert evidence(server, aoid, "?seal=true").status_code == 200


def test_ownership_roles_and_credentials(server: SiegelInstance, objects: dict[str, str]) -> None:
    aoid = objects["single"]
    for who, target in (("crm", aoid), ("erp", "Unknown-AOID-123")):  # another's object answers as an unknown one
        for method, path, body in (("GET", f"/objects/{target}", None), ("GET", f"/objects/{target}/evidence", None),
                                   ("GET", f"/objects/{target}/items/1", None),
                                   ("DELETE", f"/objects/{target}", {"reason": "not mine"}),
                                   ("POST", "/verify", {"aoid": target})):
            problem(call(server, method, path, who, json=body), 404, f"no archive object '{target}'")
    assert aoid not in {o["aoid"] for o in call(server, "GET", "/objects?limit=200", "crm").json()["objects"]}

    assert call(server, "GET", f"/objects/{aoid}", "audrey").status_code == 200  # the auditor reads anyone's
    assert aoid in {o["aoid"] for o in call(server, "GET", "/objects?limit=200", "audrey").json()["objects"]}
    problem(call(server, "POST", "/objects", "audrey", json={"items": [{"content": b64(b"x")}]}), 403, "auditor")
    problem(call(server, "DELETE", f"/objects/{aoid}", "greta", json={"reason": "x"}), 403, "signer")
    problem(call(server, "POST", "/renew", "erp", json={}), 403, "integration")
    r = call(server, "GET", f"/objects/{aoid}", None)
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].lower().startswith("basic")  # the guard's answer
    assert call(server, "GET", "/stats", None).status_code == 401
    assert call(server, "GET", f"/objects/{aoid}", "erp").status_code == 200  # all of the above changed nothing


def test_bad_input_is_problem_json_and_stores_nothing(server: SiegelInstance, objects: dict[str, str]) -> None:
    before = call(server, "GET", "/stats").json()
    good = {"name": "ok.txt", "content": b64(b"fine")}
    for body, words in (
            ({}, ("items",)),
            ({"items": []}, ("items",)),
            ({"items": [good, "text"]}, ("item 2",)),
            ({"items": [good, {"name": "x"}]}, ("item 2", "content")),
            ({"items": [good, {"content": "not base64!"}]}, ("item 2", "base64")),
            ({"items": [good, {"digests": {"sha256": "abcd"}}]}, ("item 2", "32 bytes")),
            ({"items": [good, {"digests": {"md5": hashlib.md5(b"x").hexdigest()}}]}, ("md5",)),
            ({"items": [good, {"digests": {"sha256": "zz"}}]}, ("hex",)),
            ({"items": [good, {"content": b64(b"a"), "digests": {"sha256": hashlib.sha256(b"b").hexdigest()}}]},
             ("does not match",)),
            ({"items": [good, {"name": 7, "content": b64(b"a")}]}, ("name",)),
            ({"items": [good, {"name": "signed.pdf", "content": b64(FORGED)}]}, ("signature does not verify",)),
            ({"items": [good], "metadata": ["x"]}, ("metadata",)),
            ({"items": [good], "metadata": {"n": 1}}, ("metadata",))):
        problem(call(server, "POST", "/objects", json=body), 400, *words)
    problem(call(server, "POST", "/objects", data=b"{not json"), 400, "JSON")
    aoid = objects["documents"]
    problem(evidence(server, aoid, "?item=1&format=pdf"), 400, "pdf")
    problem(evidence(server, aoid, "?item=0"), 400, "item")
    problem(evidence(server, aoid, "?item=9"), 404, "no item 9")
    problem(evidence(server, aoid, "?item=1&seal=maybe"), 400, "seal")
    problem(evidence(server, aoid, "?item=1&version=2"), 404, "no version 2")
    problem(call(server, "GET", "/objects/not%20an%20aoid"), 400, "archive object id")
    problem(call(server, "GET", "/objects?limit=1000"), 400, "limit")
    problem(call(server, "POST", "/verify", json={"record": b64(b"junk")}), 400, "with data", "digests")
    problem(call(server, "POST", "/verify", json={"aoid": aoid, "record": b64(b"junk")}), 400, "not both")
    problem(call(server, "POST", "/verify", json={"aoid": aoid, "version": "1"}), 400, "version")
    junk = call(server, "POST", "/verify", json={"record": b64(b"junk"), "data": b64(INVOICE)})
    assert junk.status_code == 200 and junk.json()["indication"] == "TOTAL-FAILED"  # a report, not an error
    assert junk.json()["steps"][0]["check"] == "format"
    problem(call(server, "DELETE", f"/objects/{aoid}", "ada", json={}), 400, "reason")
    problem(call(server, "DELETE", f"/objects/{aoid}", "ada", json={"reason": "   "}), 400, "reason")
    problem(call(server, "POST", "/renew", "ada", json={"hashtree": "md5"}), 400, "hashtree")
    problem(call(server, "GET", "/nothing"), 404)
    after = call(server, "GET", "/stats").json()
    assert (after["objects"], after["items"]) == (before["objects"], before["items"])
    assert call(server, "GET", "/objects/" + aoid).status_code == 200


def test_deletion_with_a_reason_and_renewal(server: SiegelInstance, objects: dict[str, str]) -> None:
    content = b"kept until the retention period ends"
    aoid = call(server, "POST", "/objects", json={"items": [{"content": b64(content)}]}).json()["aoid"]
    record = evidence(server, aoid).content
    r = call(server, "DELETE", f"/objects/{aoid}", json={"reason": "retention period over (contract 4711)"})
    assert r.status_code == 200 and r.json() == {"aoid": aoid, "state": "deleted",
                                                 "reason": "retention period over (contract 4711)"}
    problem(call(server, "GET", f"/objects/{aoid}"), 404, "deleted")
    for method, path, body in (("GET", f"/objects/{aoid}", None), ("GET", f"/objects/{aoid}/evidence", None),
                               ("DELETE", f"/objects/{aoid}", {"reason": "not mine"})):  # another's: as if never there
        foreign = problem(call(server, method, path, "crm", json=body), 404)
        unknown = problem(call(server, method, path.replace(aoid, "Never-There-42"), "crm", json=body), 404)
        assert foreign["detail"] == unknown["detail"].replace("Never-There-42", aoid), (foreign, unknown)
        assert "deleted" not in foreign["detail"]
    problem(call(server, "DELETE", f"/objects/{aoid}", json={"reason": "again"}), 404)
    # the record given back earlier still proves the document
    assert call(server, "POST", "/verify", json={"record": b64(record), "data": b64(content)}
                ).json()["indication"] == "TOTAL-PASSED"

    renewed = call(server, "POST", "/renew", "ada", json={"timestamps": True, "force": True})
    assert renewed.status_code == 200, renewed.text
    assert renewed.json()["timestamps"]
    record = evidence(server, objects["single"]).content
    [chain] = ers.decode(record).chains
    assert len(chain) >= 2  # a new ATS over the previous one (RFC 4998 5.2)
    assert call(server, "POST", "/verify", json={"record": b64(record), "data": b64(b"alone")}
                ).json()["indication"] == "TOTAL-PASSED"


def test_every_archive_route_is_described() -> None:
    archive = {p: m for p, m in ROUTES.items() if p.startswith("/api/v1/archive")}
    assert len(archive) == 7
    for path, methods in archive.items():
        assert {m.lower() for m in methods} == set(PATHS[path.removeprefix("/api/v1")]), path
