"""A SourceStore in memory, for unit tests of the source services (no disk, no network).

It runs under the same contract suite as the real stores (tests/integration/test_source_store.py),
so a fake that drifts from them turns that suite red.
"""

from __future__ import annotations

import copy
import dataclasses
import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from allthethings.adapters.source_store import changes_of, finished, first_listed
from allthethings.domain import cursor as cursors
from allthethings.domain.errors import InvalidInput
from allthethings.domain.sources import Entry, EntryState, Source
from allthethings.ports import SourceStore


class FakeSourceStore(SourceStore):
    """Sources and entries in dicts; what goes in and comes out is a copy, as from a database.
    Tests may read and change `sources` (by id) and `entry_rows` (by source id, then URL, in the
    order first listed) directly."""

    def __init__(self):
        self.sources: dict[str, Source] = {}
        self.entry_rows: dict[str, dict[str, Entry]] = {}
        self._lock = threading.RLock()

    # -- sources -----------------------------------------------------------------------------
    def add(self, source: Source) -> Source:
        with self._lock:
            known = self.get_by_url(source.url)
            if known is not None:
                return known
            self.sources[source.id] = _stored(source)
            return source

    def get(self, source_id: str) -> Source | None:
        with self._lock:
            return copy.deepcopy(self.sources.get(source_id))

    def get_by_url(self, url: str) -> Source | None:
        with self._lock:
            return next((copy.deepcopy(s) for s in self.sources.values() if s.url == url), None)

    def list(self, limit: int, cursor: str | None) -> tuple[list[Source], str | None]:
        with self._lock:
            newest = sorted(self.sources.values(), key=lambda s: (s.created_at, s.id), reverse=True)
        if cursor:
            pos = cursors.decode(cursor, "t", "id")
            try:
                after = (datetime.fromisoformat(pos["t"]).astimezone(UTC), str(pos["id"]))
            except (TypeError, ValueError):
                raise InvalidInput("cursor is not valid: pass back the next_cursor of a previous page") from None
            newest = [s for s in newest if (s.created_at, s.id) < after]
        page = [copy.deepcopy(s) for s in newest[:limit]]
        more = len(newest) > limit
        return page, (cursors.encode({"t": page[-1].created_at.astimezone(UTC).isoformat(), "id": page[-1].id})
                      if more else None)

    def update(self, source_id: str, **fields) -> bool:
        changes = changes_of(fields)
        with self._lock:
            source = self.sources.get(source_id)
            if source is None:
                return False
            self.sources[source_id] = _stored(dataclasses.replace(source, **changes))
            return True

    def claim_due(self, at: datetime, limit: int) -> list[Source]:
        with self._lock:
            due = sorted((s for s in self.sources.values() if s.next_refresh_at is not None
                          and s.next_refresh_at <= at), key=lambda s: (s.next_refresh_at, s.id))[:max(limit, 0)]
            claimed = [copy.deepcopy(s) for s in due]
            for source in due:
                source.next_refresh_at = at + timedelta(seconds=source.interval_s)
            return claimed

    def delete(self, source_id: str) -> None:
        with self._lock:
            self.sources.pop(source_id, None)
            self.entry_rows.pop(source_id, None)

    # -- entries -----------------------------------------------------------------------------
    def add_entries(self, entries: Sequence[Entry]) -> int:
        new = 0
        with self._lock:
            for source_id, by_url in first_listed(entries).items():
                if source_id not in self.sources:
                    continue  # as the real stores: entries of a deleted source are dropped
                rows = self.entry_rows.setdefault(source_id, {})
                for url, entry in by_url.items():
                    if url not in rows:
                        rows[url] = _stored(entry)
                        new += 1
        return new

    def entries(self, source_id: str, state: EntryState | None, limit: int) -> list[Entry]:
        with self._lock:
            rows = [e for e in self.entry_rows.get(source_id, {}).values() if state is None or e.state is state]
            return [copy.deepcopy(e) for e in rows[:max(limit, 0)]]

    def finish_entry(self, source_id: str, url: str, state: EntryState, *, asset_id: str | None = None,
                     reason: str | None = None) -> None:
        state = finished(state)
        with self._lock:
            entry = self.entry_rows.get(source_id, {}).get(url)
            if entry is not None and entry.state is EntryState.PENDING:
                entry.state, entry.asset_id, entry.reason = state, asset_id, reason

    def retry_refused(self, source_id: str) -> int:
        count = 0
        with self._lock:
            for entry in self.entry_rows.get(source_id, {}).values():
                if entry.state is EntryState.REFUSED:
                    entry.state, entry.reason, count = EntryState.PENDING, None, count + 1
        return count

    def entry_counts(self, source_id: str) -> dict[EntryState, int]:
        counts: dict[EntryState, int] = {}
        with self._lock:
            for entry in self.entry_rows.get(source_id, {}).values():
                counts[entry.state] = counts.get(entry.state, 0) + 1
        return counts


def _stored(record):
    """A copy of a source or an entry as a database gives it back: its times aware, in UTC."""
    return dataclasses.replace(copy.deepcopy(record), **{
        f.name: value.astimezone(UTC) for f in dataclasses.fields(record)
        if isinstance(value := getattr(record, f.name), datetime)})
