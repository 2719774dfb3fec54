"""TLS client certificates mapped to accounts, against ``siegel serve --tls``.

A certificate mapped with ``siegel clientcert map`` authenticates as its account without Basic (REST and
DSS); an unmapped one does not (401), nor one of an account whose role needs a second factor; one of the internal CA stops working once ``siegel ca revoke`` revoked
it; an unmapped mapping stops working; a certificate of a CA the server does not trust ends the handshake.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from server.web.soap import DSS_NS, SOAP11_ENV
from tests.fixtures.server import REPO, SiegelInstance

pytestmark = pytest.mark.e2e

ISSUE_INTERNAL = """
import json
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from server import config
from server.app import build_services
from server.pki import profiles
from server.pki.ca import EXTERNAL_KEY
from server.signing.keysource import KeyKind

settings = config.load()
services = build_services(settings)
key = ec.generate_private_key(ec.SECP256R1())
profile = profiles.Profile("tls-client", frozenset({"digital_signature"}), "user_lifetime_days",
                           extended_key_usage=(ExtendedKeyUsageOID.CLIENT_AUTH,))
row = services.ca._issue(services.ca._keys(), KeyKind(settings.pki.key_algorithm), EXTERNAL_KEY, profile,
                         profiles.user_name("erp", "erp@example.com", "Siegel"), None, None, "test", key.public_key())
from cryptography import x509
print(json.dumps({"serial": row.serial,
                  "cert": x509.load_der_x509_certificate(row.der).public_bytes(serialization.Encoding.PEM).decode(),
                  "key": key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()).decode()}))
services.close()
"""


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def outside_ca(cn: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn)).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .sign(key, hashes.SHA256()))
    return cert, key


def client_cert(tmp: Path, name: str, ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey]) -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(ca[0].subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=7))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca[1], hashes.SHA256()))
    return write_pair(tmp, name, cert.public_bytes(serialization.Encoding.PEM).decode(),
                      key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()).decode())


def write_pair(tmp: Path, name: str, cert_pem: str, key_pem: str) -> tuple[str, str]:
    (tmp / f"{name}.pem").write_text(cert_pem)
    (tmp / f"{name}.key").write_text(key_pem)
    return str(tmp / f"{name}.pem"), str(tmp / f"{name}.key")


def whoami(inst: SiegelInstance, cert: tuple[str, str] | None = None, auth: tuple[str, str] | None = None) -> requests.Response:
    return requests.get(inst.url + "/api/v1/whoami", cert=cert, auth=auth, verify=inst.verify, timeout=10)


def test_mapped_client_certificates_authenticate_unmapped_and_revoked_do_not(siegel_instance: SiegelInstance,
                                                                           tmp_path: Path) -> None:
    inst = siegel_instance
    outside = outside_ca("Partner CA")
    (tmp_path / "partner-ca.pem").write_bytes(outside[0].public_bytes(serialization.Encoding.PEM))
    inst.env["SIEGEL_AUTH_CLIENT_CA_FILE"] = str(tmp_path / "partner-ca.pem")
    inst.env["SIEGEL_TWOFACTOR_REQUIRED_ROLES"] = "admin"  # the fixture turns second factors off
    inst.env["SIEGEL_SIGNING_DEFAULT_LEVEL"] = "B-B"  # the internal TSA (http) is not reachable on the TLS port
    mapped = client_cert(tmp_path, "erp-partner", outside)
    unmapped = client_cert(tmp_path, "someone-else", outside)
    untrusted = client_cert(tmp_path, "stranger", outside_ca("Unknown CA"))
    issued = json.loads(subprocess.run([sys.executable, "-c", ISSUE_INTERNAL], env=inst.env, cwd=REPO, check=True,
                                       capture_output=True, text=True, timeout=120).stdout)
    internal = write_pair(tmp_path, "erp-internal", issued["cert"], issued["key"])

    assert "now authenticates as erp" in inst.cli("clientcert", "map", mapped[0], inst.user).stdout
    admin = client_cert(tmp_path, "boss", outside)  # twofactor.required_roles: admin; a certificate is no OTP
    inst.cli("user", "add", "boss", "--email", "boss@example.com", "--role", "admin", "--password-stdin",
             stdin="boss-password-long\n")
    inst.cli("clientcert", "map", admin[0], "boss")
    inst.cli("clientcert", "map", internal[0], inst.user)
    assert inst.cli("clientcert", "map", mapped[0], inst.user, check=False).returncode != 0  # mapped already
    listed = inst.cli("clientcert", "list").stdout
    assert "CN=erp-partner" in listed and issued["serial"] in listed

    root = tmp_path / "root.pem"
    root.write_text(inst.cli("ca", "export", "ROOT").stdout)
    inst.scheme, inst.verify = "https", str(root)
    inst.start("--tls")

    for cert in (mapped, internal):
        r = whoami(inst, cert)
        assert r.status_code == 200 and r.json()["name"] == inst.user, r.text
    # The SOAP endpoint too, without Basic.
    sign = (f'<soap:Envelope xmlns:soap="{SOAP11_ENV}" xmlns:dss="{DSS_NS}"><soap:Body><dss:SignRequest '
            'RequestID="cert"><dss:InputDocuments><dss:Document><dss:Base64Data MimeType="text/plain">aGVsbG8='
            '</dss:Base64Data></dss:Document></dss:InputDocuments></dss:SignRequest></soap:Body></soap:Envelope>')
    r = requests.post(inst.url + "/dss", data=sign, cert=internal, verify=inst.verify, timeout=30,
                      headers={"Content-Type": "text/xml; charset=utf-8"})
    assert r.status_code == 200 and "resultmajor:Success" in r.text, r.text

    assert whoami(inst, unmapped).status_code == 401
    r = whoami(inst, admin)
    assert r.status_code == 401 and "second factor" in r.text, r.text
    assert whoami(inst).status_code == 401
    assert whoami(inst, auth=inst.auth).status_code == 200  # Basic still works, with or without a certificate
    assert whoami(inst, unmapped, auth=inst.auth).status_code == 200
    with pytest.raises(requests.exceptions.SSLError):  # not issued by a CA the server trusts: no handshake
        whoami(inst, untrusted)

    inst.cli("ca", "revoke", issued["serial"], "--reason", "keyCompromise")
    assert whoami(inst, internal).status_code == 401
    assert whoami(inst, mapped).status_code == 200
    inst.cli("clientcert", "unmap", mapped[0])
    assert whoami(inst, mapped).status_code == 401
    assert "erp-partner" not in inst.cli("clientcert", "list").stdout
    assert inst.stop() == 0
