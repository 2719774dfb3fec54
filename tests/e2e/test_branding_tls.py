"""``siegel serve --tls-cert FILE --tls-key FILE``: HTTPS under the company's own host name with the company's own
certificate (here from a CA made by the test, not Siegel's internal one), checked by real TLS clients (Python's
ssl with host-name checking, openssl s_client); wrong or incomplete files are refused before the server starts."""

from __future__ import annotations

import socket
import ssl
import subprocess
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.fixtures.server import SiegelInstance

pytestmark = pytest.mark.e2e


def _pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def company_pki(where: Path) -> tuple[Path, Path, Path, x509.Certificate]:
    """A company CA and its server certificate for localhost and 127.0.0.1: (CA file, chain file, key file, leaf)."""
    now = datetime.now(UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ACME Bau GmbH"),
                         x509.NameAttribute(NameOID.COMMON_NAME, "ACME Root CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(hours=1))
          .not_valid_after(now + timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])).issuer_name(ca_name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(hours=1)).not_valid_after(now + timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(IPv4Address(
                "127.0.0.1"))]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    files = where / "ca.pem", where / "chain.pem", where / "key.pem"
    files[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files[1].write_bytes(leaf.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(serialization.Encoding.PEM))
    files[2].write_bytes(_pem(key))
    return *files, leaf


def test_serve_with_the_companys_own_certificate(siegel_instance: SiegelInstance, tmp_path: Path) -> None:
    ca, chain, key, leaf = company_pki(tmp_path)
    siegel_instance.scheme, siegel_instance.verify = "https", str(ca)
    siegel_instance.start("--tls-cert", str(chain), "--tls-key", str(key))

    context = ssl.create_default_context(cafile=str(ca))  # verifies the chain and the host name
    with socket.create_connection(("127.0.0.1", siegel_instance.port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as tls:
        presented = x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
    assert presented == leaf
    r = requests.get(f"https://localhost:{siegel_instance.port}/portal/login", verify=str(ca), timeout=10)
    assert r.status_code == 200 and "brand.css" in r.text
    done = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{siegel_instance.port}", "-CAfile", str(ca),
                           "-verify_return_error", "-verify_hostname", "localhost"],
                          input=b"", capture_output=True, timeout=30, check=False)
    out = done.stdout.decode(errors="replace")
    assert done.returncode == 0 and "Verify return code: 0 (ok)" in out, out + done.stderr.decode(errors="replace")
    assert not (siegel_instance.data_dir / "tls" / "server-chain.pem").exists()  # no internal-CA certificate made
    assert siegel_instance.stop() == 0


def test_wrong_tls_files_are_refused_before_serving(siegel_instance: SiegelInstance, tmp_path: Path) -> None:
    _, chain, key, _ = company_pki(tmp_path)
    other = tmp_path / "other.pem"
    other.write_bytes(_pem(ec.generate_private_key(ec.SECP256R1())))
    cases = {"is not the key of the certificate": ["--tls-cert", str(chain), "--tls-key", str(other)],
             "together": ["--tls-cert", str(chain)],
             "or --tls": ["--tls", "--tls-cert", str(chain), "--tls-key", str(key)],
             "not a readable PEM certificate": ["--tls-cert", str(key), "--tls-key", str(key)]}
    for expected, args in cases.items():
        done = siegel_instance.cli("serve", *args, check=False)
        assert done.returncode != 0 and expected in done.stderr, (args, done.stderr)
