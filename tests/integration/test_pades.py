"""PAdES B-B to B-LTA with users' HSM keys on SoftHSM2, checked by poppler's ``pdfsig`` (an NSS database
trusting our root), ``qpdf --check`` and pyHanko's validator (integrity, trust, DocMDP/FieldMDP diff
analysis, LTV). The input PDFs are made here (tests/fixtures/pdf.py)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import tracemalloc
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import pytest
from asn1crypto import cms
from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives.serialization import Encoding
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.diff_analysis import ModificationLevel
from pyhanko.sign.signers.pdf_cms import Signer
from pyhanko.sign.signers.pdf_signer import PdfSignatureMetadata, PdfSigner
from pyhanko.sign.validation import (
    DocumentSecurityStore,
    validate_pdf_signature,
    validate_pdf_timestamp,
)
from pyhanko_certvalidator import ValidationContext
from pyhanko_certvalidator.registry import SimpleCertificateStore

from adapters.timestamp.client import TimestampClient, endpoint_from_url
from server.errors import Code, SiegelError
from server.signing.cades import SigningKey
from server.signing.keysource import DigestAlgorithm, SignatureScheme
from server.signing.levels import Level, ProductionPlace, SignatureProperties
from server.signing.pades import (
    PadesOptions,
    Placement,
    PreparedPades,
    assemble_pades,
    extend_pades,
    prepare_pades,
    sign_pades,
)
from tests.fixtures.pdf import EmptyField, encrypt_with_qpdf, make_pdf, set_text_field
from tests.fixtures.pki import OnlinePki, Pki, make_pki, pki_settings, user_key

pytestmark = pytest.mark.integration

COMMITMENT = "http://uri.etsi.org/01903/v1.2.2#ProofOfApproval"


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """SQLite only: the PDF engine keeps nothing in the database (the PKI's storage is tested on both)."""
    return f"sqlite:///{tmp_path}/siegel.db"


def _root(pki: Pki) -> bytes:
    return pki.ca.ca_certificates()["ROOT"].public_bytes(Encoding.DER)


def _tsa(pki: OnlinePki) -> TimestampClient:
    return TimestampClient([endpoint_from_url(pki.url + "/tsa", (pki.ca.ca_certificates()["ROOT"],))], 10, 0)


def _sign(key: SigningKey, pdf: bytes, *, level: Level = Level.B_B, pki: Pki | None = None,
          options: PadesOptions | None = None, properties: SignatureProperties | None = None) -> bytes:
    options = options or PadesOptions()
    out = BytesIO()
    online = isinstance(pki, OnlinePki)
    sign_pades(key, BytesIO(pdf), level=level, options=options, properties=properties,
               timestamps=_tsa(pki) if online else None,  # type: ignore[arg-type]
               trust_roots=(_root(pki),) if pki is not None else (), out=out)
    return out.getvalue()


@dataclass(frozen=True)
class Nss:
    """An NSS database trusting our root, and the pdfsig options that go with the PKI (offline: no OCSP)."""

    directory: Path
    options: tuple[str, ...]


def _nss(tmp_path: Path, pki: Pki, options: tuple[str, ...]) -> Nss:
    directory = tmp_path / "nss"
    directory.mkdir()
    (tmp_path / "root.pem").write_bytes(pki.ca.ca_certificates()["ROOT"].public_bytes(Encoding.PEM))
    subprocess.run(["certutil", "-N", "-d", f"sql:{directory}", "--empty-password"], check=True, capture_output=True)
    subprocess.run(["certutil", "-A", "-d", f"sql:{directory}", "-n", "root", "-t", "CT,C,C",
                    "-i", str(tmp_path / "root.pem")], check=True, capture_output=True)
    return Nss(directory, options)


@pytest.fixture
def nss(tmp_path: Path, pki: Pki) -> Nss:
    """For ``pki``, whose OCSP responder is not served: pdfsig checks the chain without OCSP."""
    return _nss(tmp_path, pki, ("-no-ocsp",))


@pytest.fixture
def nss_online(tmp_path: Path, pki_online: OnlinePki) -> Nss:
    """For ``pki_online``: pdfsig asks our OCSP responder too."""
    return _nss(tmp_path, pki_online, ())


def _pdfsig(nss: Nss, pdf: bytes, tmp_path: Path, signatures: int, stamps: int = 0,
            password: str | None = None) -> str:
    """pdfsig's report: each of the ``signatures`` regular signatures valid and its certificate trusted;
    the ``stamps`` document timestamps are listed (poppler 22.12 cannot validate RFC 3161 document
    timestamps: "Unable to validate this type of signature"; pyHanko checks those)."""
    path = tmp_path / "signed.pdf"
    path.write_bytes(pdf)
    extra = ["-upw", password] if password else []
    done = subprocess.run(["pdfsig", "-nssdir", f"sql:{nss.directory}", *nss.options, *extra, str(path)],
                          capture_output=True, text=True, timeout=60, check=False)
    report = done.stdout + done.stderr
    assert report.count("Signature Type: ETSI.CAdES.detached") + report.count(
        "Signature Type: adbe.pkcs7.detached") == signatures, report
    assert report.count("Signature is Valid.") == signatures, report
    assert report.count("Certificate is Trusted.") == signatures, report
    assert report.count("Signature #") == signatures + stamps, report
    return report


def _qpdf_check(pdf: bytes, tmp_path: Path, password: str | None = None) -> None:
    path = tmp_path / "check.pdf"
    path.write_bytes(pdf)
    extra = [f"--password={password}"] if password else []
    done = subprocess.run(["qpdf", "--check", *extra, str(path)], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No syntax or stream encoding errors found" in done.stdout, done.stdout


def _context(pki: Pki) -> ValidationContext:
    return ValidationContext(trust_roots=[asn1_x509.Certificate.load(_root(pki))], allow_fetching=True)


def _reader(pdf: bytes, password: str | None = None) -> PdfFileReader:
    reader = PdfFileReader(BytesIO(pdf))
    if password is not None:
        reader.decrypt(password)
    return reader


def _validate_all(pdf: bytes, pki: Pki, password: str | None = None) -> list:
    """pyHanko's status of every regular signature: intact, valid, trusted, no illegal modification."""
    statuses = []
    for signature in _reader(pdf, password).embedded_regular_signatures:
        status = validate_pdf_signature(signature, signer_validation_context=_context(pki))
        assert status.intact and status.valid, status.pretty_print_details()
        assert status.trusted, status.pretty_print_details()
        assert status.docmdp_ok, status.pretty_print_details()
        assert status.modification_level in (ModificationLevel.NONE, ModificationLevel.LTA_UPDATES,
                                             ModificationLevel.FORM_FILLING), status.pretty_print_details()
        assert status.bottom_line, status.pretty_print_details()
        statuses.append(status)
    return statuses


def _assert_dss_suffices(reader: PdfFileReader, pki: Pki) -> None:
    """The DSS alone (no fetching, hard-fail revocation) proves every signature's and timestamp's
    certificates valid: what B-LT promises (pyHanko 0.38 has no PAdES-LT validator of its own)."""
    def offline() -> ValidationContext:
        return DocumentSecurityStore.read_dss(reader).as_validation_context({
            "trust_roots": [asn1_x509.Certificate.load(_root(pki))], "allow_fetching": False,
            "revocation_mode": "hard-fail"})

    for signature in reader.embedded_regular_signatures:
        status = validate_pdf_signature(signature, signer_validation_context=offline(), ts_validation_context=offline())
        assert status.bottom_line and status.trusted, status.pretty_print_details()
        assert status.timestamp_validity is None or status.timestamp_validity.trusted
    for stamp in reader.embedded_timestamp_signatures:
        assert validate_pdf_timestamp(stamp, validation_context=offline()).trusted


def _signer_info(pdf: bytes, index: int = -1) -> cms.SignerInfo:
    return _reader(pdf).embedded_regular_signatures[index].signer_info


def _attribute_types(info: cms.SignerInfo, which: str) -> set[str]:
    attrs = info[which]
    return set() if attrs.native is None else {a["type"].dotted for a in attrs}


SIGNATURE_TIME_STAMP = "1.2.840.113549.1.9.16.2.14"
SIGNING_CERTIFICATE_V2 = "1.2.840.113549.1.9.16.2.47"
SIGNING_TIME = "1.2.840.113549.1.9.5"
COMMITMENT_TYPE = "1.2.840.113549.1.9.16.2.16"
SIGNER_ATTRIBUTES_V2 = "0.4.0.19122.1.1"


# ---------------------------------------------------------------- levels

@pytest.mark.parametrize("level", list(Level))
def test_every_level_is_valid_for_pdfsig_qpdf_and_pyhanko(
        pki_online: OnlinePki, nss_online: Nss, tmp_path: Path, level: Level) -> None:
    original = make_pdf(pages=2)
    source = BytesIO(original)
    out = BytesIO()
    sign_pades(user_key(pki_online), source, level=level, timestamps=_tsa(pki_online),
               trust_roots=(_root(pki_online),), out=out)
    signed = out.getvalue()
    assert source.getvalue() == original and signed.startswith(original)  # an incremental update, input untouched

    report = _pdfsig(nss_online, signed, tmp_path, 1, 1 if level is Level.B_LTA else 0)
    assert "ETSI.CAdES.detached" in report
    _qpdf_check(signed, tmp_path)
    (status,) = _validate_all(signed, pki_online)
    info = _signer_info(signed)
    assert SIGNING_CERTIFICATE_V2 in _attribute_types(info, "signed_attrs")
    assert SIGNING_TIME not in _attribute_types(info, "signed_attrs")  # PAdES: the time is /M
    assert (SIGNATURE_TIME_STAMP in _attribute_types(info, "unsigned_attrs")) is level.at_least(Level.B_T)
    if level.at_least(Level.B_T):
        assert status.timestamp_validity is not None and status.timestamp_validity.valid
        assert status.timestamp_validity.trusted

    reader = _reader(signed)
    if level.at_least(Level.B_LT):
        dss = reader.root["/DSS"]
        assert len(dss["/OCSPs"]) >= 2 and len(dss["/Certs"]) >= 3  # signer's and TSA's chains
        _assert_dss_suffices(reader, pki_online)
    else:
        assert "/DSS" not in reader.root
    if level is Level.B_LTA:
        (stamp,) = reader.embedded_timestamp_signatures
        stamp_status = validate_pdf_timestamp(stamp, validation_context=_context(pki_online))
        assert stamp_status.intact and stamp_status.valid and stamp_status.trusted
    else:
        assert not reader.embedded_timestamp_signatures


def test_signed_properties_go_into_the_signature_dictionary_and_the_cms(pki: Pki, nss: Nss, tmp_path: Path) -> None:
    properties = SignatureProperties(claimed_role="Prokuristin", commitment_type=COMMITMENT,
                                     production_place=ProductionPlace(city="Bremen", country="DE"),
                                     reason="Freigabe des Rahmenvertrags")
    signed = _sign(user_key(pki), make_pdf(), pki=pki, properties=properties)
    _pdfsig(nss, signed, tmp_path, 1)
    signature = _reader(signed).embedded_regular_signatures[0]
    assert signature.sig_object["/Reason"] == "Freigabe des Rahmenvertrags"
    assert signature.sig_object["/Location"] == "Bremen"
    assert signature.sig_object["/SubFilter"] == "/ETSI.CAdES.detached"
    attrs = {a["type"].dotted: a for a in signature.signer_info["signed_attrs"]}
    assert attrs[COMMITMENT_TYPE]["values"][0]["commitment_type_id"].dotted == "1.2.840.113549.1.9.16.6.5"
    claimed = attrs[SIGNER_ATTRIBUTES_V2]["values"][0]["claimed_attributes"][0]
    assert claimed["values"][0].native == "Prokuristin"
    _validate_all(signed, pki)


def test_the_default_stamp_shows_the_signers_name(pki: Pki) -> None:
    signed = _sign(user_key(pki, "berta"), make_pdf(), pki=pki)
    field = _reader(signed).embedded_regular_signatures[0].sig_field

    def streams(obj: object) -> bytes:
        obj = obj.get_object()  # type: ignore[attr-defined]
        data = getattr(obj, "data", b"")
        resources = obj.get("/Resources", {}) if hasattr(obj, "get") else {}
        nested = resources.get("/XObject", {}) if hasattr(resources, "get") else {}
        return data + b"".join(streams(x) for x in nested.values())

    assert b"berta" in streams(field["/AP"]["/N"])


@pytest.mark.parametrize("digest", [DigestAlgorithm.SHA384, DigestAlgorithm.SHA512])
def test_other_digest_algorithms(pki: Pki, nss: Nss, tmp_path: Path, digest: DigestAlgorithm) -> None:
    out = BytesIO()
    sign_pades(user_key(pki), BytesIO(make_pdf()), level=Level.B_B, digest=digest, out=out)
    _pdfsig(nss, out.getvalue(), tmp_path, 1)
    assert _signer_info(out.getvalue())["digest_algorithm"]["algorithm"].native == digest.value
    _validate_all(out.getvalue(), pki)


def test_rsa_keys_sign_too(tmp_path: Path, database_url: str, hsm: object) -> None:
    made = make_pki(pki_settings(tmp_path / "var", database_url, key_algorithm="rsa-3072"), hsm)  # type: ignore[arg-type]
    try:
        made.ca.init("test")
        signed = _sign(user_key(made, "rsa"), make_pdf())
        _pdfsig(_nss(tmp_path, made, ("-no-ocsp",)), signed, tmp_path, 1)
        assert _signer_info(signed)["signature_algorithm"]["algorithm"].native == "sha256_rsa"
        _validate_all(signed, made)
    finally:
        made.engine.dispose()


# ---------------------------------------------------------------- several signers, certification, locks

def test_three_signers_in_three_fields_keep_every_signature_valid(pki: Pki, nss: Nss, tmp_path: Path) -> None:
    pdf = make_pdf(pages=2, fields=[EmptyField("Vorstand", 0, (50, 50, 250, 110)),
                                    EmptyField("carl", 1, (300, 50, 500, 110))])
    first = _sign(user_key(pki, "anna"), pdf, options=PadesOptions(placement=Placement(field="Vorstand")))
    second = _sign(user_key(pki, "bert"), first, options=PadesOptions(
        placement=Placement(page=1, box=(300, 200, 200, 60)), field_name="Zeuge"))
    third = _sign(user_key(pki, "carl"), second)  # automatic: the empty field named like the signer

    _pdfsig(nss, third, tmp_path, 3)
    _qpdf_check(third, tmp_path)
    statuses = _validate_all(third, pki)
    names = [s.fq_name for s in _reader(third).embedded_regular_signatures]
    assert names == ["Vorstand", "Zeuge", "carl"]
    assert [s.signing_cert.subject.native["common_name"] for s in statuses] == ["anna", "bert", "carl"]
    zeuge = _reader(third).embedded_regular_signatures[1].sig_field
    assert [float(v) for v in zeuge["/Rect"]] == [300, 200, 500, 260]


def test_without_a_matching_field_the_signature_goes_to_the_default_position_on_the_last_page(pki: Pki) -> None:
    pdf = make_pdf(pages=3, fields=[EmptyField("Vorstand", 0, (50, 50, 250, 110)),
                                    EmptyField("Aufsichtsrat", 0, (300, 50, 500, 110))])
    signed = _sign(user_key(pki, "dora"), pdf)
    reader = _reader(signed)
    (signature,) = reader.embedded_regular_signatures
    assert signature.fq_name == "Signature1"
    last_page = reader.root["/Pages"]["/Kids"][2].get_object()
    assert any(a.get_object().get("/T") == "Signature1" for a in last_page["/Annots"])
    llx, lly, urx, ury = (float(v) for v in signature.sig_field["/Rect"])
    assert (urx, lly, urx - llx, ury - lly) == (595 - 36, 36, 200, 60)


def test_without_a_matching_field_a_templates_default_position_is_taken(pki: Pki) -> None:
    pdf = make_pdf(pages=2, fields=[EmptyField("Vorstand", 0, (50, 50, 250, 110)),
                                    EmptyField("Aufsichtsrat", 0, (300, 50, 500, 110))])
    template_default = (1, (40.0, 700.0, 180.0, 50.0))  # first page, top left
    signed = _sign(user_key(pki, "dora"), pdf, options=PadesOptions(placement=Placement(default=template_default)))
    reader = _reader(signed)
    (signature,) = reader.embedded_regular_signatures
    first_page = reader.root["/Pages"]["/Kids"][0].get_object()
    assert any(a.get_object().get("/T") == signature.fq_name for a in first_page["/Annots"])
    llx, lly, urx, ury = (float(v) for v in signature.sig_field["/Rect"])
    assert (llx, lly, urx - llx, ury - lly) == (40, 700, 180, 50)
    named = _sign(user_key(pki, "vorstand"), make_pdf(fields=[EmptyField("Vorstand", 0, (50, 50, 250, 110)),
                                                                EmptyField("Other", 0, (300, 50, 500, 110))]),
                  options=PadesOptions(placement=Placement(default=template_default)))
    assert _reader(named).embedded_regular_signatures[0].fq_name == "Vorstand"  # the signer's field comes first


def test_page_minus_one_is_the_last_page(pki: Pki) -> None:
    signed = _sign(user_key(pki), make_pdf(pages=4), options=PadesOptions(placement=Placement(page=-1, box=(10, 10, 100, 40))))
    reader = _reader(signed)
    annotated = [i for i, kid in enumerate(reader.root["/Pages"]["/Kids"]) if "/Annots" in kid.get_object()]
    assert annotated == [3]


def test_an_only_empty_field_is_taken_and_an_invisible_signature_has_no_widget_area(pki: Pki, nss: Nss,
                                                                                    tmp_path: Path) -> None:
    signed = _sign(user_key(pki), make_pdf(fields=[EmptyField("Unterschrift", 0, (50, 50, 250, 110))]))
    assert _reader(signed).embedded_regular_signatures[0].fq_name == "Unterschrift"
    invisible = _sign(user_key(pki, "emil"), make_pdf(), options=PadesOptions(placement=Placement(invisible=True)))
    rect = [float(v) for v in _reader(invisible).embedded_regular_signatures[0].sig_field["/Rect"]]
    assert rect == [0, 0, 0, 0]
    _pdfsig(nss, invisible, tmp_path, 1)


def test_a_certification_signature_allows_later_signers_to_fill_fields(pki: Pki, nss: Nss, tmp_path: Path) -> None:
    pdf = make_pdf(fields=[EmptyField("Autor", 0, (50, 50, 250, 110)), EmptyField("Freigabe", 0, (300, 50, 500, 110))])
    certified = _sign(user_key(pki, "anna"), pdf, options=PadesOptions(placement=Placement(field="Autor"),
                                                                       certify=True))
    signature = _reader(certified).embedded_regular_signatures[0]
    assert signature.docmdp_level is not None and signature.docmdp_level.value == 2
    assert "/Perms" in _reader(certified).root

    both = _sign(user_key(pki, "bert"), certified, options=PadesOptions(placement=Placement(field="Freigabe")))
    _pdfsig(nss, both, tmp_path, 2)
    first, _second = _validate_all(both, pki)
    assert first.docmdp_ok and first.modification_level <= ModificationLevel.FORM_FILLING

    with pytest.raises(SiegelError) as refused:
        _sign(user_key(pki, "carl"), both, options=PadesOptions(certify=True))
    assert refused.value.code is Code.BAD_REQUEST and "first signature" in refused.value.message


def test_a_field_lock_flags_a_later_change_of_a_locked_field(pki: Pki) -> None:
    pdf = make_pdf(text_fields=[("Betrag", "100 EUR"), ("Bemerkung", "")])
    signed = _sign(user_key(pki), pdf, options=PadesOptions(lock_fields=("Betrag",)))
    (signature,) = _reader(signed).embedded_regular_signatures
    assert signature.fieldmdp is not None and list(signature.fieldmdp.fields) == ["Betrag"]
    _validate_all(signed, pki)

    free = set_text_field(signed, "Bemerkung", "gelesen")  # not locked: form filling
    assert validate_pdf_signature(_reader(free).embedded_regular_signatures[0],
                                  signer_validation_context=_context(pki)).bottom_line

    changed = set_text_field(signed, "Betrag", "100000 EUR")
    status = validate_pdf_signature(_reader(changed).embedded_regular_signatures[0],
                                    signer_validation_context=_context(pki))
    assert status.intact and status.valid  # the signed revision is untouched ...
    assert not status.bottom_line and not status.docmdp_ok  # ... but the locked field changed after it

    locked_all = _sign(user_key(pki, "bert"), pdf, options=PadesOptions(lock_fields=()))
    changed = set_text_field(locked_all, "Bemerkung", "gelesen")
    assert not validate_pdf_signature(_reader(changed).embedded_regular_signatures[0],
                                      signer_validation_context=_context(pki)).bottom_line


# ---------------------------------------------------------------- refusals

@pytest.mark.parametrize(("placement", "named"), [
    (Placement(field="Gibtsnicht"), "'Gibtsnicht'"),
    (Placement(field="Vorstand"), "'Vorstand' is signed already"),
    (Placement(page=1, box=(500, 10, 200, 60)), "box (x 500, y 10, width 200, height 60)"),
    (Placement(page=1, box=(10, -5, 50, 50)), "box (x 10, y -5"),
    (Placement(page=7, box=(10, 10, 50, 50)), "page 7 does not exist"),
    (Placement(field="Vorstand", page=1), "either a signature field or a page"),
])
def test_placement_errors_are_bad_requests_naming_the_field_or_box(pki: Pki, placement: Placement, named: str) -> None:
    key = user_key(pki)
    signed = _sign(key, make_pdf(fields=[EmptyField("Vorstand", 0, (50, 50, 250, 110))]),
                   options=PadesOptions(placement=Placement(field="Vorstand")))
    with pytest.raises(SiegelError) as refused:
        _sign(key, signed, options=PadesOptions(placement=placement))
    assert refused.value.code is Code.BAD_REQUEST
    assert named in refused.value.message


@pytest.mark.parametrize(("document", "named"), [
    (b"Das ist kein PDF", "not a PDF"),
    (b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog >>\nendobj\n%%EOF\n", "cannot be read"),
    (b"", "not a PDF"),
])
def test_a_broken_pdf_is_a_bad_request(pki: Pki, document: bytes, named: str) -> None:
    with pytest.raises(SiegelError) as refused:
        _sign(user_key(pki), document)
    assert refused.value.code is Code.BAD_REQUEST and named in refused.value.message


def test_a_truncated_pdf_is_a_bad_request(pki: Pki) -> None:
    pdf = make_pdf(pages=2)
    with pytest.raises(SiegelError) as refused:
        _sign(user_key(pki), pdf[: len(pdf) // 2])
    assert refused.value.code is Code.BAD_REQUEST


# ---------------------------------------------------------------- encryption

def test_an_encrypted_pdf_is_signed_with_its_password_and_refused_without(pki: Pki, nss: Nss, tmp_path: Path) -> None:
    encrypted = encrypt_with_qpdf(make_pdf(pages=2), tmp_path, "geheim")
    key = user_key(pki)
    for password in (None, "falsch"):
        with pytest.raises(SiegelError) as refused:
            _sign(key, encrypted, options=PadesOptions(password=password))
        assert refused.value.code is Code.BAD_REQUEST and "encrypted: give its password" in refused.value.message

    signed = _sign(key, encrypted, options=PadesOptions(password="geheim"))
    assert signed.startswith(encrypted)
    _pdfsig(nss, signed, tmp_path, 1, password="geheim")
    _qpdf_check(signed, tmp_path, password="geheim")
    _validate_all(signed, pki, password="geheim")


def test_a_pyhanko_encrypted_pdf_with_a_mac_signs_to_b_lta(pki_online: OnlinePki, tmp_path: Path) -> None:
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.pdf_utils.writer import copy_into_new_writer

    plain = PdfFileReader(BytesIO(make_pdf()))
    writer = copy_into_new_writer(plain)
    writer.encrypt("owner-pw", "geheim")
    encrypted = BytesIO()
    writer.write(encrypted)
    assert IncrementalPdfFileWriter(BytesIO(encrypted.getvalue())).prev.encrypted

    signed = _sign(user_key(pki_online), encrypted.getvalue(), level=Level.B_LTA, pki=pki_online,
                   options=PadesOptions(password="geheim"))
    _validate_all(signed, pki_online, password="geheim")
    assert _reader(signed, "geheim").embedded_timestamp_signatures


# ---------------------------------------------------------------- hash-only and two-step

def test_hash_only_prepare_sign_in_the_hsm_assemble(pki: Pki, nss: Nss, tmp_path: Path) -> None:
    key = user_key(pki)
    document = BytesIO()
    prepared = prepare_pades(BytesIO(make_pdf()), key.chain, options=PadesOptions(), out=document)
    assert len(prepared.to_be_signed) == 32
    value = pki.hsm.sign_digest(key.label, prepared.to_be_signed, DigestAlgorithm.SHA256, prepared.scheme)

    out = BytesIO()
    assemble_pades(prepared, value, level=Level.B_B, timestamps=None, trust_roots=(), out=out)
    _pdfsig(nss, out.getvalue(), tmp_path, 1)
    _validate_all(out.getvalue(), pki)


def test_a_wrong_signature_value_is_refused_before_it_is_embedded(pki: Pki) -> None:
    key = user_key(pki)
    document = BytesIO()
    prepared = prepare_pades(BytesIO(make_pdf()), key.chain, options=PadesOptions(), out=document)
    before = document.getvalue()
    wrong = pki.hsm.sign_digest(key.label, hashlib.sha256(b"something else").digest(), DigestAlgorithm.SHA256,
                                prepared.scheme)
    for value in (wrong, b"\x00" * 72):
        with pytest.raises(SiegelError) as refused:
            assemble_pades(prepared, value, level=Level.B_B, timestamps=None, trust_roots=(), out=document)
        assert refused.value.code is Code.BAD_REQUEST and "does not verify" in refused.value.message
    assert document.getvalue() == before  # nothing embedded


def test_two_step_across_requests_with_the_state_and_the_prepared_file(
        pki_online: OnlinePki, nss_online: Nss, tmp_path: Path) -> None:
    key = user_key(pki_online)
    path = tmp_path / "prepared.pdf"
    with path.open("w+b") as document:
        prepared = prepare_pades(BytesIO(make_pdf()), key.chain, options=PadesOptions(), out=document)
        state = json.dumps(prepared.to_state())
        digest = prepared.to_be_signed
    value = key.source.sign_digest(key.label, digest, DigestAlgorithm.SHA256, prepared.scheme)

    with path.open("r+b") as document:
        resumed = PreparedPades.from_state(json.loads(state), document)
        assert resumed.to_be_signed == digest
        out = BytesIO()
        assemble_pades(resumed, value, level=Level.B_LT, timestamps=_tsa(pki_online),
                       trust_roots=(_root(pki_online),), out=out)
    _pdfsig(nss_online, out.getvalue(), tmp_path, 1)
    _validate_all(out.getvalue(), pki_online)

    tampered = bytearray(path.read_bytes())
    tampered[20] ^= 1
    with pytest.raises(SiegelError) as refused:
        PreparedPades.from_state(json.loads(state), BytesIO(bytes(tampered)))
    assert refused.value.code is Code.BAD_REQUEST and "not the one prepared" in refused.value.message


# ---------------------------------------------------------------- extension

class _HsmSigner(Signer):
    """pyHanko's own signer over our HSM key: a signature as another producer makes it (adbe.pkcs7.detached,
    signing-time attribute)."""

    def __init__(self, key: SigningKey) -> None:
        certs = [asn1_x509.Certificate.load(c) for c in key.chain]
        super().__init__(signing_cert=certs[0], cert_registry=SimpleCertificateStore.from_certs(certs[1:]))
        self._key = key

    async def async_sign_raw(self, data: bytes, digest_algorithm: str, dry_run: bool = False) -> bytes:
        if dry_run:
            return bytes(72)
        return self._key.source.sign_digest(self._key.label, hashlib.new(digest_algorithm, data).digest(),
                                            DigestAlgorithm(digest_algorithm), SignatureScheme.ECDSA)


def test_extend_raises_another_producers_signature_to_b_lta_and_renews_it(
        pki_online: OnlinePki, nss_online: Nss, tmp_path: Path) -> None:
    key = user_key(pki_online)
    foreign = BytesIO()
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter

    PdfSigner(PdfSignatureMetadata(field_name="Fremd", md_algorithm="sha256"), _HsmSigner(key)).sign_pdf(
        IncrementalPdfFileWriter(BytesIO(make_pdf())), output=foreign)
    assert _reader(foreign.getvalue()).embedded_regular_signatures[0].sig_object["/SubFilter"] == "/adbe.pkcs7.detached"

    lt = BytesIO()
    extend_pades(BytesIO(foreign.getvalue()), Level.B_LT, timestamps=_tsa(pki_online),
                 trust_roots=(_root(pki_online),), out=lt)
    reader = _reader(lt.getvalue())
    assert len(reader.embedded_timestamp_signatures) == 1  # B-T by a document timestamp: the CMS has none
    assert len(reader.root["/DSS"]["/OCSPs"]) >= 2
    _pdfsig(nss_online, lt.getvalue(), tmp_path, 1, 1)

    lta = BytesIO()
    extend_pades(BytesIO(lt.getvalue()), Level.B_LTA, timestamps=_tsa(pki_online),
                 trust_roots=(_root(pki_online),), out=lta)
    renewed = BytesIO()
    extend_pades(BytesIO(lta.getvalue()), Level.B_LTA, timestamps=_tsa(pki_online),
                 trust_roots=(_root(pki_online),), out=renewed)
    reader = _reader(renewed.getvalue())
    assert len(reader.embedded_timestamp_signatures) == 3
    _pdfsig(nss_online, renewed.getvalue(), tmp_path, 1, 3)
    _qpdf_check(renewed.getvalue(), tmp_path)
    _validate_all(renewed.getvalue(), pki_online)
    _assert_dss_suffices(reader, pki_online)


def test_extend_of_an_unsigned_pdf_is_refused(pki_online: OnlinePki) -> None:
    with pytest.raises(SiegelError) as refused:
        extend_pades(BytesIO(make_pdf()), Level.B_LT, timestamps=_tsa(pki_online), trust_roots=(_root(pki_online),),
                     out=BytesIO())
    assert refused.value.code is Code.BAD_REQUEST and "no signature" in refused.value.message


# ---------------------------------------------------------------- memory

def test_a_20_mb_pdf_signs_from_file_to_file_with_little_memory(pki: Pki, nss: Nss, tmp_path: Path) -> None:
    size = 20 * 1024 * 1024
    source = tmp_path / "big.pdf"
    source.write_bytes(make_pdf(pages=2, padding=size))
    key = user_key(pki)
    target = tmp_path / "big-signed.pdf"
    tracemalloc.start()
    try:
        with source.open("rb") as pdf, target.open("w+b") as out:
            sign_pades(key, pdf, level=Level.B_B, out=out)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < size // 2, f"peak {peak / 2**20:.1f} MiB for a {size / 2**20:.0f} MiB PDF"
    _pdfsig(nss, target.read_bytes(), tmp_path, 1)

    data = source.read_bytes()  # in memory already (as a request body is): the output is the one copy more
    tracemalloc.start()
    try:
        out = BytesIO()
        sign_pades(key, BytesIO(data), level=Level.B_B, out=out)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1.5 * size, f"peak {peak / 2**20:.1f} MiB for a {size / 2**20:.0f} MiB PDF in memory"
