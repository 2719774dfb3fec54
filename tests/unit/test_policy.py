"""The permission policy: every role × every action from one expected table, ownership, deny by default."""

from __future__ import annotations

import pytest

from server.errors import Code, SiegelError
from server.identity import policy
from server.identity.policy import Action, allowed, require
from server.identity.users import Principal, Role

A, U, T, S, I = Role.ADMIN, Role.AUDITOR, Role.TEMPLATE_MANAGER, Role.SIGNER, Role.INTEGRATION
EVERYONE = {A, U, T, S, I}
PEOPLE = {A, U, T, S}
SIGNERS = {A, T, S, I}

EXPECTED: dict[Action, set[Role]] = {
    Action.SIGN: SIGNERS,
    Action.SIGN_HASH: SIGNERS,
    Action.TWO_STEP: SIGNERS,
    Action.EXTEND: SIGNERS,
    Action.REMOTE_SIGN: SIGNERS,
    Action.VERIFY: EVERYONE,
    Action.WHOAMI: EVERYONE,
    Action.API_INFO: EVERYONE,
    Action.PASSWORD_CHANGE: PEOPLE,
    Action.SECOND_FACTOR: PEOPLE,
    Action.PORTAL_LOGIN: PEOPLE,
    Action.DOCUMENT_READ: EVERYONE,
    Action.DOCUMENT_CANCEL: {A, T, S, I},
    Action.WORKFLOW_START: {A, T, S, I},
    Action.WORKFLOW_READ: EVERYONE,
    Action.STEP_ACT: {A, T, S},
    Action.TEMPLATE_READ: EVERYONE,
    Action.TEMPLATE_MANAGE: {A, T},
    Action.ARCHIVE_SUBMIT: {A, S, I},
    Action.ARCHIVE_READ: {A, U, S, I},
    Action.ARCHIVE_DELETE: {A, I},
    Action.ARCHIVE_RENEW: {A},
    Action.USER_ADMIN: {A},
    Action.APICLIENT_ADMIN: {A},
    Action.KEY_GRANT: {A},
    Action.CA_ADMIN: {A},
    Action.DIRECTORY_SYNC: {A},
    Action.AUDIT_READ: {A, U},
    Action.AUDIT_VERIFY: {A, U},
    Action.SYSTEM_STATUS: {A, U},
    Action.REMOTE_ACCOUNTS: {A},
    Action.BRAND_ADMIN: {A},
}


def who(role: Role, user_id: int = 7) -> Principal:
    return Principal(user_id, f"{role.value}-user", role)


def test_the_expected_table_names_every_action() -> None:
    assert set(EXPECTED) == set(Action), "a new Action needs its row here (and in the policy)"


@pytest.mark.parametrize("action", list(Action))
@pytest.mark.parametrize("role", list(Role))
def test_every_role_and_action(role: Role, action: Action) -> None:
    expected = role in EXPECTED[action]
    assert allowed(who(role), action) is expected
    if expected:
        require(who(role), action)
    else:
        with pytest.raises(SiegelError) as err:
            require(who(role), action)
        assert err.value.code is Code.FORBIDDEN
        assert role.value in err.value.message and action.value in err.value.message


