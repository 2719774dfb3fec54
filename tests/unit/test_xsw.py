"""XML Signature Wrapping against :func:`verify_xml_signatures`, on signatures made here with a software key.

Each attack keeps SignedInfo (so the SignatureValue still verifies) and moves, duplicates or wraps what a
reference points to; the verdict must say so and the reported scopes must name only what is signed.
"""

from __future__ import annotations

import base64
import hashlib
import re
import socket
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID
from lxml import etree

from server.errors import Code, SiegelError
from server.validation.model import Indication, SignatureReport, SubIndication, Trust
from server.validation.xades import verify_xml_signatures

pytestmark = pytest.mark.unit

DS = "http://www.w3.org/2000/09/xmldsig#"
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
ENVELOPED = DS + "enveloped-signature"
ORDER_NS = "urn:example:order"
UNTRUSTED = Trust(roots=(), allow_fetching=False)
DOCUMENT = (b'<sv:Orders xmlns:sv="urn:example:order">'
            b'<sv:Order Id="order-1"><sv:Amount>100</sv:Amount></sv:Order>'
            b'<sv:Note Id="note-1">keep</sv:Note></sv:Orders>')


@pytest.fixture(scope="module")
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def certificate(key: ec.EllipticCurvePrivateKey) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "XSW test signer")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.DER)


def _ds(name: str) -> str:
    return f"{{{DS}}}{name}"


def _exc_c14n(element: etree._Element) -> bytes:
    return etree.tostring(element, method="c14n", exclusive=True, with_comments=False)


Signer = Callable[[bytes], bytes]
ECDSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"


def ecdsa_p256(key: ec.EllipticCurvePrivateKey) -> Signer:
    """XMLDSig's ECDSA value: r || s, each as long as the curve's order."""
    def signer(data: bytes) -> bytes:
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return signer


def _target_data(root: etree._Element, uri: str) -> tuple[bytes, list[str]]:
    """What a reference to ``uri`` digests (before the signature is added) and its transforms."""
    if uri in ("", "#xpointer(/)"):
        return _exc_c14n(root), [ENVELOPED, EXC_C14N]
    pointer = re.fullmatch(r"#xpointer\(id\('([^']+)'\)\)", uri)
    identifier = pointer.group(1) if pointer else uri[1:]
    if not uri.startswith("#"):
        return b"data the verifier never sees", []
    targets = root.xpath("//*[@Id=$id]", id=identifier)
    return (_exc_c14n(targets[0]) if targets else b"data the verifier never sees"), [EXC_C14N]


def sign(document: bytes, uris: Sequence[str], key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
         certificate: bytes, *, method: str = ECDSA_SHA256, signer: Signer | None = None) -> bytes:
    """``document`` with an XMLDSig (exclusive C14N) appended to its root, one reference per ``uris`` entry
    ("" enveloped, "#id", "#xpointer(id('id'))"); one naming no element gets the digest of other data."""
    root = etree.fromstring(document)
    digested = [_target_data(root, uri) for uri in uris]
    signature = etree.SubElement(root, _ds("Signature"), nsmap={"ds": DS}, Id="signature-under-test")
    signed_info = etree.SubElement(signature, _ds("SignedInfo"))
    etree.SubElement(signed_info, _ds("CanonicalizationMethod"), Algorithm=EXC_C14N)
    etree.SubElement(signed_info, _ds("SignatureMethod"), Algorithm=method)
    for uri, (data, algorithms) in zip(uris, digested, strict=True):
        reference = etree.SubElement(signed_info, _ds("Reference"), URI=uri)
        transforms = etree.SubElement(reference, _ds("Transforms"))
        for algorithm in algorithms:
            etree.SubElement(transforms, _ds("Transform"), Algorithm=algorithm)
        etree.SubElement(reference, _ds("DigestMethod"), Algorithm="http://www.w3.org/2001/04/xmlenc#sha256")
        etree.SubElement(reference, _ds("DigestValue")).text = base64.b64encode(
            hashlib.sha256(data).digest()).decode()
    if signer is None:
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        signer = ecdsa_p256(key)
    value = signer(_exc_c14n(signed_info))
    etree.SubElement(signature, _ds("SignatureValue")).text = base64.b64encode(value).decode()
    key_info = etree.SubElement(signature, _ds("KeyInfo"))
    etree.SubElement(etree.SubElement(key_info, _ds("X509Data")), _ds("X509Certificate")).text = \
        base64.b64encode(certificate).decode()
    return etree.tostring(root)


