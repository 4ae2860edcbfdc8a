"""The one way the SQLite adapters write: a transaction taken up front."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def write_transaction(conn: sqlite3.Connection,
                      before_commit: Callable[[sqlite3.Connection], None] | None = None
                      ) -> Iterator[sqlite3.Connection]:
    """One write transaction on a connection in autocommit mode, taken up front (BEGIN IMMEDIATE)
    so that concurrent writers wait their turn instead of failing half-way; rolled back if
    anything in it raises, its commit included. `before_commit` runs last inside it, still
    holding the write lock."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        if before_commit is not None:
            before_commit(conn)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        raise
