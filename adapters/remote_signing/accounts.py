"""The configured remote signing accounts: ``remote_signing.accounts_file``, a TOML file of ``[[account]]``
tables. Secrets are not in it: each account names a ``secret_file`` (mode 0600, relative paths from the
data directory), or the secret comes from the environment variable ``SIEGEL_REMOTE_SECRET_<NAME>``
(the name upper-cased, ``-`` as ``_``).

    [[account]]
    name = "qtsp"                          # how callers choose it (REST ``remote=qtsp``)
    url = "https://rss.example/csc/v2"     # the service's CSC API v2 base
    auth = "basic"                         # basic (auth/login), oauth2client, oauth2code
    username = "acme-signing"              # basic: the account there; OAuth2: the client_id
    secret_file = "secrets/qtsp.secret"    # its password or client secret
    ca_file = ""                           # PEM CA of the service's TLS certificate; empty: system store
    users = ["erp", "alice"]               # Siegel accounts that may sign with it; empty or absent: all
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from typing import Any

from adapters.remote_signing.client import RemoteAccount
from server.config import Settings
from server.errors import ConfigError

AUTH_KINDS = ("basic", "oauth2client", "oauth2code")
_KEYS = {"name", "url", "auth", "username", "secret_file", "ca_file", "users"}


def secret_variable(name: str) -> str:
    """The environment variable that may hold the secret of account ``name``."""
    return "SIEGEL_REMOTE_SECRET_" + re.sub(r"[^A-Z0-9]", "_", name.upper())


def load_accounts(settings: Settings, environ: Mapping[str, str] | None = None) -> dict[str, RemoteAccount]:
    """The accounts of ``remote_signing.accounts_file`` by name; none when the setting is empty."""
    configured = settings.remote_signing.accounts_file
    if not configured:
        return {}
    path = settings.path(configured)
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"remote_signing.accounts_file {path} cannot be read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"remote_signing.accounts_file {path} is not valid TOML: {exc}") from None
    entries = data.get("account", [])
    if set(data) - {"account"} or not isinstance(entries, list):
        raise ConfigError(f"{path}: expected only [[account]] tables")
    env = os.environ if environ is None else environ
    accounts: dict[str, RemoteAccount] = {}
    for number, entry in enumerate(entries, 1):
        account = _account(settings, path.name, number, entry, env)
        if account.name in accounts:
            raise ConfigError(f"{path.name}: two accounts are named {account.name!r}")
        accounts[account.name] = account
    return accounts


def _account(settings: Settings, file: str, number: int, entry: Any, env: Mapping[str, str]) -> RemoteAccount:
    where = f"{file} account #{number}"
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected a table")
    unknown = set(entry) - _KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} (known: {', '.join(sorted(_KEYS))})")

    def text(key: str, required: bool = True) -> str:
        value = entry.get(key, "")
        if not isinstance(value, str) or (required and not value.strip()):
            raise ConfigError(f"{where}: {key} must be a non-empty string")
        return value.strip()

    name = text("name")
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name):
        raise ConfigError(f"{where}: name {name!r} may hold letters, digits, '.', '_' and '-' only")
    where = f"{file} account {name!r}"
    url = text("url")
    if not re.fullmatch(r"https?://[^/\s]+(/\S*)?", url):
        raise ConfigError(f"{where}: url must be the service's http(s):// CSC API base, e.g. https://rss.example/csc/v2")
    auth = text("auth")
    if auth not in AUTH_KINDS:
        raise ConfigError(f"{where}: auth must be one of {', '.join(AUTH_KINDS)}")
    users = entry.get("users", [])
    if not isinstance(users, list) or not all(isinstance(u, str) for u in users):
        raise ConfigError(f"{where}: users must be a list of account names")
    secret = env.get(secret_variable(name), "")
    if not secret and text("secret_file", required=False):
        secret_path = settings.path(text("secret_file"))
        try:
            secret = secret_path.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"{where}: secret_file {secret_path} cannot be read: {exc.strerror}") from None
    if not secret and auth != "oauth2code":
        raise ConfigError(f"{where}: no secret: give secret_file or set {secret_variable(name)}")
    ca_file = text("ca_file", required=False)
    return RemoteAccount(name, url, auth, text("username"), secret, str(settings.path(ca_file)) if ca_file else None,
                         frozenset(u.strip() for u in users if u.strip()))