def test_deny_by_default_for_actions_and_roles_not_in_the_table(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not allowed(who(A), "format_disk")
    with pytest.raises(SiegelError) as err:
        require(who(A), "format_disk")
    assert err.value.code is Code.FORBIDDEN
    assert not allowed(Principal(1, "ghost", "superuser"), Action.VERIFY)  # type: ignore[arg-type]
    # An action the table does not list for a role (here: a table without the admin row) is refused.
    monkeypatch.setattr(policy, "PERMISSIONS", {r: p for r, p in policy.PERMISSIONS.items() if r is not A})
    assert not allowed(who(A), Action.VERIFY)
    assert allowed(who(S), Action.VERIFY)


@pytest.mark.parametrize("action", sorted(policy.OWNED))
@pytest.mark.parametrize("role", list(Role))
def test_owned_actions_on_ones_own_and_on_others(role: Role, action: Action) -> None:
    me = who(role, user_id=7)
    may = role in EXPECTED[action]
    assert allowed(me, action, owner_id=7) is may
    others = may and role in policy.ANY_OWNER.get(action, frozenset())
    assert allowed(me, action, owner_id=8) is others


@pytest.mark.parametrize("action", [Action.SIGN, Action.SIGN_HASH, Action.TWO_STEP, Action.EXTEND,
                                    Action.REMOTE_SIGN, Action.STEP_ACT])
def test_nobody_signs_or_acts_in_someone_elses_name(action: Action) -> None:
    for role in Role:
        assert not allowed(who(role, 1), action, owner_id=2), role
    with pytest.raises(SiegelError) as err:
        require(who(A, 1), action, owner_id=2)
    assert "another account" in err.value.message


def test_users_see_only_their_own_documents_admins_and_auditors_any() -> None:
    assert allowed(who(S, 3), Action.DOCUMENT_READ, owner_id=3)
    assert not allowed(who(S, 3), Action.DOCUMENT_READ, owner_id=4)
    assert not allowed(who(S, 3), Action.DOCUMENT_CANCEL, owner_id=4)
    assert not allowed(who(I, 3), Action.DOCUMENT_READ, owner_id=4)
    assert allowed(who(U, 3), Action.DOCUMENT_READ, owner_id=4)
    assert not allowed(who(U, 3), Action.DOCUMENT_CANCEL, owner_id=3)  # the auditor only reads
    assert allowed(who(A, 3), Action.DOCUMENT_CANCEL, owner_id=4)


# --- the route table and the DSS operation that decide which action a request needs ------------------

import io  # noqa: E402

from server.web.auth import DSS_ACTIONS, PUBLIC, ROUTES, client_address, dss_operation, permission_of  # noqa: E402

ENV = '<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" ' \
      'xmlns:dss="urn:oasis:names:tc:dss:1.0:core:schema">{}</soap:Envelope>'


def test_every_route_names_an_action_public_or_the_dss_operation() -> None:
    for path, methods in ROUTES.items():
        for method, permission in methods.items():
            assert permission in (PUBLIC, "dss-operation") or Action(permission), (path, method)
    assert permission_of(b"/api/v1/sign", b"POST") == (Action.SIGN, ("POST",))
    assert permission_of(b"/api/v1/whoami", b"HEAD")[0] == Action.WHOAMI
    assert permission_of(b"/api/v1/sign", b"GET") == (None, ("POST",))
    assert permission_of(b"/api/v1/sig%6E", b"POST") == (None, ())  # not decoded: unknown, refused
    assert permission_of(b"/api/v1/", b"GET") == (None, ())
    assert permission_of(b"/dss", b"GET")[0] == PUBLIC


@pytest.mark.parametrize("body, operation", [
    ("<soap:Body><dss:SignRequest><dss:InputDocuments/></dss:SignRequest></soap:Body>", "SignRequest"),
    ("<soap:Header><x/></soap:Header><soap:Body><dss:VerifyRequest/></soap:Body>", "VerifyRequest"),
    ("<soap:Body><dss:VerifyRequest><dss:OptionalInputs><dss:ReturnVerificationReport/></dss:OptionalInputs>"
     "<dss:SignatureObject/></dss:VerifyRequest></soap:Body>", "VerifyRequest"),
    ("<soap:Body><dss:VerifyRequest><dss:OptionalInputs><dss:ReturnVerificationReport/>"
     '<dss:ReturnUpdatedSignature Type="x"/></dss:OptionalInputs></dss:VerifyRequest></soap:Body>',
     "VerifyRequest+ReturnUpdatedSignature"),
    # ReturnUpdatedSignature outside OptionalInputs is not the option (and not schema-valid anyway)
    ("<soap:Body><dss:VerifyRequest><dss:SignatureObject><dss:ReturnUpdatedSignature/></dss:SignatureObject>"
     "</dss:VerifyRequest></soap:Body>", "VerifyRequest"),
    ("<soap:Body><dss:Other/></soap:Body>", None),
    ("<soap:Body/>", None),
    ("<soap:Body><dss:SignRequest/>", "SignRequest"),  # cut off after the operation: spyne refuses it
])
def test_the_dss_operation_of_a_request(body: str, operation: str | None) -> None:
    content = io.BytesIO(ENV.format(body).encode())
    assert dss_operation(content) == operation
    assert content.tell() == 0
    if operation is not None:
        assert operation in DSS_ACTIONS


def test_a_dss_request_with_a_doctype_or_garbage_has_no_operation() -> None:
    doc = '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "SignRequest">]>' + ENV.format(
        "<soap:Body><dss:SignRequest/></soap:Body>")
    assert dss_operation(io.BytesIO(doc.encode())) is None
    assert dss_operation(io.BytesIO(b"not xml at all")) is None
    assert dss_operation(io.BytesIO(b"<other><soap:Body/></other>")) is None


class _Request:
    def __init__(self, peer: str, forwarded: list[bytes]) -> None:
        from twisted.internet.address import IPv4Address
        from twisted.web.http_headers import Headers

        self._peer = IPv4Address("TCP", peer, 4711)
        self.requestHeaders = Headers({b"x-forwarded-for": forwarded} if forwarded else {})

    def getClientAddress(self) -> object:
        return self._peer


def test_the_client_address_behind_trusted_proxies_only() -> None:
    proxies = frozenset({"10.0.0.1", "10.0.0.2"})
    assert client_address(_Request("192.0.2.9", [b"203.0.113.5"]), proxies) == "192.0.2.9"  # not a proxy: ignored
    assert client_address(_Request("10.0.0.1", [b"203.0.113.5"]), proxies) == "203.0.113.5"
    assert client_address(_Request("10.0.0.1", [b"1.2.3.4, 203.0.113.5, 10.0.0.2"]), proxies) == "203.0.113.5"
    assert client_address(_Request("10.0.0.1", []), proxies) == "10.0.0.1"
    assert client_address(_Request("10.0.0.1", [b"203.0.113.5"])) == "10.0.0.1"  # no trusted proxies
