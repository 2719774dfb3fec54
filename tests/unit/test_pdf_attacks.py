"""Attacks on PDF signatures made here, byte by byte, on a PDF signed with a throw-away software key.

Each attack must end TOTAL-FAILED with the sub-indication that names it (universal signature forgery:
FORMAT_FAILURE; a changed signed byte: HASH_FAILURE; a changed signature value: SIG_CRYPTO_FAILURE;
wrapping: FORMAT_FAILURE) or, for additions after signing, "modified after signing". Without a trust anchor
the untouched signature is INDETERMINATE/NO_CERTIFICATE_CHAIN_FOUND, which is where every check starts.
"""

from __future__ import annotations

import asyncio
import io
import re
from datetime import UTC, datetime, timedelta

import pytest
from asn1crypto import keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.writer import PdfFileWriter
from pyhanko.sign import fields, signers
from pyhanko_certvalidator.registry import SimpleCertificateStore

from server.validation.model import Indication, SignatureReport, SubIndication, Trust
from server.validation.pades import MODIFIED, verify_pdf

UNTRUSTED = Trust(roots=(), allow_fetching=False)
CONTENT = b"BT /F1 14 Tf 72 760 Td (Zahlung: 10.000 EUR an Muster GmbH) Tj ET"


def _certificate(subject: str, key: ec.EllipticCurvePrivateKey, issuer: str, issuer_key: ec.EllipticCurvePrivateKey,
                 *, ca: bool) -> x509.Certificate:
    now = datetime.now(UTC)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=30))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=not ca, content_commitment=not ca, key_encipherment=False,
                                            data_encipherment=False, key_agreement=False, key_cert_sign=ca,
                                            crl_sign=ca, encipher_only=False, decipher_only=False), critical=True))
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture(scope="module")
def signer() -> signers.SimpleSigner:
    ca_key, user_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("Attack Test CA", ca_key, "Attack Test CA", ca_key, ca=True)
    user = _certificate("Anna Muster", user_key, "Attack Test CA", ca_key, ca=False)
    der = user_key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())
    return signers.SimpleSigner(
        signing_cert=asn1_x509.Certificate.load(user.public_bytes(serialization.Encoding.DER)),
        signing_key=keys.PrivateKeyInfo.load(der),
        cert_registry=SimpleCertificateStore.from_certs(
            [asn1_x509.Certificate.load(ca.public_bytes(serialization.Encoding.DER))]))


def _document() -> bytes:
    writer = PdfFileWriter()
    name = generic.NameObject
    font = writer.add_object(generic.DictionaryObject({
        name("/Type"): name("/Font"), name("/Subtype"): name("/Type1"), name("/BaseFont"): name("/Helvetica")}))
    page = generic.DictionaryObject({
        name("/Type"): name("/Page"),
        name("/MediaBox"): generic.ArrayObject([generic.NumberObject(v) for v in (0, 0, 595, 842)]),
        name("/Contents"): writer.add_object(generic.StreamObject(stream_data=CONTENT)),
        name("/Resources"): generic.DictionaryObject({
            name("/Font"): generic.DictionaryObject({name("/F1"): font})})})
    writer.insert_page(page)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def _sign(pdf: bytes, signer: signers.SimpleSigner, field: str = "Signature1") -> bytes:
    meta = signers.PdfSignatureMetadata(field_name=field, subfilter=fields.SigSeedSubFilter.PADES)
    out = io.BytesIO()
    asyncio.run(signers.PdfSigner(meta, signer=signer).async_sign_pdf(IncrementalPdfFileWriter(io.BytesIO(pdf)),
                                                                       output=out))
    return out.getvalue()


@pytest.fixture(scope="module")
def signed(signer: signers.SimpleSigner) -> bytes:
    return _sign(_document(), signer)


def _byte_range(pdf: bytes) -> tuple[re.Match[bytes], list[int]]:
    match = re.search(rb"/ByteRange\s*\[\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*\]", pdf)
    assert match is not None
    return match, [int(g) for g in match.groups()]


def _with_byte_range(pdf: bytes, values: list[int]) -> bytes:
    """``pdf`` with its (first) /ByteRange rewritten in place, padded to the same length."""
    match, _ = _byte_range(pdf)
    text = ("/ByteRange [" + " ".join(str(v) for v in values) + "]").encode()
    width = match.end() - match.start()
    assert len(text) <= width
    return pdf[:match.start()] + text + b" " * (width - len(text)) + pdf[match.end():]


def _one(pdf: bytes) -> SignatureReport:
    (report,) = verify_pdf(pdf, UNTRUSTED)
    return report


