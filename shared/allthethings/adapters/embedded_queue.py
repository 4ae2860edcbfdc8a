"""Queues with SQS's semantics in one SQLite file: the embedded default's queues (issue 15).

What SQS gives the functions, and this keeps across a restart (`kill -9` included: every
operation is a committed transaction in WAL mode): send with an optional delay, batch receive
with a visibility timeout, a receive count per message, a dead-letter queue once a message has
been received `max_receives` times without being deleted, delete and change of visibility by
receipt handle, redrive from a dead-letter queue, and a maximum message size. Each operation is
one indexed query (`(queue, visible_at, id)`), so its cost does not grow with the backlog.

persist-queue's SQLiteAckQueue was the library to weigh (docs/decisions.md): it has ack, nack
and ack_failed, but no visibility timeout (an unacknowledged item comes back only when the
process restarts), no receive count, no delay and no dead-letter queue, so SQS's semantics
would have been a second layer of state beside it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sqlite3
import threading
import time
import uuid

from allthethings.adapters.sqlite_tx import ThreadConnections, write_transaction, writer_lock
from allthethings.domain.errors import NotFound, UpstreamUnavailable
from allthethings.ports import TaskQueue

SQS_MAX_BYTES = 1024 * 1024
_SCHEMA = """
CREATE TABLE IF NOT EXISTS queues (
    name TEXT PRIMARY KEY, visibility_s REAL NOT NULL, dead_letter TEXT, max_receives INTEGER,
    max_bytes INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT, queue TEXT NOT NULL, body TEXT NOT NULL,
    sent_at REAL NOT NULL, visible_at REAL NOT NULL, receives INTEGER NOT NULL DEFAULT 0, receipt TEXT
);
CREATE INDEX IF NOT EXISTS messages_ready ON messages (queue, visible_at, id);
CREATE UNIQUE INDEX IF NOT EXISTS messages_receipt ON messages (receipt) WHERE receipt IS NOT NULL;
"""

# The visible messages of a queue, oldest first: a search of the messages_ready index.
_READY = ("SELECT id, body, receives, sent_at FROM messages WHERE queue = ? AND visible_at <= ? "
          "ORDER BY visible_at, id LIMIT ?")


class MessageTooLarge(ValueError):
    """A message over its queue's maximum size, refused as SQS refuses it."""


@dataclasses.dataclass(frozen=True)
class Received:
    """A message as a receive hands it out: its id, body, receipt handle and how many times it
    has been received (this time included)."""

    message_id: str
    body: str
    receipt: str
    receives: int
    sent_at: float


