"""Reading users and groups from LDAP or Active Directory with ldap3, and checking passwords by binding.

- Connections: the configured servers in order (the first that answers), ``ldaps://`` or
  ``ldap://`` with StartTLS, the certificate checked against ``directory.ca_file`` (or the system store).
  The service account binds with the password from ``directory.bind_password_file``.
- Searches are paged with the simple paged results control (RFC 2696), ``directory.page_size`` a page.
- What the server is decides the defaults (``auto``): Active Directory (rootDSE capability
  1.2.840.113556.1.4.800) counts changes in ``uSNChanged`` and resolves nested groups with
  LDAP_MATCHING_RULE_IN_CHAIN (1.2.840.113556.1.4.1941); OpenLDAP counts them in ``entryCSN``
  (microsecond stamps, ordered) and has no in-chain rule (it returns nothing, silently), so the groups
  are expanded by the caller; any other server falls back to ``modifyTimestamp`` and expansion.
- A directory that cannot be reached raises :class:`DirectoryUnavailable`; callers keep local
  accounts working.
"""

from __future__ import annotations

import math
import ssl
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import ldap3
from ldap3.core.exceptions import LDAPException, LDAPInvalidCredentialsResult
from ldap3.utils.conv import escape_filter_chars

from server.config import DirectorySettings, Settings
from server.errors import Code, SiegelError
from server.identity.directory import (
    DirectoryGroup,
    DirectoryUnavailable,
    DirectoryUser,
)

AD_CAPABILITY = "1.2.840.113556.1.4.800"  # LDAP_CAP_ACTIVE_DIRECTORY_OID in supportedCapabilities
IN_CHAIN = "1.2.840.113556.1.4.1941"  # LDAP_MATCHING_RULE_IN_CHAIN
_SUCCESS = 0
_INVALID_CREDENTIALS = 49


def _text(values: list[bytes] | None) -> str | None:
    if not values:
        return None
    return values[0].decode("utf-8", errors="replace")


def stable_id(attribute: str, raw: bytes) -> str:
    """The stable id in a printable form: objectGUID's 16 octets (AD byte order) as a UUID string,
    anything else (entryUUID, nsUniqueId, ipaUniqueID) as its text, lower-cased."""
    if attribute.lower() == "objectguid" and len(raw) == 16:
        return str(uuid.UUID(bytes_le=raw))
    return raw.decode("utf-8", errors="replace").strip().lower()


def id_filter_value(attribute: str, external_id: str) -> str:
    """``external_id`` (as :func:`stable_id` wrote it) escaped for an equality filter on ``attribute``."""
    if attribute.lower() == "objectguid":
        try:
            return "".join(f"\\{b:02x}" for b in uuid.UUID(external_id).bytes_le)
        except ValueError:
            pass
    return escape_filter_chars(external_id)


def is_disabled(rule_attribute: str, rule_value: str, raw: list[bytes] | None) -> bool:
    """The configured disabled rule: ``bit:N`` (set in the integer value) or an equal value (ignoring case)."""
    if not rule_attribute or not rule_value or not raw:
        return False
    text = raw[0].decode("utf-8", errors="replace").strip()
    if rule_value.startswith("bit:"):
        try:
            return bool(int(text) & int(rule_value[4:]))
        except ValueError:
            return False
    return text.lower() == rule_value.lower()


def _unbind(conn: ldap3.Connection) -> None:
    """Close a connection whose socket may be broken already (a failed TLS handshake, a dead server)."""
    try:
        conn.unbind()
    except (LDAPException, OSError):
        pass


@dataclass(frozen=True)
class ServerKind:
    change_attribute: str
    in_chain: bool
    name: str