def _failed(report: SignatureReport, sub: SubIndication) -> None:
    assert (report.indication, report.sub_indication) == (Indication.TOTAL_FAILED, sub), report.messages


def test_the_untouched_signature_fails_only_for_want_of_a_trust_anchor(signed: bytes) -> None:
    report = _one(signed)
    assert (report.indication, report.sub_indication) == (Indication.INDETERMINATE,
                                                          SubIndication.NO_CERTIFICATE_CHAIN_FOUND), report.messages
    assert report.level == "B-B" and report.scopes[0].description == "the whole document"


def test_a_changed_signed_byte_is_a_hash_failure(signed: bytes) -> None:
    at = signed.index(b"10.000")
    _failed(_one(signed[:at] + b"90.000" + signed[at + 6:]), SubIndication.HASH_FAILURE)


def test_a_changed_signature_value_is_a_crypto_failure(signed: bytes) -> None:
    _, (_, start, _, _) = _byte_range(signed)
    report = verify_pdf(signed, UNTRUSTED)[0]
    value = report.signature_value
    assert value is not None
    hex_value = value.hex().encode()
    at = signed.lower().index(hex_value, start)
    flipped = hex_value[:-2] + (b"00" if hex_value[-2:] != b"00" else b"01")
    result = _one(signed[:at] + flipped + signed[at + len(hex_value):])
    assert result.indication is Indication.TOTAL_FAILED
    assert result.sub_indication is SubIndication.SIG_CRYPTO_FAILURE, result.messages


def test_universal_forgery_with_an_emptied_contents_is_a_format_failure(signed: bytes) -> None:
    _, (_, start, end, _) = _byte_range(signed)
    zeroed = signed[:start + 1] + b"0" * (end - start - 2) + signed[end - 1:]
    _failed(_one(zeroed), SubIndication.FORMAT_FAILURE)


@pytest.mark.parametrize("shape", ["empty", "overlap", "beyond-the-end", "not-from-zero", "shifted-gap"])
def test_universal_forgery_and_wrapping_by_the_byte_range_are_format_failures(signed: bytes, shape: str) -> None:
    _, (_, length1, start2, length2) = _byte_range(signed)
    values = {
        "empty": [0, 0, 0, 0],
        "overlap": [0, length1 + 10, length1, length2 + start2 - length1],
        "beyond-the-end": [0, length1, start2, length2 + 1000],
        "not-from-zero": [1, length1 - 1, start2, length2],
        "shifted-gap": [0, length1 + 2, start2 + 2, length2 - 2],
    }[shape]
    report = _one(_with_byte_range(signed, values))
    _failed(report, SubIndication.FORMAT_FAILURE)
    assert not report.scopes


def test_signature_wrapping_with_the_signed_bytes_moved_behind_new_content(signed: bytes) -> None:
    """A new revision appended after the signed file (the incremental saving attack) changes the page text."""
    writer = IncrementalPdfFileWriter(io.BytesIO(signed))
    page = writer.root["/Pages"]["/Kids"][0].get_object()
    page[generic.NameObject("/Contents")] = writer.add_object(
        generic.StreamObject(stream_data=CONTENT.replace(b"Muster GmbH", b"Betrug Ltd.")))
    writer.update_container(page)
    out = io.BytesIO()
    writer.write(out)
    report = _one(out.getvalue())
    _failed(report, SubIndication.FORMAT_FAILURE)
    assert report.messages[0].startswith(MODIFIED)


def test_a_removed_byte_range_is_a_format_failure(signed: bytes) -> None:
    match, _ = _byte_range(signed)
    renamed = signed[:match.start()] + b"/XyteRange" + signed[match.start() + 10:]
    _failed(_one(renamed), SubIndication.FORMAT_FAILURE)


def test_a_broken_signature_dictionary_is_a_format_failure_not_an_error(signed: bytes) -> None:
    match, _ = _byte_range(signed)
    width = match.end() - match.start()
    broken = signed[:match.start()] + b"/ByteRang " + b" " * (width - 10) + signed[match.end():]
    report = _one(broken)
    _failed(report, SubIndication.FORMAT_FAILURE)


def test_a_second_signature_leaves_both_untouched(signed: bytes, signer: signers.SimpleSigner) -> None:
    both = verify_pdf(_sign(signed, signer, "Signature2"), UNTRUSTED)
    assert [(r.id, r.indication, r.sub_indication) for r in both] == [
        ("Signature1", Indication.INDETERMINATE, SubIndication.NO_CERTIFICATE_CHAIN_FOUND),
        ("Signature2", Indication.INDETERMINATE, SubIndication.NO_CERTIFICATE_CHAIN_FOUND)]
    assert not any(m.startswith(MODIFIED) for m in both[0].messages)
