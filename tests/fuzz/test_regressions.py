"""The minimal inputs of what the fuzz harnesses found, each answered with a clean refusal now; and the
harnesses' watchdog."""

from __future__ import annotations

import io
import struct
import time
import zipfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from asn1crypto import core
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from adapters.timestamp.client import InvalidToken, parse_response, verify_token
from server.errors import Code, SiegelError
from server.validation.asic import verify_asic
from server.validation.certificates import check_signer
from server.validation.model import Indication, SubIndication, Trust
from server.validation.pades import verify_pdf
from server.validation.xades import verify_xml_signatures
from server.web import auth, remote_signing, rest, twofactor
from tests.fuzz.runner import Hang, watchdog
from tests.fuzz.targets import RestRequest, _claimed_imprint

pytestmark = pytest.mark.unit

REGRESSIONS = Path(__file__).parent / "regressions"


def _container_with_central_directory_offset_moved(by: int) -> bytes:
    """A one-entry ASiC start (``mimetype`` stored) whose end record names the central directory ``by``
    bytes later than it lies: zipfile then seeks to a negative local header offset."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(zipfile.ZipInfo("mimetype"), "application/vnd.etsi.asic-e+zip")
    data = bytearray(buffer.getvalue())
    end = len(data) - 22  # the end of central directory record, without a comment
    (offset,) = struct.unpack_from("<I", data, end + 16)
    struct.pack_into("<I", data, end + 16, offset + by)
    return bytes(data)


def test_a_zip_whose_offsets_point_before_its_start_is_a_bad_container() -> None:
    data = _container_with_central_directory_offset_moved(0x01000000)
    with pytest.raises(SiegelError) as refused:
        verify_asic(data, Trust((), False, None), max_bytes=1 << 20)
    assert refused.value.code is Code.BAD_REQUEST and "not a readable ZIP" in refused.value.message


def test_a_stored_entry_that_claims_deflate_data_it_lacks_is_a_bad_container() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(zipfile.ZipInfo("mimetype"), "application/vnd.etsi.asic-e+zip")
        archive.writestr("data.txt", b"x" * 4096, compress_type=zipfile.ZIP_DEFLATED)
    data = bytearray(buffer.getvalue())
    start = data.index(b"data.txt") + len(b"data.txt")  # the deflate stream of the second entry
    data[start:start + 4] = b"\xff\xff\xff\xff"
    with pytest.raises(SiegelError) as refused:
        verify_asic(bytes(data), Trust((), False, None), max_bytes=1 << 20)
    assert refused.value.code is Code.BAD_REQUEST


JSON_READERS = {"rest": rest._json_object, "auth": auth._json_object, "twofactor": twofactor._body,
                "remote_signing": remote_signing._body}
"""Every JSON body reader of the REST resources (csc.py has its own: tests/fuzz/findings/)."""


@pytest.mark.parametrize("reader", sorted(JSON_READERS))
@pytest.mark.parametrize("body", [b"[" * 100_000, b'{"a":' * 100_000], ids=["array", "object"])
def test_json_nested_deeper_than_the_stack_is_a_bad_request(body: bytes, reader: str) -> None:
    request = RestRequest(io.BytesIO(body), {}, {})
    with pytest.raises(SiegelError) as refused:
        JSON_READERS[reader](request)
    assert refused.value.code is Code.BAD_REQUEST


@pytest.mark.parametrize("spin", ["cpu", "sleep"])
def test_the_watchdog_reports_an_input_that_runs_past_its_bound(spin: str) -> None:
    started = time.monotonic()
    with pytest.raises(Hang):
        with watchdog(0.2):
            while time.monotonic() - started < 10:
                if spin == "sleep":
                    time.sleep(0.01)
    assert time.monotonic() - started < 5
    with watchdog(0.2):  # a quick block passes, and the timers are off afterwards
        pass
    time.sleep(0.3)


def test_a_container_whose_mimetype_entry_is_encrypted_is_a_bad_container() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        entry = zipfile.ZipInfo("mimetype")
        entry.flag_bits |= 0x1  # "encrypted": zipfile wants a password (RuntimeError) before reading it
        archive.writestr(entry, "application/vnd.etsi.asic-e+zip")
    with pytest.raises(SiegelError) as refused:
        verify_asic(buffer.getvalue(), Trust((), False, None), max_bytes=1 << 20)
    assert refused.value.code is Code.BAD_REQUEST


def test_a_pdf_whose_object_stream_does_not_inflate_is_a_format_failure() -> None:
    data = (REGRESSIONS / "pdf-object-stream-bad-deflate.pdf").read_bytes()  # found by atheris (verify-pdf)
    (report,) = verify_pdf(data, Trust((), False, None))
    assert (report.indication, report.sub_indication) == (Indication.TOTAL_FAILED, SubIndication.FORMAT_FAILURE)
    assert "decompressing" in report.messages[0]


def _certificate(extra: core.Asn1Value | None = None) -> bytes:
    """A self-signed certificate; with ``extra``, its subject and issuer gain an attribute of an unknown type
    with that value (not signed again)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fuzz")])
    now = datetime.now(timezone.utc)
    made = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + timedelta(days=1)).sign(key, hashes.SHA256()))
    if extra is None:
        return made.public_bytes(Encoding.DER)
    cert = asn1_x509.Certificate.load(made.public_bytes(Encoding.DER))
    tbs = cert["tbs_certificate"]
    for field in ("issuer", "subject"):
        rdns = list(tbs[field].chosen) + [asn1_x509.RelativeDistinguishedName([{"type": "1.2.3.4", "value": extra}])]
        tbs[field] = asn1_x509.Name(name="", value=asn1_x509.RDNSequence(rdns))
    return asn1_x509.Certificate({"tbs_certificate": tbs, "signature_algorithm": cert["signature_algorithm"],
                                  "signature_value": cert["signature_value"]}).dump(force=True)


def test_a_certificate_with_a_boolean_in_its_name_is_malformed() -> None:
    bad = _certificate(core.Boolean(True))  # found by atheris (verify-xml, in ds:X509Certificate)
    signer = _certificate()
    result = check_signer(signer, [bad], Trust((_certificate(),), False, None), at=datetime.now(timezone.utc))
    assert (result.indication, result.sub_indication) == (Indication.INDETERMINATE,
                                                          SubIndication.CERTIFICATE_CHAIN_GENERAL_FAILURE)
    assert "malformed" in result.message


def test_a_container_that_zipfile_indexes_past_a_header_is_a_bad_container() -> None:
    data = (REGRESSIONS / "asic-short-local-header.zip").read_bytes()  # found by atheris (verify-asic)
    with pytest.raises(SiegelError) as refused:
        verify_asic(data, Trust((), False, None), max_bytes=1 << 40)
    assert refused.value.code is Code.BAD_REQUEST


def test_a_token_whose_signer_key_cannot_be_loaded_is_invalid() -> None:
    data = (REGRESSIONS / "tsr-unreadable-signer-key.tsr").read_bytes()  # found by atheris (tsp-response)
    _, token = parse_response(data)
    assert token is not None
    digest, algorithm = _claimed_imprint(token)
    with pytest.raises(InvalidToken):
        verify_token(token, digest, algorithm)


def test_an_x509certificate_of_an_unknown_version_is_a_format_failure() -> None:
    data = (REGRESSIONS / "xades-certificate-version-10.xml").read_bytes()  # found by atheris (verify-xml)
    reports = verify_xml_signatures(data, Trust((), False, None), detached={}, detached_digests={}, name="x.xml")
    assert any(r.sub_indication is SubIndication.FORMAT_FAILURE for r in reports), [r.messages for r in reports]
