"""What the SQLite adapters share: the one way they write (a transaction taken up front, and,
between the threads of one process, a turn taken on a lock first), and connections that outlive
the threads that used them.

SQLite makes a writer that finds the file locked sleep and try again, backing off up to 100 ms a
try; threads of one process that queue on a Python lock instead are woken the moment the writer
before them is done. Writers in other processes still meet SQLite's own locking."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator


def connect(path: str):
    """A connection to the embedded store's file, for every adapter that opens it. Always through
    the same SQLite library: the stdlib module when it can load extensions, else sqlean's. Two
    copies of SQLite in one process on one file do not see each other's POSIX locks, and SQLite
    warns that this corrupts the file (a row written through one vanished under the other)."""
    import sqlite3

    if hasattr(sqlite3.Connection, "enable_load_extension"):
        conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    else:
        import sqlean

        conn = sqlean.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    import sqlite_vec

    conn.enable_load_extension(True)
    sqlite_vec.load(conn)
    conn.enable_load_extension(False)
    # SQLite's own lower() and LIKE fold ASCII letters only; listings compare as Python does.
    conn.create_function("py_lower", 1, lambda v: v.lower() if isinstance(v, str) else v, deterministic=True)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


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


class ThreadConnections:
    """One connection per thread, taken from those that finished threads left behind before a new
    one is opened: the local gateway serves each request on a thread of its own, and opening a
    connection (and loading an extension into it) costs more than most of its queries. A thread's
    connection goes back to the idle list when the thread ends (its thread-local storage is
    released then), unless it is in a transaction or enough are idle already."""

    MAX_IDLE = 16

    def __init__(self, open_connection: Callable[[], sqlite3.Connection]):
        self._open = open_connection
        self._local = threading.local()
        self._idle: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def get(self) -> sqlite3.Connection:
        lease = getattr(self._local, "lease", None)
        if lease is None:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            lease = self._local.lease = _Lease(self, conn or self._open())
        return lease.conn

    @property
    def idle(self) -> int:
        return len(self._idle)

    def close(self) -> None:
        """Close this thread's connection and the idle ones."""
        lease = getattr(self._local, "lease", None)
        if lease is not None:
            conn, lease.conn = lease.conn, None
            self._local.lease = None
            conn.close()
        with self._lock:
            idle, self._idle[:] = list(self._idle), []
        for conn in idle:
            conn.close()

    def _give_back(self, conn: sqlite3.Connection) -> None:
        with self._lock:
            if not conn.in_transaction and len(self._idle) < self.MAX_IDLE:
                self._idle.append(conn)
                return
        conn.close()


class _Lease:
    def __init__(self, owner: ThreadConnections, conn: sqlite3.Connection):
        self.owner, self.conn = owner, conn

    def __del__(self):
        conn, self.conn = self.conn, None
        if conn is not None:
            self.owner._give_back(conn)
