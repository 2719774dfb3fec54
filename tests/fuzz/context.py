"""The real services the fuzz targets drive, in process: the test PKI on a SoftHSM2 token and SQLite.

One :class:`FuzzContext` per process (a pytest session or an atheris run): the CA hierarchy with its
OCSP signer and TSA, a signer account with an HSM key, the signing and verification services (offline:
nothing is fetched while fuzzing), the DSS endpoint, the WS-Security checker, and the valid signed
documents the corpora are seeded from, each made once.
"""

from __future__ import annotations

import os
import secrets
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import cached_property
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

from adapters.hsm.keys import hsm_private_key
from adapters.hsm.pkcs11 import Pkcs11Hsm
from adapters.hsm.softhsm import init_softhsm_token, softhsm_environment
from server.identity.users import Principal, UserService
from server.identity.wssecurity import WsSecurity
from server.pki.ocsp import OcspResponder
from server.pki.tsa import TimestampAuthority
from server.signing.keys import SigningKeys
from server.signing.levels import Level, Packaging
from server.signing.order import Document, Format, SignOrder
from server.signing.service import SigningService
from server.validation.service import VerificationService
from server.web.dss import ROOT_SCHEMA, SCHEMA_DIR, DssEndpoint
from server.xmlsafe import parse_trusted_file
from tests.fixtures.pdf import make_pdf
from tests.fixtures.pki import Pki, _endpoints, _pki_on_token, pki_settings
from tests.fixtures.ports import free_port
from tests.fixtures.softhsm import MODULE, SoftHsmToken

SIGNER = "fuzzer"
XML_DOCUMENT = (b'<?xml version="1.0"?><order xmlns="urn:example:order"><item n="1">Schrauben M6</item>'
                b"<total>42.00</total></order>")
TEXT_DOCUMENT = b"Liefervertrag, Anlage 3\n" * 8


@dataclass
class FuzzContext:
    """The services of one PKI; seeds are signed on first use."""

    pki: Pki
    workdir: Path
    _signed: dict[str, bytes] = field(default_factory=dict)

    @cached_property
    def users(self) -> UserService:
        return UserService(self.pki.engine, self.pki.audit, 0)

    @cached_property
    def signer_chain(self) -> tuple[bytes, ...]:
        """The signer account's certificate chain (an HSM key with a user-signing certificate of the test PKI)."""
        self.users.add(SIGNER, f"{SIGNER}@example.com", "signer", secrets.token_urlsafe(16))
        cert = self.pki.ca.issue_user(SIGNER, "fuzz")
        return tuple(self.pki.hsm.certificate_chain(cert.key_label))

    @cached_property
    def principal(self) -> Principal:
        """The signer account."""
        self.signer_chain
        return self.users.find(SIGNER)

    @cached_property
    def verification(self) -> VerificationService:
        settings = self.pki.settings
        offline = replace(settings, validation=replace(settings.validation, allow_fetching=False))
        return VerificationService(offline, lambda: self.pki.ca.ca_certificate_der("ROOT"))

    @cached_property
    def signing(self) -> SigningService:
        p = self.pki
        return SigningService(p.settings, p.engine, p.ca, lambda: p.hsm, p.audit, SigningKeys(p.engine, p.audit, p.ca),
                              lambda: self.verification.trust().roots)

    @cached_property
    def dss(self) -> DssEndpoint:
        return DssEndpoint(self.pki.settings, parse_trusted_file(SCHEMA_DIR / ROOT_SCHEMA), self.signing,
                           self.verification)

    @cached_property
    def tsa(self) -> TimestampAuthority:
        return TimestampAuthority(self.pki.engine, self.pki.audit, self.pki.ca, lambda: self.pki.hsm,
                                  self.pki.settings.tsa)

    @cached_property
    def ocsp(self) -> OcspResponder:
        return OcspResponder(self.pki.ca, lambda: self.pki.hsm, hsm_private_key, self.pki.settings.pki)

    @cached_property
    def wssecurity(self) -> WsSecurity:
        return WsSecurity(self.users, self.workdir / "wss-digest.key")

    def signed(self, fmt: Format) -> bytes:
        """A B-B signature of the signer in ``fmt`` (XAdES enveloped, PAdES, CAdES enveloping, ASiC-E)."""
        if fmt.value not in self._signed:
            if fmt is Format.XADES:
                document = Document("order.xml", XML_DOCUMENT, mime_type="application/xml", is_xml=True)
                packaging = Packaging.ENVELOPED
            elif fmt is Format.PADES:
                document, packaging = Document("doc.pdf", make_pdf(), mime_type="application/pdf"), Packaging.ENVELOPED
            else:
                document, packaging = Document("file.txt", TEXT_DOCUMENT), Packaging.ENVELOPING
            order = SignOrder(fmt, Level.B_B, packaging, (document,))
            (result,) = self.signing.sign(self.principal.user_id, self.principal.name, order)
            self._signed[fmt.value] = result.data
        return self._signed[fmt.value]


def fuzz_context(softhsm: SoftHsmToken, hsm: Pkcs11Hsm, workdir: Path) -> Iterator[FuzzContext]:
    """A context on ``hsm`` (a logged-in token) with its database under ``workdir``; the objects it put on
    the token are destroyed at the end. Its /tsa, /ocsp, /crl and /ca answer on a loopback port, the URL
    its certificates name, so that B-T and higher levels are signed as against a running server."""
    port = free_port()
    settings = pki_settings(workdir / "var", f"sqlite:///{workdir}/siegel.db", public_base_url=f"http://127.0.0.1:{port}")
    for made in _pki_on_token(settings, softhsm, hsm):
        context = FuzzContext(made, workdir)
        handler = _endpoints(made, context.ocsp, context.tsa, threading.Event(), [])  # OCSP always up
        server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        threading.Thread(target=server.serve_forever, name="fuzz-pki", daemon=True).start()
        try:
            yield context
        finally:
            server.shutdown()
            server.server_close()


@contextmanager
def standalone_context(workdir: Path) -> Iterator[FuzzContext]:
    """A context outside pytest (atheris): a SoftHSM2 token of its own under ``workdir``."""
    if not os.path.isfile(MODULE):
        raise SystemExit(f"{MODULE} is absent: install the Debian package softhsm2 (make deps-test does)")
    token = SoftHsmToken(conf=workdir / "softhsm2.conf", module=MODULE, label="siegel-fuzz",
                         user_pin=secrets.token_hex(8), so_pin=secrets.token_hex(8))
    init_softhsm_token(token.conf, workdir / "tokens", token.label, so_pin=token.so_pin, user_pin=token.user_pin)
    softhsm_environment(token.conf)
    hsm = Pkcs11Hsm(token.module, token.label, token.user_pin, pool_size=2)
    try:
        yield from fuzz_context(token, hsm, workdir)
    finally:
        hsm.close()
