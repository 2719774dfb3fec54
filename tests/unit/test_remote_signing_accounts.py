"""The remote signing accounts file: accounts, secrets from a file or the environment, every mistake named."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.remote_signing.accounts import load_accounts, secret_variable
from adapters.remote_signing.client import CredentialInfo, _credential
from server import config
from server.errors import ConfigError, SiegelError
from server.signing.keysource import DigestAlgorithm, SignatureScheme


def _load(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> dict:  # type: ignore[type-arg]
    (tmp_path / "accounts.toml").write_text(text)
    settings = config.load(data_dir=tmp_path, environ={"SIEGEL_REMOTE_SIGNING_ACCOUNTS_FILE": "accounts.toml"})
    return load_accounts(settings, environ or {})


def test_accounts_with_secrets_from_a_file_and_from_the_environment(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "qtsp.secret").write_text("file-secret\n")
    accounts = _load(tmp_path, '''
[[account]]
name = "qtsp"
url = "https://rss.example/csc/v2"
auth = "oauth2client"
username = "client-1"
secret_file = "secrets/qtsp.secret"
users = ["erp", "alice"]

[[account]]
name = "other-b"
url = "http://127.0.0.1:9/csc/v2"
auth = "basic"
username = "ada"
''', {secret_variable("other-b"): "env-secret"})
    assert secret_variable("other-b") == "SIEGEL_REMOTE_SECRET_OTHER_B"
    assert accounts["qtsp"].secret == "file-secret" and accounts["qtsp"].users == frozenset({"erp", "alice"})
    assert accounts["other-b"].secret == "env-secret" and accounts["other-b"].users == frozenset()
    assert accounts["qtsp"].ca_file is None


@pytest.mark.parametrize(("entry", "message"), [
    ('name = "a"\nurl = "https://x/csc/v2"\nauth = "digest"\nusername = "u"', "auth must be one of"),
    ('name = "a"\nurl = "ftp://x"\nauth = "basic"\nusername = "u"', "url must be"),
    ('name = "a b"\nurl = "https://x"\nauth = "basic"\nusername = "u"', "may hold letters"),
    ('name = "a"\nurl = "https://x"\nauth = "basic"\nusername = "u"', "no secret: give secret_file or set "
                                                                      "SIEGEL_REMOTE_SECRET_A"),
    ('name = "a"\nurl = "https://x"\nauth = "basic"\nusername = "u"\npassword = "p"', "unknown key(s) password"),
    ('name = "a"\nurl = "https://x"\nauth = "basic"\nusername = "u"\nsecret_file = "missing"', "cannot be read"),
])
def test_each_mistake_is_named(tmp_path: Path, entry: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, f"[[account]]\n{entry}\n")
    assert message in caught.value.message


def test_two_accounts_of_one_name_are_refused(tmp_path: Path) -> None:
    one = '[[account]]\nname = "a"\nurl = "https://x"\nauth = "oauth2code"\nusername = "u"\n'
    with pytest.raises(ConfigError, match="two accounts are named 'a'"):
        _load(tmp_path, one + one)


def test_no_accounts_file_means_no_accounts(tmp_path: Path) -> None:
    assert load_accounts(config.load(data_dir=tmp_path, environ={}), {}) == {}


def _info(algos: list[str]) -> CredentialInfo:
    return CredentialInfo("c", (b"",), tuple(algos), "enabled", "valid", "2", "explicit", True, True, "online", 1, "")


def test_the_sign_algorithm_follows_the_key_and_the_digest() -> None:
    ec = _info(["1.2.840.10045.4.3.2", "1.2.840.10045.4.3.3", "1.2.840.10045.2.1"])
    assert ec.sign_algo(SignatureScheme.ECDSA, DigestAlgorithm.SHA256) == "1.2.840.10045.4.3.2"
    assert ec.sign_algo(SignatureScheme.ECDSA, DigestAlgorithm.SHA512) == "1.2.840.10045.2.1"
    with pytest.raises(SiegelError, match="offers no rsa-pkcs1v15"):
        ec.sign_algo(SignatureScheme.RSA_PKCS1V15, DigestAlgorithm.SHA256)


def test_credential_info_without_a_certificate_is_refused() -> None:
    with pytest.raises(SiegelError, match="no certificate"):
        _credential("svc", "c", {"key": {"algo": []}, "cert": {"certificates": []}})
