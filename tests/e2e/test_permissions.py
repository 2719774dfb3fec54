"""The permission matrix against a running server: every role × every REST and DSS operation is allowed
(and works) or refused with 403 (problem JSON; on /dss a SOAP fault with RequesterError /
AuthenticationError and HTTP 500), exactly as server.identity.policy says for the actions server.web.auth.ROUTES
names. Then lockout, API clients and password reset over HTTP on a private instance."""

from __future__ import annotations

import base64
import hashlib
import re
import time
from dataclasses import dataclass
from typing import Any, Callable

import pytest
import requests
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils

from server.identity.policy import Action, allowed
from server.identity.users import Principal, Role
from server.web.auth import DSS_ACTIONS, ROUTES
from server.xmlsafe import parse_xml
from tests.e2e.test_dss_soap import SOAP_HEADERS, envelope
from tests.e2e.test_rest_sign import _complete, _outside_ca, _prepare
from tests.fixtures.server import SiegelInstance
from tests.fixtures.smtp import SmtpServer

pytestmark = pytest.mark.e2e

SOAP11_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
DSS_NS = "urn:oasis:names:tc:dss:1.0:core:schema"
SUCCESS = "urn:oasis:names:tc:dss:1.0:resultmajor:Success"
REQUESTER = "urn:oasis:names:tc:dss:1.0:resultmajor:RequesterError"
AUTHENTICATION = "urn:oasis:names:tc:dss:1.0:resultminor:AuthenticationError"
DOCUMENT = b"Rahmenvertrag 2027, Anlage 3\n" * 40
SIGNING_ROLES = [r for r in Role if allowed(Principal(0, "probe", r), Action.SIGN)]


@dataclass(frozen=True)
class Account:
    role: Role
    auth: tuple[str, str]


@pytest.fixture(scope="module")
def accounts(siegel_server: SiegelInstance) -> dict[Role, Account]:
    made = {}
    for role in Role:
        name, password = f"perm-{role.value}", f"perm-{role.value}-password"
        siegel_server.cli("user", "add", name, "--email", f"{name}@example.com", "--role", role.value,
                          "--password-stdin", stdin=password + "\n")
        if role in SIGNING_ROLES:
            siegel_server.cli("ca", "issue", name)
        made[role] = Account(role, (name, password))
    return made


@pytest.fixture(scope="module")
def enveloping_b_b(siegel_server: SiegelInstance) -> bytes:
    r = requests.post(siegel_server.url + "/api/v1/sign?format=cades&level=B-B&packaging=enveloping",
                      data=DOCUMENT, auth=siegel_server.auth, timeout=60)
    assert r.status_code == 200, r.text
    return r.content


def _dss(inst: SiegelInstance, auth: tuple[str, str], body: str) -> requests.Response:
    return requests.post(inst.url + "/dss", data=envelope(body), headers=SOAP_HEADERS, auth=auth, timeout=60)


def _dss_major(r: requests.Response) -> str | None:
    entry = parse_xml(r.content, max_depth=128).find(f"{{{SOAP11_ENV}}}Body")[0]
    return entry.findtext(f"{{{DSS_NS}}}Result/{{{DSS_NS}}}ResultMajor")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def op_whoami(inst: SiegelInstance, auth: tuple[str, str], ctx: dict[str, Any]) -> tuple[requests.Response, int]:
    return requests.get(inst.url + "/api/v1/whoami", auth=auth, timeout=30), 200


def op_sign(inst: SiegelInstance, auth: tuple[str, str], ctx: dict[str, Any]) -> tuple[requests.Response, int]:
    return requests.post(inst.url + "/api/v1/sign?format=cades&level=B-B", data=DOCUMENT, auth=auth, timeout=60), 200


def op_sign_hash(inst: SiegelInstance, auth: tuple[str, str], ctx: dict[str, Any]) -> tuple[requests.Response, int]:
    return requests.post(inst.url + "/api/v1/sign-hash", auth=auth, timeout=60, json={
        "digestAlgorithm": "SHA-256", "digest": _b64(hashlib.sha256(DOCUMENT).digest()), "format": "cades",
        "level": "B-B"}), 200


def op_prepare(inst: SiegelInstance, auth: tuple[str, str], ctx: dict[str, Any]) -> tuple[requests.Response, int]:
    key, leaf, root = ctx["outside"]
    return _prepare(inst, auth, [leaf, root]), 200