class EmbeddedQueues:
    """Every queue of the local stack in one SQLite file. Safe to share between threads of one
    process and between processes (SQLite's locking; writes take the lock up front)."""

    def __init__(self, path: str):
        self.path = path
        self._connections = ThreadConnections(self._open)
        self._writer = writer_lock(path)
        self._arrivals: dict[str, threading.Condition] = {}  # per queue: a receive waits on its own
        self._arrivals_lock = threading.Lock()
        self._conn().executescript(_SCHEMA)  # idempotent, and it commits by itself

    def _conn(self) -> sqlite3.Connection:
        return self._connections.get()

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # durable when a process dies; WAL keeps it consistent
        return conn

    def _write(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return write_transaction(self._conn(), self._writer)

    # -- queues -------------------------------------------------------------------------------
    def create(self, name: str, *, visibility_s: float = 30, dead_letter: str | None = None,
               max_receives: int | None = None, max_bytes: int = SQS_MAX_BYTES) -> str:
        """Create (or reconfigure) a queue; its name. A dead-letter queue must exist first."""
        with self._write() as conn:
            if dead_letter and not conn.execute("SELECT 1 FROM queues WHERE name = ?", (dead_letter,)).fetchone():
                raise NotFound(f"no dead-letter queue {dead_letter!r}")
            conn.execute("INSERT INTO queues (name, visibility_s, dead_letter, max_receives, max_bytes) "
                         "VALUES (?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET visibility_s = excluded.visibility_s, "
                         "dead_letter = excluded.dead_letter, max_receives = excluded.max_receives, "
                         "max_bytes = excluded.max_bytes", (name, visibility_s, dead_letter, max_receives, max_bytes))
        return name

    def _queue(self, conn: sqlite3.Connection, name: str) -> tuple[float, str | None, int | None, int]:
        row = conn.execute("SELECT visibility_s, dead_letter, max_receives, max_bytes FROM queues WHERE name = ?",
                           (name,)).fetchone()
        if row is None:
            raise NotFound(f"no queue {name!r}")
        return row

    # -- messages -----------------------------------------------------------------------------
    def send(self, queue: str, body: str, *, delay_s: float = 0) -> str:
        """Queue `body`, visible after `delay_s`; its message id."""
        with self._write() as conn:
            max_bytes = self._queue(conn, queue)[3]
            size = len(body.encode("utf-8"))
            if size > max_bytes:
                raise MessageTooLarge(f"the message is {size} bytes; {queue} takes at most {max_bytes}")
            now = time.time()
            rowid = conn.execute("INSERT INTO messages (queue, body, sent_at, visible_at) VALUES (?, ?, ?, ?)",
                                 (queue, body, now, now + delay_s)).lastrowid
        self._notify(queue)
        return str(rowid)

    def receive(self, queue: str, *, limit: int = 10, visibility_s: float | None = None,
                wait_s: float = 0) -> list[Received]:
        """Up to `limit` visible messages, oldest first, each hidden for the visibility timeout and
        counted as received; a message received its queue's `max_receives` times already goes to
        the dead-letter queue instead. Waits up to `wait_s` for one to arrive (long polling)."""
        deadline = time.monotonic() + wait_s
        arrivals = self._arrivals_of(queue)
        while True:
            got = self._receive_once(queue, limit, visibility_s)
            left = deadline - time.monotonic()
            if got or left <= 0:
                return got
            with arrivals:
                arrivals.wait(min(left, 0.2))  # woken by a send to this queue in this process; polls for others

    def _arrivals_of(self, queue: str) -> threading.Condition:
        with self._arrivals_lock:
            return self._arrivals.setdefault(queue, threading.Condition())

    def _notify(self, *queues: str) -> None:
        """Wake the receives waiting on these queues (all queues if none is named)."""
        with self._arrivals_lock:
            waiting = [self._arrivals[q] for q in queues if q in self._arrivals] if queues \
                else list(self._arrivals.values())
        for arrivals in waiting:
            with arrivals:
                arrivals.notify_all()

    def _receive_once(self, queue: str, limit: int, visibility_s: float | None) -> list[Received]:
        got: list[Received] = []
        # An empty queue is answered by a read, without taking the file's write lock.
        if not self._conn().execute(_READY, (queue, time.time(), 1)).fetchone():
            self._queue(self._conn(), queue)  # a queue that does not exist is still NotFound
            return got
        with self._write() as conn:
            default_visibility, dead_letter, max_receives, _ = self._queue(conn, queue)
            hide = default_visibility if visibility_s is None else visibility_s
            now = time.time()
            while len(got) < limit:
                rows = conn.execute(_READY, (queue, now, limit - len(got))).fetchall()
                if not rows:
                    break
                for rowid, body, receives, sent_at in rows:
                    if dead_letter and max_receives and receives >= max_receives:
                        conn.execute("UPDATE messages SET queue = ?, visible_at = ?, receives = 0, receipt = NULL "
                                     "WHERE id = ?", (dead_letter, now, rowid))
                        continue
                    receipt = uuid.uuid4().hex
                    conn.execute("UPDATE messages SET receives = receives + 1, receipt = ?, visible_at = ? "
                                 "WHERE id = ?", (receipt, now + hide, rowid))
                    got.append(Received(str(rowid), body, receipt, receives + 1, sent_at))
        return got

    def delete(self, queue: str, *receipts: str) -> None:
        """Delete the messages these receipts were handed out for, in one transaction (an outdated
        receipt: nothing)."""
        with self._write() as conn:
            conn.executemany("DELETE FROM messages WHERE queue = ? AND receipt = ?", [(queue, r) for r in receipts])

    def change_visibility(self, queue: str, receipt: str, visibility_s: float) -> None:
        """Make the received message visible again after `visibility_s` (0: at once)."""
        with self._write() as conn:
            conn.execute("UPDATE messages SET visible_at = ? WHERE queue = ? AND receipt = ?",
                         (time.time() + visibility_s, queue, receipt))
        if visibility_s <= 0:
            self._notify(queue)

    def redrive(self, dead_letter: str, queue: str, *, limit: int | None = None) -> int:
        """Move up to `limit` (all) messages from a dead-letter queue back to `queue`, oldest first,
        with their receive counts reset; how many moved."""
        with self._write() as conn:
            self._queue(conn, queue)
            moved = conn.execute(
                "UPDATE messages SET queue = ?, visible_at = ?, receives = 0, receipt = NULL WHERE id IN "
                "(SELECT id FROM messages WHERE queue = ? ORDER BY id LIMIT ?)",
                (queue, time.time(), dead_letter, -1 if limit is None else limit)).rowcount
        self._notify(queue)
        return moved

    def release_in_flight(self) -> int:
        """Make every received, undeleted message visible at once: for a start after a crash, when
        no consumer is left holding one (its visibility timeout would otherwise keep it hidden for
        as long as it says); delayed messages keep their delay. How many."""
        with self._write() as conn:
            released = conn.execute("UPDATE messages SET visible_at = ? WHERE receipt IS NOT NULL AND visible_at > ?",
                                    (time.time(), time.time())).rowcount
        self._notify()
        return released

    def bodies(self, queue: str) -> list[str]:
        """The body of every message in the queue, visible, in flight or delayed, oldest first."""
        return [r[0] for r in self._conn().execute("SELECT body FROM messages WHERE queue = ? ORDER BY id", (queue,))]

    def depth(self, queue: str) -> dict[str, int]:
        """How many messages are visible, and how many are in flight or delayed."""
        now = time.time()
        visible, hidden = self._conn().execute(
            "SELECT COALESCE(SUM(visible_at <= ?), 0), COALESCE(SUM(visible_at > ?), 0) FROM messages "
            "WHERE queue = ?", (now, now, queue)).fetchone()
        return {"visible": visible, "not_visible": hidden}


_shared: dict[str, EmbeddedQueues] = {}
_shared_lock = threading.Lock()


def shared_queues(path: str) -> EmbeddedQueues:
    """One EmbeddedQueues per file in a process, so that a send wakes a receive waiting in it."""
    with _shared_lock:
        if path not in _shared:
            _shared[path] = EmbeddedQueues(path)
        return _shared[path]


class EmbeddedQueue(TaskQueue):
    """The TaskQueue port on one of the local queues (what the services send to)."""

    def __init__(self, queues: EmbeddedQueues, name: str, label: str = "the queue"):
        self.queues = queues
        self.name = name
        self.label = label

    def send(self, message: dict) -> None:
        import json

        try:
            self.queues.send(self.name, json.dumps(message, separators=(",", ":")))
        except (MessageTooLarge, NotFound, sqlite3.Error) as exc:  # as SQS's refusals read through boto3
            raise UpstreamUnavailable(f"sending to {self.label} failed ({exc.__class__.__name__}: {exc})") from exc
