"""``siegel archive add | evidence | verify | renew | stats`` as an operator runs them on a data directory: files and
hash-only objects, ERS and XMLERS records that verify (exit 0) and fail for tampered data (exit 1), timestamp and
hash-tree renewal keeping the records valid, and a clear message with a sysexits code for every bad input."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from server.archive import ers
from tests.fixtures.server import SiegelInstance, make_instance

pytestmark = pytest.mark.e2e

CONTRACT = b"Mietvertrag Hauptstrasse 1, unterschrieben 2026-12-07\n" * 10
RECEIPT = b"Quittung 17, nur als Hash archiviert\n"
EXIT_DATAERR = 65


@pytest.fixture(scope="module")
def inst(tmp_path_factory: pytest.TempPathFactory) -> SiegelInstance:
    made = make_instance(tmp_path_factory.mktemp("archive-cli"))
    made.cli("user", "add", "greta", "--email", "greta@example.com", "--role", "signer", "--password-stdin",
             stdin="greta-password-1\n")
    return made


def refused(inst: SiegelInstance, *args: str, code: int = EXIT_DATAERR, words: tuple[str, ...] = ()) -> None:
    done = inst.cli(*args, check=False)
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    assert all(w in done.stderr for w in words), done.stderr


def test_add_evidence_verify_renew_stats(inst: SiegelInstance, tmp_path: Path) -> None:
    (tmp_path / "contract.txt").write_bytes(CONTRACT)
    (tmp_path / "annex.txt").write_bytes(b"Anlage 1: Grundriss\n")
    contract, annex = inst.cli("archive", "add", str(tmp_path / "contract.txt"), str(tmp_path / "annex.txt"),
                               "--as", "erp").stdout.split()
    receipt_hash = hashlib.sha256(RECEIPT).hexdigest()
    [receipt] = inst.cli("archive", "add", "--hash", f"sha256:{receipt_hash}", "--as", "erp").stdout.split()
    assert len({contract, annex, receipt}) == 3

    out = tmp_path / "contract.ers"
    written = inst.cli("archive", "evidence", contract, "--format", "ers", "--as", "erp", "-o", str(out))
    assert str(out) in written.stdout and not out.with_name(out.name + ".partial").exists()
    [[first]] = ers.decode(out.read_bytes()).chains
    xml = tmp_path / "receipt.xml"
    xml.write_text(inst.cli("archive", "evidence", receipt, "--format", "xml", "--as", "erp").stdout)
    assert xml.read_text().lstrip().startswith("<")

    passed = inst.cli("archive", "verify", str(out), "--file", str(tmp_path / "contract.txt"))
    assert json.loads(passed.stdout)["indication"] == "TOTAL-PASSED"
    assert inst.cli("archive", "verify", str(xml), "--hash", f"sha256:{receipt_hash}").returncode == 0
    (tmp_path / "tampered.txt").write_bytes(CONTRACT.replace(b"Hauptstrasse 1", b"Hauptstrasse 7"))
    failed = inst.cli("archive", "verify", str(out), "--file", str(tmp_path / "tampered.txt"), check=False)
    assert failed.returncode == 1 and json.loads(failed.stdout)["indication"] == "TOTAL-FAILED"
    other = hashlib.sha256(b"another receipt").hexdigest()
    assert inst.cli("archive", "verify", str(xml), "--hash", f"sha256:{other}", check=False).returncode == 1

    stamps = json.loads(inst.cli("archive", "renew", "--timestamps", "--force").stdout)
    assert stamps["timestamps"]
    inst.cli("archive", "evidence", contract, "--as", "erp", "-o", str(out))
    [chain] = ers.decode(out.read_bytes()).chains
    assert len(chain) == 2 and chain[0].timestamp == first.timestamp  # a new ATS over the first (RFC 4998 5.2)
    assert inst.cli("archive", "verify", str(out), "--file", str(tmp_path / "contract.txt")).returncode == 0

    trees = json.loads(inst.cli("archive", "renew", "--hashtree", "sha512", "--force").stdout)
    assert trees["hashtree"]["algorithm"] == "sha512" and trees["hashtree"]["renewed"] >= 1
    inst.cli("archive", "evidence", contract, "--as", "erp", "-o", str(out))
    assert len(ers.decode(out.read_bytes()).chains) == 2  # a new chain in SHA-512 (RFC 4998 5.3)
    assert inst.cli("archive", "verify", str(out), "--file", str(tmp_path / "contract.txt")).returncode == 0

    stats = dict(line.split(": ", 1) for line in inst.cli("archive", "stats").stdout.splitlines())
    assert (stats["objects"], stats["items"], stats["pending"]) == ("3", "3", "0")


def test_bad_input_gets_a_message_and_an_exit_code(inst: SiegelInstance, tmp_path: Path) -> None:
    before = inst.cli("archive", "stats").stdout
    refused(inst, "archive", "add", "--as", "erp", words=("give files or --hash",))
    refused(inst, "archive", "add", str(tmp_path / "missing.txt"), "--as", "erp", words=("missing.txt",))
    refused(inst, "archive", "add", "--hash", "sha256:zz", "--as", "erp", words=("ALG:HEX",))
    refused(inst, "archive", "add", "--hash", "sha256:abcd", "--as", "erp", words=("32 bytes",))
    refused(inst, "archive", "add", "--hash", f"md5:{hashlib.md5(b'x').hexdigest()}", "--as", "erp", words=("md5",))
    refused(inst, "archive", "add", "--hash", f"sha256:{'00' * 32}", "--as", "nobody", words=("no user named",))
    aoid = inst.cli("archive", "add", "--hash", f"sha256:{'11' * 32}", "--as", "erp").stdout.strip()
    refused(inst, "archive", "evidence", "no-such-aoid", "--as", "erp", words=("no archive object",))
    refused(inst, "archive", "evidence", aoid, "--as", "greta", code=1, words=("may not", "another account"))
    refused(inst, "archive", "evidence", aoid, "--format", "pdf", "--as", "erp", code=2, words=("invalid choice",))
    refused(inst, "archive", "verify", str(tmp_path / "none.ers"), "--hash", f"sha256:{'11' * 32}",
            words=("none.ers",))
    refused(inst, "archive", "verify", "x.ers", code=2, words=("--file", "--hash"))
    objects = int(dict(line.split(": ", 1) for line in before.splitlines())["objects"])
    after = dict(line.split(": ", 1) for line in inst.cli("archive", "stats").stdout.splitlines())
    assert int(after["objects"]) == objects + 1  # the one accepted add, nothing from the refused ones
