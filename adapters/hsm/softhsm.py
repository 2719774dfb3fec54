"""SoftHSM2 set-up for ``siegel init`` and the tests: configuration, token, PIN files.

SoftHSM2 reads ``SOFTHSM2_CONF`` when the PKCS#11 module is initialised, so a process calls
:func:`softhsm_environment` before it opens the module (``server.app.open_hsm`` does, for ``serve``
and every CLI command that opens the HSM); :func:`init_softhsm_token` and :func:`token_exists` run
``softhsm2-util`` in a child process with the variable set and do not need it.
"""

from __future__ import annotations

import os
import pty
import re
import secrets
import subprocess
from pathlib import Path

from server.errors import Code, SiegelError

UTIL = "softhsm2-util"
TIMEOUT_SECONDS = 60.0
_PIN_LENGTH = range(4, 256)  # what softhsm2-util accepts


def softhsm_environment(conf_path: Path) -> None:
    """Point this process's SoftHSM2 at ``conf_path``; call before the PKCS#11 module is opened."""
    os.environ["SOFTHSM2_CONF"] = str(conf_path)


def _write_conf(conf_path: Path, token_dir: Path) -> None:
    """Write a softhsm2.conf that keeps the tokens as files in ``token_dir``."""
    text = (f"directories.tokendir = {token_dir}\n"
            "objectstore.backend = file\n"
            "log.level = ERROR\n")
    if conf_path.exists() and conf_path.read_text() == text:
        return
    _make_private_dirs(conf_path.parent)
    conf_path.write_text(text)


def token_exists(conf_path: Path, label: str) -> bool:
    """Whether the SoftHSM2 configured by ``conf_path`` has an initialised token labelled ``label``."""
    if not conf_path.exists():
        return False
    out = _run([UTIL, "--show-slots"], conf_path, what="list the SoftHSM2 slots")
    return label in re.findall(r"^\s*Label:\s*(.*?)\s*$", out, flags=re.MULTILINE)


def init_softhsm_token(conf_path: Path, token_dir: Path, label: str, so_pin: str, user_pin: str) -> None:
    """Write the configuration, create ``token_dir`` (0700) and initialise a token in a free slot.

    The PINs go to softhsm2-util through a pseudo-terminal, never on its command line, and are in
    no message. A label that exists already is refused (two tokens of one label would be ambiguous).
    """
    for what, pin in (("SO PIN", so_pin), ("user PIN", user_pin)):
        if len(pin) not in _PIN_LENGTH or "\n" in pin:
            raise SiegelError(Code.CONFIG, f"the SoftHSM2 {what} must be 4 to 255 characters on one line")
    if not 1 <= len(label.encode()) <= 32:
        raise SiegelError(Code.CONFIG, f"token label {label!r} must be 1 to 32 bytes long")
    _make_private_dirs(token_dir)
    _write_conf(conf_path, token_dir)
    if token_exists(conf_path, label):
        raise SiegelError(Code.CONFLICT, f"a SoftHSM2 token labelled {label!r} exists already in {token_dir}")
    answers = f"{so_pin}\n{so_pin}\n{user_pin}\n{user_pin}\n".encode()
    _run([UTIL, "--init-token", "--free", "--label", label], conf_path,
         what=f"initialise the SoftHSM2 token {label!r}", terminal_input=answers)


def write_secret(path: Path, value: str) -> None:
    """Write ``value`` to ``path`` with mode 0600 from the first byte on, atomically (temp, fsync, rename).

    Missing parent directories are created with mode 0700.
    """
    _make_private_dirs(path.parent)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)  # the umask may only have narrowed it; make it exact
        os.write(fd, (value + "\n").encode())
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _make_private_dirs(path: Path) -> None:
    """Create ``path`` and its missing parents, each with mode 0700 (``mkdir(parents=True)`` would not)."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for p in reversed(missing):
        p.mkdir(mode=0o700)
        os.chmod(p, 0o700)


def _run(argv: list[str], conf_path: Path, what: str, terminal_input: bytes | None = None) -> str:
    env = dict(os.environ, SOFTHSM2_CONF=str(conf_path))
    master = slave = -1
    if terminal_input is not None:
        master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(argv, env=env, stdin=slave if slave >= 0 else subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    except FileNotFoundError:
        raise SiegelError(Code.HSM_UNAVAILABLE, f"{UTIL} is not installed (Debian package softhsm2)") from None
    finally:
        if slave >= 0:
            os.close(slave)
    try:
        if terminal_input is not None:
            os.write(master, terminal_input)
        out, err = proc.communicate(timeout=TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise SiegelError(Code.HSM_UNAVAILABLE, f"{UTIL} did not {what} within {TIMEOUT_SECONDS:.0f} s") from None
    finally:
        if master >= 0:
            os.close(master)
    if proc.returncode != 0:
        detail = (err or out).decode(errors="replace").strip().splitlines()
        raise SiegelError(Code.HSM_UNAVAILABLE, f"{UTIL} could not {what} (configuration {conf_path}): "
                                                f"{detail[-1] if detail else f'exit status {proc.returncode}'}")
    return out.decode(errors="replace")