@pytest.fixture
def signed(key: ec.EllipticCurvePrivateKey, certificate: bytes) -> bytes:
    return sign(DOCUMENT, ["#order-1"], key, certificate)


def verify(document: bytes, trust: Trust = UNTRUSTED) -> SignatureReport:
    [report] = verify_xml_signatures(document, trust, name="orders.xml")
    return report


def verdict(report: SignatureReport) -> tuple[Indication, SubIndication | None]:
    return report.indication, report.sub_indication


def order(root: etree._Element) -> etree._Element:
    return root.find(f"{{{ORDER_NS}}}Order")


def fake_order() -> etree._Element:
    fake = etree.Element(f"{{{ORDER_NS}}}Order", Id="order-1")
    etree.SubElement(fake, f"{{{ORDER_NS}}}Amount").text = "1000000"
    return fake


def ds_object(parent: etree._Element) -> etree._Element:
    return etree.SubElement(parent, _ds("Object"))


def test_untouched_signature_is_crypto_valid_with_the_exact_scope(signed: bytes) -> None:
    report = verify(signed)
    assert verdict(report) == (Indication.INDETERMINATE, SubIndication.NO_CERTIFICATE_CHAIN_FOUND)
    [scope] = report.scopes
    assert (scope.name, scope.scope, scope.digest_algorithm) == ("#order-1", "PARTIAL", "sha256")
    assert scope.description == "element sv:Order with Id=order-1 at /Orders/Order"
    assert report.signature_algorithm == "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"


def test_trusted_signer_passes(signed: bytes, certificate: bytes) -> None:
    report = verify(signed, Trust(roots=(certificate,), allow_fetching=False))
    assert verdict(report) == (Indication.TOTAL_PASSED, None), report.messages
    assert report.chain and report.chain[0] == certificate


def test_signed_element_moved_and_fake_in_its_place(signed: bytes) -> None:
    """Both carry the id: the reference is ambiguous, nothing is reported as signed."""
    root = etree.fromstring(signed)
    genuine = order(root)
    genuine.addnext(fake_order())
    hidden = etree.SubElement(root, f"{{{ORDER_NS}}}Archive")
    hidden.append(genuine)
    report = verify(etree.tostring(root))
    assert verdict(report) == (Indication.TOTAL_FAILED, SubIndication.FORMAT_FAILURE)
    assert report.scopes == []
    assert "order-1" in report.messages[0] and "2 elements" in report.messages[0]


def test_signed_element_moved_with_its_id_removed_is_a_hash_failure(signed: bytes) -> None:
    root = etree.fromstring(signed)
    genuine = order(root)
    genuine.addnext(fake_order())
    del genuine.attrib["Id"]
    report = verify(etree.tostring(root))
    assert verdict(report) == (Indication.TOTAL_FAILED, SubIndication.HASH_FAILURE)
    assert report.scopes == []


def test_original_wrapped_in_a_signature_object_is_reported_where_it_is(signed: bytes) -> None:
    """The signed element moved into a ds:Object, an unsigned look-alike without id in its place: the
    signature verifies, and the scope names the element inside the ds:Object, not the look-alike."""
    root = etree.fromstring(signed)
    genuine = order(root)
    look_alike = fake_order()
    del look_alike.attrib["Id"]
    genuine.addnext(look_alike)
    ds_object(root.find(_ds("Signature"))).append(genuine)
    report = verify(etree.tostring(root))
    assert verdict(report) == (Indication.INDETERMINATE, SubIndication.NO_CERTIFICATE_CHAIN_FOUND)
    [scope] = report.scopes
    assert scope.description == "element sv:Order with Id=order-1 at /Orders/Signature/Object/Order"


