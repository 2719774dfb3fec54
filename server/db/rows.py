"""Many rows into one table, or out of a query, at driver speed, inside the caller's transaction.

SQLAlchemy's executemany builds and processes a parameter dict per row; for the archive's bulk path (a million
objects, three rows each) that costs more than the database. Here the rows are tuples handed to the driver as
they are: PostgreSQL (psycopg 3) gets them through ``COPY … FROM STDIN``, any other database through the DBAPI
cursor's ``executemany``. Values must already be what the driver takes: :func:`driver_value` converts a
constant once (SQLite stores a ``DateTime`` as text, say). :func:`fetch_rows` reads a query's rows as the driver
gives them, without SQLAlchemy's row objects (half the time of ``.all()`` for the collection's million rows).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, Select, Table


def driver_value(conn: Connection, table: Table, column: str, value: Any) -> Any:
    """``value`` as the driver takes it for ``table.column`` (the column type's bind processing applied)."""
    process = table.c[column].type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
    return value if process is None or value is None else process(value)


def insert_rows(conn: Connection, table: Table, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Insert ``rows`` (one value per column of ``columns``, driver values) into ``table`` in ``conn``'s
    transaction."""
    preparer = conn.dialect.identifier_preparer
    names = ", ".join(preparer.quote(name) for name in columns)
    target = preparer.format_table(table)
    driver = conn.connection.driver_connection
    assert driver is not None
    cursor = driver.cursor()
    try:
        if conn.dialect.name == "postgresql":
            with cursor.copy(f"COPY {target} ({names}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
            marks = ", ".join(mark for _ in columns)
            cursor.executemany(f"INSERT INTO {target} ({names}) VALUES ({marks})", rows)
    finally:
        cursor.close()


def fetch_rows(conn: Connection, statement: Select[Any]) -> list[tuple[Any, ...]]:
    """The rows of ``statement`` as driver values: only for columns the driver gives as wanted (integers, bytes)."""
    compiled = statement.compile(dialect=conn.dialect)
    params = compiled.params
    args: Any = [params[name] for name in compiled.positiontup or ()] if compiled.positional else params
    driver = conn.connection.driver_connection
    assert driver is not None
    cursor = driver.cursor()
    try:
        cursor.execute(str(compiled), args)
        return list(cursor.fetchall())
    finally:
        cursor.close()
