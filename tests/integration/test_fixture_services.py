"""The service fixtures start the real thing: PostgreSQL/SQLite, slapd with AD attributes, SMTP."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage

import ldap3
import pytest
from sqlalchemy import create_engine, text

from tests.fixtures.postgres import PostgresServer
from tests.fixtures.slapd import USER_PASSWORDS, SlapdServer, object_guid
from tests.fixtures.smtp import SmtpServer

pytestmark = pytest.mark.integration


def test_database_url_is_a_working_empty_database(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        with engine.begin() as c:
            if engine.dialect.name == "postgresql":
                assert c.execute(text("SHOW server_version")).scalar_one().startswith(("1", "2"))
                tables = "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
                assert c.execute(text(tables)).scalar() == 0
            else:
                assert engine.dialect.name == "sqlite"
                assert c.execute(text("SELECT count(*) FROM sqlite_master")).scalar() == 0
            c.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, name VARCHAR(20) NOT NULL)"))
            c.execute(text("INSERT INTO t (id, name) VALUES (1, 'anna'), (2, 'bernd')"))
        with engine.connect() as c:
            assert c.execute(text("SELECT name FROM t ORDER BY id")).scalars().all() == ["anna", "bernd"]
    finally:
        engine.dispose()


def test_postgres_server_is_postgresql(postgres_server: PostgresServer) -> None:
    url = postgres_server.create_database("siegel_fixture_check")
    engine = create_engine(url)
    try:
        with engine.connect() as c:
            version = c.execute(text("SELECT current_setting('server_version_num')::int")).scalar_one()
            assert version >= 150000
            assert c.execute(text("SELECT current_database()")).scalar_one() == "siegel_fixture_check"
            assert c.execute(text("SHOW fsync")).scalar_one() == "off"
            assert c.execute(text("SHOW listen_addresses")).scalar_one() == "127.0.0.1"
    finally:
        engine.dispose()
        postgres_server.drop_database("siegel_fixture_check")
    assert url == f"postgresql+psycopg://postgres@127.0.0.1:{postgres_server.port}/siegel_fixture_check"


def _connect(slapd: SlapdServer) -> ldap3.Connection:
    return ldap3.Connection(ldap3.Server(slapd.url), slapd.bind_dn, slapd.password, auto_bind=True)


def test_slapd_finds_users_by_sam_account_name(slapd_server: SlapdServer) -> None:
    with _connect(slapd_server) as conn:
        assert conn.search(slapd_server.base_dn, "(sAMAccountName=ANNA)",
                           attributes=["userPrincipalName", "mail", "objectGUID", "userAccountControl"])
        (anna,) = conn.entries
        assert anna.entry_dn == f"uid=anna,{slapd_server.users_dn}"
        assert anna.userPrincipalName.value == "anna@siegel.test"
        assert anna.userAccountControl.value == 512
        assert anna.objectGUID.raw_values == [object_guid("anna")]
        assert conn.search(slapd_server.users_dn, "(sAMAccountName=*er*)", attributes=["sAMAccountName"])
        assert [e.sAMAccountName.value for e in conn.entries] == ["bernd"]
        assert not conn.search(slapd_server.users_dn, "(sAMAccountName=nobody)")


def test_slapd_ad_bit_and_filter_finds_the_disabled_user(slapd_server: SlapdServer) -> None:
    with _connect(slapd_server) as conn:
        assert conn.search(slapd_server.users_dn,
                           "(&(objectClass=adUser)(userAccountControl:1.2.840.113556.1.4.803:=2))",
                           attributes=["sAMAccountName"])
        assert [e.sAMAccountName.value for e in conn.entries] == ["clara"]


def test_slapd_member_of_lists_the_groups(slapd_server: SlapdServer) -> None:
    with _connect(slapd_server) as conn:
        conn.search(slapd_server.users_dn, "(uid=anna)", attributes=["memberOf"])
        assert sorted(conn.entries[0].memberOf.values) == [f"cn=approvers,{slapd_server.groups_dn}",
                                                          f"cn=signers,{slapd_server.groups_dn}"]
        conn.search(slapd_server.users_dn, "(uid=anna)", attributes=["*"])
        assert "memberOf" not in conn.entries[0].entry_attributes  # operational: only when asked for


def test_slapd_add_ldif_goes_through_the_overlays(slapd_server: SlapdServer) -> None:
    slapd_server.add_ldif(f"""dn: uid=fixture-dora,{slapd_server.users_dn}
objectClass: inetOrgPerson
objectClass: adUser
uid: fixture-dora
cn: Dora
sn: Dora
sAMAccountName: fixture-dora
userAccountControl: 512

dn: cn=fixture-auditors,{slapd_server.groups_dn}
objectClass: groupOfNames
cn: fixture-auditors
member: uid=fixture-dora,{slapd_server.users_dn}
""")
    with _connect(slapd_server) as conn:
        conn.search(slapd_server.users_dn, "(sAMAccountName=fixture-dora)", attributes=["memberOf"])
        assert conn.entries[0].memberOf.values == [f"cn=fixture-auditors,{slapd_server.groups_dn}"]
    anna = f"uid=anna,{slapd_server.users_dn}"
    with ldap3.Connection(ldap3.Server(slapd_server.url), anna, USER_PASSWORDS["anna"]) as c:
        assert c.bound  # user binds work too (the directory adapter checks passwords that way)


def test_smtp_server_receives_mail(smtp_server: SmtpServer) -> None:
    msg = EmailMessage()
    msg["From"] = "siegel@example.com"
    msg["To"] = "anna@example.com"
    msg["Subject"] = "Bitte unterschreiben: Vertrag Nr. 7"
    msg.set_content("Ein Dokument wartet auf Ihre Unterschrift.")
    with smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=10) as client:
        client.send_message(msg, to_addrs=["anna@example.com", "bernd@example.com"])
    (mail,) = smtp_server.wait_for(1, timeout=5)
    assert mail.mail_from == "siegel@example.com"
    assert mail.rcpt_tos == ("anna@example.com", "bernd@example.com")
    assert mail.message["Subject"] == "Bitte unterschreiben: Vertrag Nr. 7"
    assert mail.message["To"] == "anna@example.com"
    assert mail.message.get_content().strip() == "Ein Dokument wartet auf Ihre Unterschrift."
    with pytest.raises(AssertionError, match="expected 2"):
        smtp_server.wait_for(2, timeout=0.1)
