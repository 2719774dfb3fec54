"""The DSS ResultMajor/ResultMinor of a finished verification (server.web.dss_verify.result_of), by what the
report says: every kind of verdict the issue names, manifest results and input documents left uncovered."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from server.validation.model import Indication, SignatureReport, SignedScope, SubIndication, ValidationReport
from server.web.dss_verify import result_of

MAJOR = "urn:oasis:names:tc:dss:1.0:resultmajor:"
MINOR = "urn:oasis:names:tc:dss:1.0:resultminor:"
WHOLE = SignedScope("contract.txt", "FULL", "the whole document")
MANIFEST = SignedScope("annex.txt", "FULL", "the whole document, by the manifest at /ds:Signature/ds:Object")


def _report(*signatures: SignatureReport, name: str | None = None) -> ValidationReport:
    return ValidationReport(list(signatures), datetime(2026, 12, 7, tzinfo=UTC), name)


def _passed(*scopes: SignedScope) -> SignatureReport:
    return SignatureReport("s1", "XAdES", Indication.TOTAL_PASSED, scopes=list(scopes))


def test_all_valid_over_all_documents() -> None:
    assert result_of(_report(_passed(WHOLE)), ["contract.txt"])[:2] == (
        MAJOR + "Success", MINOR + "valid:signature:OnAllDocuments")


def test_a_manifest_scope_gives_manifest_results() -> None:
    assert result_of(_report(_passed(WHOLE, MANIFEST)), ["contract.txt"])[:2] == (
        MAJOR + "Success", MINOR + "valid:signature:HasManifestResults")


def test_an_input_document_the_signature_does_not_cover_is_named() -> None:
    assert result_of(_report(_passed(WHOLE)), ["contract.txt", "other.txt"])[:2] == (
        MAJOR + "Success", MINOR + "valid:signature:NotAllDocumentsReferenced")


@pytest.mark.parametrize(("indication", "sub", "major", "minor"), [
    (Indication.TOTAL_FAILED, SubIndication.HASH_FAILURE, "Success", MINOR + "invalid:IncorrectSignature"),
    (Indication.INDETERMINATE, SubIndication.NO_CERTIFICATE_CHAIN_FOUND, "InsufficientInformation",
     MINOR + "CertificateChainNotComplete"),
    (Indication.INDETERMINATE, SubIndication.SIGNED_DATA_NOT_FOUND, "InsufficientInformation",
     MINOR + "ReferencedDocumentNotPresent"),
    (Indication.INDETERMINATE, SubIndication.REVOKED_NO_POE, "InsufficientInformation",
     "urn:siegel:dss:1.0:resultminor:indeterminate:REVOKED_NO_POE"),
])
def test_the_worst_signature_decides(indication: Indication, sub: SubIndication, major: str, minor: str) -> None:
    worst = SignatureReport("s2", "CAdES", indication, sub, messages=["why"])
    assert result_of(_report(_passed(WHOLE), worst), ["contract.txt"]) == (MAJOR + major, minor, "why")
