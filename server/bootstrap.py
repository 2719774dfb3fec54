"""``siegel init``: create what is missing under the data directory, and change nothing that exists."""

from __future__ import annotations

import secrets

from server.config import Settings
from server.db.engine import make_engine, migrate


def init(settings: Settings) -> list[str]:
    """Create the data directory, the SoftHSM2 token with generated PINs, the schema and the store.

    Returns one line per thing created (nothing when all was there already).
    """
    from adapters.hsm.softhsm import init_softhsm_token, token_exists, write_secret

    done: list[str] = []
    root = settings.data_dir
    if not root.exists():
        root.mkdir(parents=True, mode=0o700)
        done.append(f"created data directory {root}")
    if settings.hsm.softhsm_conf:
        conf = settings.path(settings.hsm.softhsm_conf)
        if not token_exists(conf, settings.hsm.token_label):
            pin_file, so_pin_file = settings.path(settings.hsm.pin_file), settings.path(settings.hsm.so_pin_file)
            for path in (pin_file, so_pin_file):
                if not path.exists():
                    write_secret(path, secrets.token_hex(16))
                    done.append(f"generated {path} (mode 0600)")
            init_softhsm_token(conf, settings.path(settings.hsm.token_dir), settings.hsm.token_label,
                               so_pin=so_pin_file.read_text().strip(), user_pin=pin_file.read_text().strip())
            done.append(f"initialised SoftHSM2 token {settings.hsm.token_label!r} in {settings.path(settings.hsm.token_dir)}")
    store = settings.path(settings.store.path)
    if not store.exists():
        store.mkdir(parents=True, mode=0o700)
        done.append(f"created document store {store}")
    engine = make_engine(settings.database_url, settings.database.pool_size)
    try:
        from sqlalchemy import inspect

        fresh = "alembic_version" not in inspect(engine).get_table_names()
        migrate(engine)
        if fresh:
            done.append(f"created database schema in {settings.database_url.split('@')[-1]}")
        done += _init_pki(settings)
        if done:
            from server.audit import AuditLog

            AuditLog(engine).append("cli", "system.init", str(root), created=done)
    finally:
        engine.dispose()
    return done


def _init_pki(settings: Settings) -> list[str]:
    """The CA hierarchy, OCSP signer and TSA where missing (the CA service audits each)."""
    from server.app import build_services

    services = build_services(settings)
    try:
        return services.ca.init("cli")
    finally:
        services.close()


def ensure_ready(settings: Settings) -> None:
    """What ``serve`` needs before it listens: the same as init, quiet, in a child process (what only setting
    up needs, such as Alembic and the service graph, then stays out of the server's processes)."""
    from server.serve import in_child

    in_child(init, settings)
