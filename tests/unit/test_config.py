"""Configuration: one defaults file, operator file and environment overrides, clear errors."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from server import config
from server.errors import ConfigError

pytestmark = pytest.mark.unit


def test_every_setting_is_in_the_defaults_file_with_a_comment() -> None:
    text = config.DEFAULTS_FILE.read_text()
    section = None
    seen: set[tuple[str, str]] = set()
    for line in text.splitlines():
        if m := re.match(r"^\[(\w+)\]$", line):
            section = m.group(1)
        elif m := re.match(r"^(\w+)\s*=", line):
            assert re.search(r"#\s*\S", line.split("=", 1)[1]), f"setting {section}.{m.group(1)} has no comment"
            seen.add((section or "", m.group(1)))
    hints = typing.get_type_hints(config.Settings)
    expected = {(name, f.name) for name, typ in hints.items() if name != "data_dir" for f in dataclasses.fields(typ)}
    assert seen == expected


def test_environment_overrides_file(tmp_path: Path) -> None:
    own = tmp_path / "own.toml"
    own.write_text('[server]\nport = 9000\n[log]\nlevel = "DEBUG"\n')
    s = config.load(own, tmp_path, {"SIEGEL_SERVER_PORT": "9100"})
    assert s.server.port == 9100
    assert s.log.level == "DEBUG"
    assert s.data_dir == tmp_path.resolve()
    assert s.database_url == f"sqlite:///{tmp_path.resolve()}/siegel.db"


def test_data_dir_from_environment(tmp_path: Path) -> None:
    s = config.load(environ={"SIEGEL_DATA_DIR": str(tmp_path / "d")})
    assert s.data_dir == (tmp_path / "d").resolve()
    assert s.path("secrets/x") == (tmp_path / "d" / "secrets" / "x").resolve()


@pytest.mark.parametrize("env, named", [
    ({"SIEGEL_SERVER_PORT": "eighty"}, "server.port"),
    ({"SIEGEL_SERVER_PORT": "70000"}, "server.port"),
    ({"SIEGEL_SERVER_PUBLIC_BASE_URL": "localhost:8080"}, "server.public_base_url"),
    ({"SIEGEL_DATABASE_URL": "mysql://x"}, "database.url"),
    ({"SIEGEL_LOG_LEVEL": "LOUD"}, "log.level"),
    ({"SIEGEL_AUTH_CREDENTIAL_CACHE_SECONDS": "-1"}, "auth.credential_cache_seconds"),
])
def test_wrong_setting_names_setting_and_form(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError) as err:
        config.load(environ=env)
    assert named in err.value.message
    assert "expected" in err.value.message or "is not" in err.value.message


def test_unknown_setting_in_file_is_refused(tmp_path: Path) -> None:
    own = tmp_path / "own.toml"
    own.write_text("[server]\nprot = 1\n")
    with pytest.raises(ConfigError, match="unknown setting server.prot"):
        config.load(own, tmp_path, {})
    own.write_text("[sever]\nport = 1\n")
    with pytest.raises(ConfigError, match=r"unknown configuration section \[sever\]"):
        config.load(own, tmp_path, {})


def test_show_masks_secrets(tmp_path: Path) -> None:
    s = config.load(data_dir=tmp_path, environ={"SIEGEL_DATABASE_URL": "postgresql+psycopg://siegel:s3cret@db/siegel"})
    shown = s.show()
    assert shown["database"]["url"] == "postgresql+psycopg://siegel:***@db/siegel"
    assert "s3cret" not in repr(shown)


def test_cli_config_show_and_config_error(tmp_path: Path) -> None:
    env = {"SIEGEL_DATA_DIR": str(tmp_path), "SIEGEL_DATABASE_URL": "postgresql://u:pw@h/d", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-m", "server", "config", "show"], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert '[server]' in out.stdout and 'port = 8080' in out.stdout
    assert "pw" not in out.stdout.replace("pool_size", "")
    env["SIEGEL_SERVER_WORKERS"] = "many"
    out = subprocess.run([sys.executable, "-m", "server", "config", "show"], env=env, capture_output=True, text=True)
    assert out.returncode == 78
    assert "server.workers" in out.stderr and "integer" in out.stderr