def test_original_wrapped_in_a_nested_object_is_not_signed_data(signed: bytes) -> None:
    root = etree.fromstring(signed)
    genuine = order(root)
    genuine.addnext(etree.Element(f"{{{ORDER_NS}}}Placeholder"))
    wrapper = etree.SubElement(ds_object(root.find(_ds("Signature"))), f"{{{ORDER_NS}}}wrapper")
    ds_object(wrapper).append(genuine)
    report = verify(etree.tostring(root))
    assert verdict(report) == (Indication.INDETERMINATE, SubIndication.SIGNED_DATA_NOT_FOUND)
    assert report.scopes == []


@pytest.mark.parametrize("attribute", ["Id", "ID", "id", "{http://www.w3.org/XML/1998/namespace}id"])
def test_duplicate_id_under_any_id_attribute(signed: bytes, attribute: str) -> None:
    root = etree.fromstring(signed)
    etree.SubElement(root, f"{{{ORDER_NS}}}Extra", {attribute: "order-1"})
    report = verify(etree.tostring(root))
    assert verdict(report) == (Indication.TOTAL_FAILED, SubIndication.FORMAT_FAILURE)
    assert report.scopes == []


def test_exclusive_c14n_ignores_comments_attribute_whitespace_and_unused_namespaces(signed: bytes) -> None:
    text = signed.decode()
    changed = (text.replace('<sv:Order Id="order-1">', '<sv:Order   Id = "order-1" ><!-- a remark -->')
               .replace('<sv:Orders xmlns:sv="urn:example:order">',
                        '<sv:Orders xmlns:sv="urn:example:order" xmlns:unused="urn:unused">'))
    assert changed != text
    report = verify(changed.encode())
    assert verdict(report) == (Indication.INDETERMINATE, SubIndication.NO_CERTIFICATE_CHAIN_FOUND)


def test_a_changed_text_is_a_hash_failure(signed: bytes) -> None:
    report = verify(signed.replace(b">100<", b">1000<"))
    assert verdict(report) == (Indication.TOTAL_FAILED, SubIndication.HASH_FAILURE)
    assert report.scopes == []


def test_unsigned_elements_are_never_scopes(signed: bytes) -> None:
    report = verify(signed)
    assert all("note-1" not in s.name + s.description for s in report.scopes)


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A TCP port that records whether anyone connected."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.setblocking(False)
    yield server
    server.close()


def test_references_outside_the_document_are_never_fetched(key: ec.EllipticCurvePrivateKey, certificate: bytes,
                                                            listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    for uri in ("#missing", "other.xml", "file:///etc/hostname", f"http://127.0.0.1:{port}/order.xml"):
        report = verify(sign(DOCUMENT, [uri], key, certificate))
        assert verdict(report) == (Indication.INDETERMINATE, SubIndication.SIGNED_DATA_NOT_FOUND), uri
        assert report.scopes == []
    with pytest.raises(BlockingIOError):
        listener.accept()


def test_detached_document_is_named_as_supplied(key: ec.EllipticCurvePrivateKey, certificate: bytes) -> None:
    """A reference "./my%20order.xml" resolves to the caller's "my order.xml" and the scope says so."""
    signed = sign(DOCUMENT, ["./my%20order.xml"], key, certificate)
    [report] = verify_xml_signatures(signed, UNTRUSTED, detached={"my order.xml": b"data the verifier never sees"})
    assert verdict(report) == (Indication.INDETERMINATE, SubIndication.NO_CERTIFICATE_CHAIN_FOUND)
    [scope] = report.scopes
    assert (scope.name, scope.scope) == ("my order.xml", "FULL")


def test_detached_data_that_is_not_xml_cannot_be_canonicalized(key: ec.EllipticCurvePrivateKey,
                                                               certificate: bytes) -> None:
    signed = sign(DOCUMENT, ["x.xml"], key, certificate).replace(
        b'<ds:Reference URI="x.xml">',
        f'<ds:Reference URI="x.xml"><ds:Transforms><ds:Transform Algorithm="{EXC_C14N}"/></ds:Transforms>'.encode())
    for content in (b"not xml", b'<!DOCTYPE x [<!ENTITY e "e">]><x>&e;</x>'):
        [report] = verify_xml_signatures(signed, UNTRUSTED, detached={"x.xml": content})
        assert verdict(report) == (Indication.TOTAL_FAILED, SubIndication.FORMAT_FAILURE)
        assert any("not XML that can be canonicalized" in m for m in report.messages)


def test_xslt_transform_is_refused(signed: bytes) -> None:
    xslt = b'<ds:Transform Algorithm="http://www.w3.org/TR/1999/REC-xslt-19991116"/>'
    report = verify(signed.replace(f'<ds:Transform Algorithm="{EXC_C14N}"/>'.encode(), xslt))
    assert verdict(report) == (Indication.TOTAL_FAILED, SubIndication.FORMAT_FAILURE)
    assert any("REC-xslt" in m for m in report.messages)


def test_dtd_is_refused_before_any_signature_work(signed: bytes) -> None:
    hostile = b'<!DOCTYPE x [<!ENTITY e "boom">]>' + signed
    with pytest.raises(SiegelError) as raised:
        verify_xml_signatures(hostile, UNTRUSTED)
    assert raised.value.code is Code.HOSTILE_XML


def _self_signed(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "algorithm test signer")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=30)).sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.DER)


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _over_other_data(signer: Signer) -> Signer:
    return lambda data: signer(data + b"x")


