"""Builders for the AssetStore contract tests: assets with chosen times and statuses, hand-made
8-dimensional unit vectors, and the small per-backend surface the contract suite needs.

Every backend is driven only through the AssetStore port; the few places a backend needs
help (Atlas Vector Search indexes documents asynchronously) go through `Backend.settle`.
"""

from __future__ import annotations

import dataclasses
import math
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from allthethings.domain.assets import Asset, Chunk, Kind, Status
from allthethings.ports import AssetStore

DIMENSIONS = 8
EPOCH = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def unit(*weights: float) -> list[float]:
    """The unit vector pointing along `weights` (padded with zeros to DIMENSIONS)."""
    padded = [float(w) for w in weights] + [0.0] * (DIMENSIONS - len(weights))
    norm = math.sqrt(sum(w * w for w in padded))
    return [w / norm for w in padded]


def axis(i: int, tilt: float = 0.0) -> list[float]:
    """Basis vector `i`, tilted by `tilt` towards the last axis (so it is never all zeros elsewhere)."""
    weights = [0.0] * DIMENSIONS
    weights[i] = 1.0
    weights[DIMENSIONS - 1] += tilt
    return unit(*weights)


def make_asset(*, status: Status = Status.SUBMITTED, created_at: datetime | None = None,
               url: str | None = None, **fields) -> Asset:
    stamp = created_at or datetime.now(UTC)
    token = uuid.uuid4().hex
    return Asset(id=token, url=url or f"https://example.com/{token}", status=status, created_at=stamp,
                 updated_at=stamp, content_type="text/plain", kind=Kind.TEXT,
                 staged_key=f"staged/{token}", size_bytes=1234, **fields)


def make_chunks(asset_id: str, texts: Sequence[str], *, timed: bool = False) -> list[Chunk]:
    return [Chunk(asset_id=asset_id, index=i, text=t,
                  start_s=float(i * 10) if timed else None, end_s=float(i * 10 + 9.5) if timed else None)
            for i, t in enumerate(texts)]


def at(seconds: int) -> datetime:
    return EPOCH + timedelta(seconds=seconds)


def new_source() -> str:
    """A fresh source id (what domain/sources.py's check_source_id accepts)."""
    return "src_" + uuid.uuid4().hex


@dataclasses.dataclass
class Backend:
    """One AssetStore implementation under test, and what the contract suite must know about it."""

    name: str
    store: AssetStore
    can_search: bool = True
    # Blocks until a search would see every vector written so far (no-op where writes are visible at once).
    settle: Callable[[], None] = lambda: None


def replay_bulk_writes(collection):
    """A bulk_write for a mongomock collection that replays ReplaceOne/UpdateOne one by one.

    pymongo 4.20 hands `sort=` to the bulk builder, which mongomock 4.3's builder does not accept, so the
    real bulk_write fails inside mongomock before touching any document. Replaying the same operations
    through replace_one/update_one keeps the store's own code path (its operations, filters and upserts).
    """
    from pymongo import ReplaceOne, UpdateOne

    def bulk_write(requests, ordered=True, **_):
        for op in requests:
            if isinstance(op, ReplaceOne):
                collection.replace_one(op._filter, op._doc, upsert=bool(op._upsert))
            elif isinstance(op, UpdateOne):
                collection.update_one(op._filter, op._doc, upsert=bool(op._upsert))
            else:
                raise NotImplementedError(f"no mongomock replay for {type(op).__name__}")

    return bulk_write