def op_complete(inst: SiegelInstance, auth: tuple[str, str], ctx: dict[str, Any]) -> tuple[requests.Response, int]:
    """Completes a state of one's own when one may prepare; else tries the signer's state."""
    key, leaf, root = ctx["outside"]
    prepared = _prepare(inst, auth, [leaf, root])
    source = prepared if prepared.status_code == 200 else _prepare(inst, ctx["signer"], [leaf, root])
    assert source.status_code == 200, source.text
    state = source.json()
    value = key.sign(base64.b64decode(state["digestToSign"]), ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    return _complete(inst, auth, state["stateId"], value), 200


def op_verify(inst: SiegelInstance, auth: tuple[str, str], ctx: dict[str, Any]) -> tuple[requests.Response, int]:
    return requests.post(inst.url + "/api/v1/verify", data=ctx["signature"], auth=auth, timeout=60), 200


def op_dss_sign(inst: SiegelInstance, auth: tuple[str, str], ctx: dict[str, Any]) -> tuple[requests.Response, int]:
    digest = (f'<dss:DocumentHash><ds:DigestMethod xmlns:ds="http://www.w3.org/2000/09/xmldsig#" '
              f'Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/><ds:DigestValue xmlns:ds="http://www.w3.org/'
              f'2000/09/xmldsig#">{_b64(hashlib.sha256(DOCUMENT).digest())}</ds:DigestValue></dss:DocumentHash>')
    return _dss(inst, auth, '<dss:SignRequest RequestID="p-1"><dss:OptionalInputs><dss:SignatureType>'
                            "urn:ietf:rfc:3369</dss:SignatureType></dss:OptionalInputs>"
                            f"<dss:InputDocuments>{digest}</dss:InputDocuments></dss:SignRequest>"), 200


def _verify_body(signature: bytes, options: str = "") -> str:
    return (f'<dss:VerifyRequest RequestID="p-2">{options}<dss:SignatureObject><dss:Base64Signature '
            f'Type="urn:ietf:rfc:3369">{_b64(signature)}</dss:Base64Signature></dss:SignatureObject>'
            "</dss:VerifyRequest>")


def op_dss_verify(inst: SiegelInstance, auth: tuple[str, str], ctx: dict[str, Any]) -> tuple[requests.Response, int]:
    return _dss(inst, auth, _verify_body(ctx["signature"])), 200


def op_dss_update(inst: SiegelInstance, auth: tuple[str, str], ctx: dict[str, Any]) -> tuple[requests.Response, int]:
    options = ('<dss:OptionalInputs><dss:ReturnUpdatedSignature '
               'Type="http://uri.etsi.org/ades/191x2/level/baseline/B-T#"/></dss:OptionalInputs>')
    return _dss(inst, auth, _verify_body(ctx["signature"], options)), 200


# operation → (route, method, actions the route table gives it, request)
OPERATIONS: dict[str, tuple[str, str, tuple[Action, ...], Callable[..., tuple[requests.Response, int]]]] = {
    "whoami": ("/api/v1/whoami", "GET", (Action.WHOAMI,), op_whoami),
    "sign": ("/api/v1/sign", "POST", (Action.SIGN,), op_sign),
    "sign-hash": ("/api/v1/sign-hash", "POST", (Action.SIGN_HASH,), op_sign_hash),
    "sign/prepare": ("/api/v1/sign/prepare", "POST", (Action.TWO_STEP,), op_prepare),
    "sign/complete": ("/api/v1/sign/complete", "POST", (Action.TWO_STEP,), op_complete),
    "verify": ("/api/v1/verify", "POST", (Action.VERIFY,), op_verify),
    "dss Sign": ("/dss", "POST", DSS_ACTIONS["SignRequest"], op_dss_sign),
    "dss Verify": ("/dss", "POST", DSS_ACTIONS["VerifyRequest"], op_dss_verify),
    "dss Verify+ReturnUpdatedSignature": ("/dss", "POST", DSS_ACTIONS["VerifyRequest+ReturnUpdatedSignature"],
                                          op_dss_update),
}


def test_the_operations_are_those_of_the_route_table() -> None:
    for route, method, actions, _ in OPERATIONS.values():
        permission = ROUTES[route][method]
        assert permission == "dss-operation" or (permission,) == actions
    assert DSS_ACTIONS["VerifyRequest+ReturnUpdatedSignature"] == (Action.VERIFY, Action.EXTEND)


@pytest.mark.parametrize("operation", list(OPERATIONS))
@pytest.mark.parametrize("role", list(Role))
def test_permission_matrix(siegel_server: SiegelInstance, accounts: dict[Role, Account], enveloping_b_b: bytes,
                           role: Role, operation: str) -> None:
    route, method, actions, call = OPERATIONS[operation]
    account = accounts[role]
    may = all(allowed(Principal(0, account.auth[0], role), a) for a in actions)
    ctx = {"outside": _outside_ca(), "signature": enveloping_b_b, "signer": accounts[Role.SIGNER].auth}
    r, ok = call(siegel_server, account.auth, ctx)
    if may:
        assert r.status_code == ok, f"{role.value} {operation}: {r.status_code} {r.text[:500]}"
        if route == "/dss":
            assert _dss_major(r) == SUCCESS, r.text[:1000]
        if operation == "whoami":
            assert r.json()["role"] == role.value and r.json()["name"] == account.auth[0]
        return
    refused = 500 if route == "/dss" else 403  # a SOAP fault goes with 500 (WS-I BP R1126), for JAX-WS and .NET
    assert r.status_code == refused, f"{role.value} {operation}: expected {refused}, got {r.status_code} {r.text[:500]}"
    if route == "/dss":
        assert r.headers["Content-Type"].startswith("text/xml")
        fault = parse_xml(r.content, max_depth=16).find(f"{{{SOAP11_ENV}}}Body/{{{SOAP11_ENV}}}Fault")
        assert fault is not None, r.text
        assert fault.findtext(f"detail/{{{DSS_NS}}}Result/{{{DSS_NS}}}ResultMajor") == REQUESTER
        assert fault.findtext(f"detail/{{{DSS_NS}}}Result/{{{DSS_NS}}}ResultMinor") == AUTHENTICATION
    else:
        assert r.headers["Content-Type"] == "application/problem+json"
        assert r.json()["status"] == 403 and role.value in r.json()["detail"]


def test_the_auditor_role_is_refused_signing_and_allowed_verification(accounts: dict[Role, Account]) -> None:
    """The matrix above must not be vacuous: at least one role is refused and several are allowed."""
    auditor = Principal(0, "a", Role.AUDITOR)
    assert not allowed(auditor, Action.SIGN) and allowed(auditor, Action.VERIFY)
    assert len(SIGNING_ROLES) >= 3


def test_a_user_cannot_complete_another_users_prepared_signature(
        siegel_server: SiegelInstance, accounts: dict[Role, Account]) -> None:
    key, leaf, root = _outside_ca()
    state = _prepare(siegel_server, accounts[Role.SIGNER].auth, [leaf, root]).json()
    value = key.sign(base64.b64decode(state["digestToSign"]), ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    for other in (Role.ADMIN, Role.TEMPLATE_MANAGER, Role.INTEGRATION):
        r = _complete(siegel_server, accounts[other].auth, state["stateId"], value)
        assert r.status_code == 404, (other, r.text)  # not theirs: not even its existence is told
    assert _complete(siegel_server, accounts[Role.SIGNER].auth, state["stateId"], value).status_code == 200


def test_unknown_routes_methods_and_missing_credentials(siegel_server: SiegelInstance,
                                                        accounts: dict[Role, Account]) -> None:
    auth = accounts[Role.SIGNER].auth
    for path in ("/api/v1/whoami", "/api/v1/sign", "/api/v1/nothing"):
        r = requests.post(siegel_server.url + path, data=b"x", timeout=30)
        assert r.status_code == 401 and r.headers["WWW-Authenticate"].lower().startswith("basic")
        assert r.headers["Content-Type"] == "application/problem+json" and r.json()["status"] == 401, r.text
    r = _dss(siegel_server, ("perm-signer", "wrong password"), _verify_body(b"x"))
    assert r.status_code == 401 and r.headers["Content-Type"].startswith("text/xml"), r.text
    assert b"Fault" in r.content and b"urn:oasis:names:tc:dss:1.0:resultmajor:RequesterError" in r.content, r.text
    r = requests.get(siegel_server.url + "/api/v1/sign", auth=auth, timeout=30)
    assert r.status_code == 405 and r.headers["Allow"] == "POST"
    r = requests.get(siegel_server.url + "/api/v1/not-a-route", auth=auth, timeout=30)
    assert r.status_code == 404 and r.headers["Content-Type"] == "application/problem+json"
    assert requests.get(siegel_server.url + "/dss?wsdl", timeout=30).status_code == 200  # public


# --- lockout, API clients and password reset over HTTP (a private instance) ---------------------------

def _whoami(inst: SiegelInstance, auth: tuple[str, str]) -> requests.Response:
    return requests.get(inst.url + "/api/v1/whoami", auth=auth, timeout=30)


def test_lockout_api_clients_and_password_reset_over_http(siegel_instance: SiegelInstance,
                                                          smtp_server: SmtpServer) -> None:
    inst = siegel_instance
    inst.env.update({"SIEGEL_AUTH_LOCKOUT_THRESHOLD": "3", "SIEGEL_AUTH_ADDRESS_LOCKOUT_THRESHOLD": "50",
                     "SIEGEL_AUTH_CREDENTIAL_CACHE_SECONDS": "0", "SIEGEL_MAIL_HOST": smtp_server.host,
                     "SIEGEL_MAIL_PORT": str(smtp_server.port), "SIEGEL_MAIL_SENDER": "siegel@example.com"})
    inst.cli("user", "add", "nora", "--email", "nora@example.com", "--role", "signer", "--password-stdin",
             stdin="nora-first-password\n")
    created = inst.cli("apiclient", "create", "--user", inst.user, "--name", "ERP").stdout
    key = re.search(r"key:\s+(ak_[0-9a-f]{32})", created).group(1)  # type: ignore[union-attr]
    secret = re.search(r"secret:\s+(\S+)", created).group(1)  # type: ignore[union-attr]
    inst.start()

    # Lockout: three wrong passwords, then the right one is refused until the lock (2 s) is over.
    for _ in range(3):
        assert _whoami(inst, ("nora", "wrong password!")).status_code == 401
    assert _whoami(inst, ("nora", "nora-first-password")).status_code == 401
    time.sleep(2.5)
    assert _whoami(inst, ("nora", "nora-first-password")).status_code == 200

    # API client: key:secret is the integration account, until revoked.
    r = _whoami(inst, (key, secret))
    assert r.status_code == 200 and r.json()["name"] == inst.user and r.json()["role"] == "integration"
    assert requests.post(inst.url + "/api/v1/sign?format=cades&level=B-B", data=DOCUMENT, auth=(key, secret),
                         timeout=60).status_code == 200
    assert _whoami(inst, (key, secret + "x")).status_code == 401
    assert key in inst.cli("apiclient", "list").stdout
    inst.cli("apiclient", "revoke", key)
    assert _whoami(inst, (key, secret)).status_code == 401

    # Password reset: the same 202 for an unknown and a known account; the link works once.
    url = inst.url + "/api/v1/password-reset"
    unknown = requests.post(url, json={"user": "nobody@example.com"}, timeout=30)
    known = requests.post(url, json={"user": "nora"}, timeout=30)
    assert unknown.status_code == known.status_code == 202 and unknown.json() == known.json()
    (mail,) = smtp_server.wait_for(1)
    assert mail.rcpt_tos == ("nora@example.com",)
    token = re.search(re.escape(inst.url) + r"/portal/reset\?token=([A-Za-z0-9_-]+)",
                      mail.text).group(1)  # type: ignore[union-attr]
    done = requests.post(url + "/complete", json={"token": token, "password": "nora-second-password"}, timeout=30)
    assert done.status_code == 200, done.text
    again = requests.post(url + "/complete", json={"token": token, "password": "nora-third-password"}, timeout=30)
    assert again.status_code == 400 and again.headers["Content-Type"] == "application/problem+json"
    assert _whoami(inst, ("nora", "nora-second-password")).status_code == 200
    assert _whoami(inst, ("nora", "nora-first-password")).status_code == 401
    assert len(smtp_server.messages) == 1, "no mail for the unknown account"

    # Account administration from the CLI takes effect on the running server (credential cache off here).
    assert "now has the role auditor" in inst.cli("user", "set-role", "nora", "auditor").stdout
    assert _whoami(inst, ("nora", "nora-second-password")).json()["role"] == "auditor"
    assert requests.post(inst.url + "/api/v1/sign", data=DOCUMENT, auth=("nora", "nora-second-password"),
                         timeout=30).status_code == 403
    assert "disabled" in inst.cli("user", "disable", "nora", "--reason", "left").stdout
    assert _whoami(inst, ("nora", "nora-second-password")).status_code == 401
    listed = dict(line.split("\t", 1) for line in inst.cli("user", "list").stdout.splitlines())
    assert listed["nora"].startswith("auditor\tlocal\tdisabled\tnora@example.com\t")
    assert listed[inst.user].startswith("integration\tlocal\tenabled\t")
    assert "nora enabled" in inst.cli("user", "enable", "nora").stdout
    assert _whoami(inst, ("nora", "nora-second-password")).status_code == 200
    assert "was enabled already" in inst.cli("user", "enable", "nora").stdout
    audit = inst.cli("audit", "verify").stdout
    assert "intact" in audit
    assert inst.stop() == 0