def test_rsa_pkcs1_and_pss_and_p384(rsa_key: rsa.RSAPrivateKey) -> None:
    p384 = ec.generate_private_key(ec.SECP384R1())

    def ecdsa_p384(data: bytes) -> bytes:
        r, s = decode_dss_signature(p384.sign(data, ec.ECDSA(hashes.SHA384())))
        return r.to_bytes(48, "big") + s.to_bytes(48, "big")

    pss = padding.PSS(padding.MGF1(hashes.SHA256()), 32)
    cases: list[tuple[str, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, Signer]] = [
        ("http://www.w3.org/2001/04/xmldsig-more#rsa-sha256", rsa_key,
         lambda data: rsa_key.sign(data, padding.PKCS1v15(), hashes.SHA256())),
        ("http://www.w3.org/2007/05/xmldsig-more#sha256-rsa-MGF1", rsa_key,
         lambda data: rsa_key.sign(data, pss, hashes.SHA256())),
        ("http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384", p384, ecdsa_p384),
    ]
    for method, key, signer in cases:
        certificate = _self_signed(key)
        report = verify(sign(DOCUMENT, ["#order-1"], key, certificate, method=method, signer=signer))
        assert verdict(report) == (Indication.INDETERMINATE, SubIndication.NO_CERTIFICATE_CHAIN_FOUND), method
        assert report.signature_algorithm == method
        forged = verify(sign(DOCUMENT, ["#order-1"], key, certificate, method=method,
                             signer=_over_other_data(signer)))
        assert verdict(forged) == (Indication.TOTAL_FAILED, SubIndication.SIG_CRYPTO_FAILURE), method


def test_whole_document_enveloped_and_xpointer(key: ec.EllipticCurvePrivateKey, certificate: bytes) -> None:
    report = verify(sign(DOCUMENT, ["", "#xpointer(id('note-1'))"], key, certificate))
    assert verdict(report) == (Indication.INDETERMINATE, SubIndication.NO_CERTIFICATE_CHAIN_FOUND), report.messages
    whole, note = report.scopes
    assert (whole.name, whole.scope) == ("orders.xml", "FULL")
    assert (note.name, note.scope) == ("#note-1", "PARTIAL")


def test_xpointer_root_is_the_whole_document(key: ec.EllipticCurvePrivateKey, certificate: bytes) -> None:
    report = verify(sign(DOCUMENT, ["#xpointer(/)"], key, certificate))
    assert verdict(report) == (Indication.INDETERMINATE, SubIndication.NO_CERTIFICATE_CHAIN_FOUND), report.messages
    [whole] = report.scopes
    assert (whole.name, whole.scope) == ("orders.xml", "FULL")


def test_enveloped_document_changed_outside_the_signature(key: ec.EllipticCurvePrivateKey,
                                                          certificate: bytes) -> None:
    signed = sign(DOCUMENT, [""], key, certificate)
    report = verify(signed.replace(b">keep<", b">changed<"))
    assert verdict(report) == (Indication.TOTAL_FAILED, SubIndication.HASH_FAILURE)
