"""The one way the SQLite adapters write: a transaction taken up front, and, between the threads
of one process, a turn taken on a lock first.

SQLite makes a writer that finds the file locked sleep and try again, backing off up to 100 ms a
try; threads of one process that queue on a Python lock instead are woken the moment the writer
before them is done. Writers in other processes still meet SQLite's own locking."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator

_writers: dict[str, threading.Lock] = {}
_writers_lock = threading.Lock()


def writer_lock(path: str) -> threading.Lock:
    """The lock the threads of this process take before writing to the database at `path`."""
    key = os.path.realpath(path) if path != ":memory:" else f":memory:{threading.get_ident()}"
    with _writers_lock:
        return _writers.setdefault(key, threading.Lock())


@contextlib.contextmanager
def write_transaction(conn: sqlite3.Connection, lock: threading.Lock | None = None,
                      before_commit: Callable[[sqlite3.Connection], None] | None = None
                      ) -> Iterator[sqlite3.Connection]:
    """One write transaction on a connection in autocommit mode, taken up front (BEGIN IMMEDIATE)
    so that concurrent writers wait their turn instead of failing half-way; rolled back if
    anything in it raises, its commit included. `lock`: this process's turn for the file (see
    `writer_lock`). `before_commit` runs last inside it, still holding the write lock."""
    with lock if lock is not None else contextlib.nullcontext(), _transaction(conn, before_commit) as conn:
        yield conn


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection, before_commit) -> Iterator[sqlite3.Connection]:
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
