"""``siegel serve --tls``: HTTPS with a server certificate of the internal issuing CA."""

from __future__ import annotations

import stat
import subprocess

import pytest
import requests
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.fixtures.server import SiegelInstance

pytestmark = pytest.mark.e2e


def _serve_tls(inst: SiegelInstance) -> None:
    root = inst.data_dir.parent / "root.pem"
    root.write_text(inst.cli("ca", "export", "ROOT").stdout)
    inst.scheme, inst.verify = "https", str(root)
    inst.start("--tls")


def test_serve_tls_with_a_certificate_of_the_internal_ca(siegel_instance: SiegelInstance) -> None:
    _serve_tls(siegel_instance)
    r = requests.get(siegel_instance.url + "/health", verify=siegel_instance.verify, timeout=10)
    assert r.status_code == 200 and r.json()["status"] == "ok"
    r = requests.get(siegel_instance.url + "/api/v1/whoami", auth=siegel_instance.auth,
                     verify=siegel_instance.verify, timeout=10)
    assert r.status_code == 200

    done = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{siegel_instance.port}",
                           "-CAfile", str(siegel_instance.verify), "-verify_return_error", "-verify_ip", "127.0.0.1",
                           "-showcerts"], input=b"", capture_output=True, timeout=30, check=False)
    out = done.stdout.decode(errors="replace")
    assert done.returncode == 0 and "Verify return code: 0 (ok)" in out, out + done.stderr.decode(errors="replace")

    chain = x509.load_pem_x509_certificates((siegel_instance.data_dir / "tls" / "server-chain.pem").read_bytes())
    leaf = chain[0]
    assert ExtendedKeyUsageOID.SERVER_AUTH in leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    alt = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in alt.get_values_for_type(x509.DNSName)
    assert [str(ip) for ip in alt.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    key_mode = stat.S_IMODE((siegel_instance.data_dir / "secrets" / "tls-key.pem").stat().st_mode)
    assert key_mode == 0o600
    listed = siegel_instance.cli("ca", "list").stdout
    assert f"{format(leaf.serial_number, 'x')}\ttls-server" in listed and "(outside the HSM)" in listed

    with pytest.raises(requests.ConnectionError):  # plain HTTP on the TLS port
        requests.get(f"http://127.0.0.1:{siegel_instance.port}/health", timeout=5)
    assert siegel_instance.stop() == 0

    # A second start keeps the certificate; other names get a new one.
    _serve_tls(siegel_instance)
    again = x509.load_pem_x509_certificates((siegel_instance.data_dir / "tls" / "server-chain.pem").read_bytes())
    assert again[0].serial_number == leaf.serial_number
    assert siegel_instance.stop() == 0
    siegel_instance.env["SIEGEL_SERVER_TLS_NAMES"] = "siegel.example.com,127.0.0.1"
    _serve_tls(siegel_instance)
    renamed = x509.load_pem_x509_certificates((siegel_instance.data_dir / "tls" / "server-chain.pem").read_bytes())[0]
    assert renamed.serial_number != leaf.serial_number
    assert renamed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value \
        .get_values_for_type(x509.DNSName) == ["siegel.example.com"]
    assert siegel_instance.stop() == 0


def test_b_t_signing_under_tls_gets_its_timestamp_from_the_servers_own_https_tsa(
        siegel_instance: SiegelInstance) -> None:
    """With ``public_base_url`` on https, the ``internal`` TSA is reached over TLS, trusting our own CA."""
    siegel_instance.env["SIEGEL_SERVER_PUBLIC_BASE_URL"] = f"https://127.0.0.1:{siegel_instance.port}"
    _serve_tls(siegel_instance)
    r = requests.post(siegel_instance.url + "/api/v1/sign?format=cades&level=B-T", data=b"Vertrag\n" * 10,
                      auth=siegel_instance.auth, verify=siegel_instance.verify, timeout=60)
    assert r.status_code == 200, r.text
    files = {"signature": ("s.p7s", r.content), "document": ("v.txt", b"Vertrag\n" * 10)}
    report = requests.post(siegel_instance.url + "/api/v1/verify", files=files, auth=siegel_instance.auth,
                           verify=siegel_instance.verify, timeout=60).json()
    (sig,) = report["signatures"]
    assert sig["level"] == "B-T" and [t["kind"] for t in sig["timestamps"]] == ["signature"], sig
    assert siegel_instance.stop() == 0