class LdapDirectory:
    """The directory of ``settings``; implements DirectoryReader and DirectoryAuthenticator."""

    def __init__(self, settings: DirectorySettings, bind_password: str) -> None:
        self._s = settings
        self._password = bind_password
        self._kind: ServerKind | None = None
        self.results_read = 0  # entries received from searches since construction (benchmarks and tests)
        tls = None
        urls = [u.strip() for u in settings.servers.split(",") if u.strip()]
        if any(u.lower().startswith("ldaps://") for u in urls) or settings.start_tls:
            tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, version=ssl.PROTOCOL_TLS_CLIENT,
                            ca_certs_file=settings.ca_file or None)
        servers = [ldap3.Server(u, use_ssl=u.lower().startswith("ldaps://"), tls=tls, get_info=ldap3.NONE,
                                connect_timeout=settings.timeout_seconds) for u in urls]
        self._servers = servers
        self._urls = urls
        self._start_tls = settings.start_tls
        self._conn: ldap3.Connection | None = None
        self._display_attributes = [a.strip() for a in settings.display_name_attribute.split(",") if a.strip()]

    # --- connections ---------------------------------------------------------------------------

    def _connect(self, user: str, password: str) -> ldap3.Connection:
        """A connection bound as ``user`` on the first server that answers (in the configured order);
        LDAPInvalidCredentialsResult when the password is wrong."""
        failures = []
        for server in self._servers:
            conn = ldap3.Connection(server, user=user, password=password,
                                    receive_timeout=max(1, math.ceil(self._s.timeout_seconds)),
                                    raise_exceptions=False, read_only=True, auto_referrals=False)
            try:
                conn.open()
            except (LDAPException, OSError) as exc:
                failures.append(f"{server.host}:{server.port}: {exc}")
                continue
            try:
                if self._start_tls and not server.ssl and not conn.start_tls():
                    raise DirectoryUnavailable(f"StartTLS with {server.host} failed: "
                                               f"{conn.result.get('description')} {conn.result.get('message')}")
                if not conn.bind():
                    if conn.result.get("result") == _INVALID_CREDENTIALS:
                        raise LDAPInvalidCredentialsResult(conn.result.get("message") or "invalid credentials")
                    raise DirectoryUnavailable(f"bind as {user} on {server.host} failed: "
                                               f"{conn.result.get('description')} {conn.result.get('message')}".strip())
            except (LDAPInvalidCredentialsResult, DirectoryUnavailable):
                _unbind(conn)
                raise
            except (LDAPException, OSError) as exc:
                _unbind(conn)
                raise DirectoryUnavailable(f"directory error on {server.host}: {exc}") from None
            return conn
        raise DirectoryUnavailable(f"no directory server answers ({', '.join(self._urls)}): {'; '.join(failures)}")

    def _service(self) -> ldap3.Connection:
        if self._conn is None or self._conn.closed or not self._conn.bound:
            try:
                self._conn = self._connect(self._s.bind_dn, self._password)
            except LDAPInvalidCredentialsResult:
                raise SiegelError(Code.CONFIG, f"the directory refuses the service account {self._s.bind_dn!r}: "
                                               "check directory.bind_dn and directory.bind_password_file") from None
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            _unbind(self._conn)
            self._conn = None

    def check(self) -> dict[str, str]:
        """Bind as the service account and read the rootDSE: what kind of server answers."""
        kind = self.kind()
        return {"server": kind.name, "change_attribute": kind.change_attribute,
                "nested_groups": "in-chain" if kind.in_chain else "expand"}

    # --- searches --------------------------------------------------------------------------------

    def _search(self, base: str, filter_: str, attributes: list[str],
                scope: str = ldap3.SUBTREE) -> Iterator[tuple[str, dict[str, list[bytes]]]]:
        """(DN, raw attributes by lower-case name) of every entry, page by page."""
        conn = self._service()
        cookie: bytes | None = None
        while True:
            try:
                ok = conn.search(base, filter_, scope, attributes=attributes, paged_size=self._s.page_size,
                                 paged_cookie=cookie)
            except LDAPException as exc:
                self.close()
                raise DirectoryUnavailable(f"directory search under {base} failed: {exc}") from None
            result = conn.result
            if not ok and result.get("result") not in (_SUCCESS, 4):  # 4: sizeLimitExceeded, partial
                code = result.get("result")
                if code in (32, 34, 87):  # noSuchObject, invalidDNSyntax, filterError
                    raise SiegelError(Code.CONFIG, f"directory search under {base!r} with {filter_!r}: "
                                                   f"{result.get('description')} {result.get('message')}".strip())
                if code is None or code in (51, 52, 80, 81):  # busy, unavailable, other, server down
                    self.close()
                    raise DirectoryUnavailable(f"directory search under {base} failed: {result.get('description')}")
                raise SiegelError(Code.INTERNAL, f"directory search under {base!r} failed: "
                                                 f"{result.get('description')} {result.get('message')}".strip())
            for item in conn.response or ():
                if item.get("type") != "searchResEntry":
                    continue
                self.results_read += 1
                yield item["dn"], {k.lower(): v for k, v in item["raw_attributes"].items()}
            controls = result.get("controls") or {}
            cookie = controls.get("1.2.840.113556.1.4.319", {}).get("value", {}).get("cookie")
            if not cookie:
                return

    def kind(self) -> ServerKind:
        if self._kind is None:
            found = list(self._search("", "(objectClass=*)", ["objectClass", "supportedCapabilities", "vendorName"],
                                      scope=ldap3.BASE))
            attrs = found[0][1] if found else {}
            capabilities = {v.decode() for v in attrs.get("supportedcapabilities", [])}
            classes = {v.decode().lower() for v in attrs.get("objectclass", [])}
            if AD_CAPABILITY in capabilities:
                detected = ServerKind("uSNChanged", True, "Active Directory")
            elif "openldaprootdse" in classes:
                detected = ServerKind("entryCSN", False, "OpenLDAP")
            else:
                detected = ServerKind("modifyTimestamp", False, _text(attrs.get("vendorname")) or "LDAP server")
            change = detected.change_attribute if self._s.change_attribute == "auto" else self._s.change_attribute
            in_chain = detected.in_chain if self._s.nested_groups == "auto" else self._s.nested_groups == "in-chain"
            self._kind = ServerKind(change, in_chain, detected.name)
        return self._kind

    @property
    def change_attribute(self) -> str:
        return self.kind().change_attribute

    def _user_attributes(self) -> list[str]:
        s = self._s
        names = [s.username_attribute, s.id_attribute, s.mail_attribute, s.upn_attribute, s.disabled_attribute,
                 self.change_attribute, *self._display_attributes]
        return sorted({n for n in names if n})

    def _change_filter(self, since: str) -> str:
        attr, value = self.change_attribute, escape_filter_chars(since)
        if attr == "uSNChanged":
            return f"(uSNChanged>={int(since) + 1})"
        # >= and not =: entryCSN is unique per change; for modifyTimestamp (whole seconds) the entries
        # of the mark's own second are read again, and the caller's comparison writes nothing for them.
        if attr == "entryCSN":
            return f"(&(entryCSN>={value})(!(entryCSN={value})))"
        return f"({attr}>={value})"

    def users(self, changed_since: str | None = None) -> Iterator[DirectoryUser]:
        """Every user of ``user_base``/``user_filter``, or those changed after the mark ``changed_since``."""
        s = self._s
        filter_ = s.user_filter if changed_since is None else f"(&{s.user_filter}{self._change_filter(changed_since)})"
        id_key, change_key = s.id_attribute.lower(), self.change_attribute.lower()
        for dn, attrs in self._search(s.user_base, filter_, self._user_attributes()):
            raw_id = attrs.get(id_key)
            display = next((_text(attrs.get(a.lower())) for a in self._display_attributes if attrs.get(a.lower())), None)
            yield DirectoryUser(
                dn=dn,
                external_id=stable_id(s.id_attribute, raw_id[0]) if raw_id else None,
                username=_text(attrs.get(s.username_attribute.lower())),
                upn=_text(attrs.get(s.upn_attribute.lower())) if s.upn_attribute else None,
                email=_text(attrs.get(s.mail_attribute.lower())) if s.mail_attribute else None,
                display_name=display,
                disabled=is_disabled(s.disabled_attribute, s.disabled_value, attrs.get(s.disabled_attribute.lower())),
                change_mark=_text(attrs.get(change_key)),
            )

    def groups(self) -> list[DirectoryGroup]:
        """Every group of ``group_base``/``group_filter`` with its direct members (DNs)."""
        s = self._s
        attrs_wanted = sorted({s.group_name_attribute, s.member_attribute, s.id_attribute})
        out = []
        for dn, attrs in self._search(s.group_base, s.group_filter, attrs_wanted):
            raw_id = attrs.get(s.id_attribute.lower())
            # AD returns ranged values (member;range=0-1499) for very large groups: not read here.
            members = tuple(v.decode("utf-8", errors="replace") for v in attrs.get(s.member_attribute.lower(), []))
            out.append(DirectoryGroup(dn=dn, name=_text(attrs.get(s.group_name_attribute.lower())) or dn,
                                      external_id=stable_id(s.id_attribute, raw_id[0]) if raw_id else None,
                                      members=members))
        return out

    def nested_members(self, group_dn: str) -> set[str] | None:
        """DNs of the users in ``group_dn`` directly or through nested groups, by the in-chain rule; None
        when the server has no such rule (the caller expands the groups itself)."""
        if not self.kind().in_chain:
            return None
        filter_ = f"(&{self._s.user_filter}(memberOf:{IN_CHAIN}:={escape_filter_chars(group_dn)}))"
        return {dn for dn, _ in self._search(self._s.user_base, filter_, ["1.1"])}

    # --- logins ----------------------------------------------------------------------------------

    def bind(self, user_name: str, external_id: str | None, password: str) -> bool:
        """``server.identity.users.DirectoryBinder``: the account is looked up by its stable id when Siegel
        has it (a rename in the directory since the last sync does not matter), else by name."""
        if not external_id:
            return self.bind_check(user_name, password)
        return self._bind_found(f"({self._s.id_attribute}={id_filter_value(self._s.id_attribute, external_id)})",
                                password)

    def bind_check(self, username: str, password: str) -> bool:
        """Whether the directory accepts ``password`` for the account ``username`` (found by the username
        attribute under user_base, not disabled by the configured rule). Never an unauthenticated bind:
        an empty password is refused here. DirectoryUnavailable when no server answers."""
        if not username:
            return False
        return self._bind_found(f"({self._s.username_attribute}={escape_filter_chars(username)})", password)

    def _bind_found(self, match: str, password: str) -> bool:
        if not password or "\0" in password:
            return False
        s = self._s
        filter_ = f"(&{s.user_filter}{match})"
        wanted = [s.disabled_attribute] if s.disabled_attribute else ["1.1"]
        found = list(self._search(s.user_base, filter_, wanted))
        if len(found) != 1:
            return False
        dn, attrs = found[0]
        if is_disabled(s.disabled_attribute, s.disabled_value, attrs.get(s.disabled_attribute.lower())):
            return False
        try:
            conn = self._connect(dn, password)
        except LDAPInvalidCredentialsResult:
            return False
        _unbind(conn)
        return True


def open_directory(settings: Settings) -> LdapDirectory:
    """The configured directory, its service password read from ``directory.bind_password_file``."""
    path = settings.path(settings.directory.bind_password_file)
    try:
        password = path.read_text().strip()
    except OSError as exc:
        raise SiegelError(Code.CONFIG, f"directory bind password file {path} cannot be read: {exc.strerror}") from None
    return LdapDirectory(settings.directory, password)


class LoginBinder:
    """``server.identity.users.DirectoryBinder`` for the web tier: one short-lived connection per check,
    so concurrent logins from the thread pool never share an ldap3 connection."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def bind(self, user_name: str, external_id: str | None, password: str) -> bool:
        reader = open_directory(self._settings)
        try:
            return reader.bind(user_name, external_id, password)
        finally:
            reader.close()
