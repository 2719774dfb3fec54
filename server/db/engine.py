"""Engine and sessions; SQLite runs in WAL mode with foreign keys on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, ExceptionContext, create_engine, event, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from server.errors import Code, SiegelError

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def make_engine(url: str, pool_size: int = 0) -> Engine:
    """An engine for ``url``; SQLite files get WAL, a busy timeout and foreign keys."""
    kwargs: dict[str, Any] = {"future": True}
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
    else:
        # A server restarted or failed over leaves dead connections in the pool: test each on checkout.
        kwargs["pool_pre_ping"] = True
        if pool_size:
            kwargs["pool_size"] = pool_size
    engine = create_engine(url, **kwargs)
    if url.startswith("sqlite"):
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        event.listen(engine, "handle_error", _unreachable)
    return engine


def _unreachable(context: ExceptionContext) -> SiegelError | None:
    """A lost or refused server connection becomes the retryable DATABASE error (503 with Retry-After, a
    SOAP fault), not an internal one; SQLAlchemy still discards the dead connection. Other errors stay."""
    refused = context.connection is None and isinstance(context.original_exception,
                                                        context.dialect.loaded_dbapi.OperationalError)
    if context.is_disconnect or refused:
        return SiegelError(Code.DATABASE, "the database is unreachable; retry shortly")
    return None


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision (a no-op when it is there)."""
    from alembic import command  # Alembic (with Mako and Pygments: ~11 MB) only where the schema is migrated
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    except SQLAlchemyError as exc:
        raise SiegelError(Code.DATABASE, f"database migration failed: {exc.__class__.__name__}: {exc}") from exc


def check(engine: Engine) -> None:
    """Raise a SiegelError when the database does not answer."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        raise SiegelError(Code.DATABASE, f"database unavailable: {exc.__class__.__name__}") from exc
