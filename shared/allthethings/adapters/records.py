"""One mapping between an Asset and a stored record, and the search metadata of its chunks.

Every store writes the same fields (those of `Asset`, in its order) through `encode` and reads them
back through `decode`. What differs between stores is only how a value that is not a plain string
or number is written, and that is a `Dialect`: SQLite keeps times as ISO 8601 text and metadata as
JSON text, MongoDB keeps BSON dates (which come back naive unless the client is tz-aware) and a
document, and names the id `_id`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import NamedTuple

from allthethings.domain.assets import ITEM_FIELDS, Asset, Kind, Status

FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Asset))
_ENUMS: dict[str, type[Status] | type[Kind]] = {"status": Status, "kind": Kind}
_TIMES = frozenset({"created_at", "updated_at", "published_at"})
_DOCUMENTS = frozenset({"metadata", "transcript"})


def _same(value):
    return value


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@dataclasses.dataclass(frozen=True)
class Dialect:
    """How one store writes an asset's id, times and metadata document."""

    id_key: str
    time_out: Callable[[datetime], object]
    time_in: Callable[[object], datetime]
    document_out: Callable[[dict], object]
    document_in: Callable[[object], dict]

    def key(self, field: str) -> str:
        return self.id_key if field == "id" else field


SQL = Dialect("id", datetime.isoformat, datetime.fromisoformat, json.dumps, json.loads)
BSON = Dialect("_id", _same, _utc, _same, _same)


def encode_value(field: str, value, dialect: Dialect):
    if value is None:
        return None
    if field in _ENUMS:
        return _ENUMS[field](value).value  # an enum member or its value; anything else is a ValueError
    if field in _TIMES:
        return dialect.time_out(value)
    if field in _DOCUMENTS:
        return dialect.document_out(value)
    return value


def decode_value(field: str, raw, dialect: Dialect):
    if raw is None:
        return None
    if field in _ENUMS:
        return _ENUMS[field](raw)
    if field in _TIMES:
        return dialect.time_in(raw)
    if field in _DOCUMENTS:
        return dialect.document_in(raw)
    return raw


def encode(asset: Asset, dialect: Dialect) -> dict:
    """The whole asset as a record, keyed by the store's field names."""
    return encode_changes({f: getattr(asset, f) for f in FIELDS}, dialect)


def encode_changes(changes: Mapping[str, object], dialect: Dialect) -> dict:
    """Some of an asset's fields (a conditional update's `$set` or `SET`), keyed as in `encode`."""
    return {dialect.key(f): encode_value(f, v, dialect) for f, v in changes.items()}


def decode(record: Mapping, dialect: Dialect) -> Asset:
    """The asset a record holds; a field missing from the record (an older document) is None."""
    return Asset(**{f: decode_value(f, record.get(dialect.key(f)), dialect) for f in FIELDS})


class SearchMetadata(NamedTuple):
    """What rides on each searchable chunk so that search filters apply inside the search, before
    ranking: the asset's kind (its value, or None), its URL's host, its creation time, the source
    that listed it and the date that source gave it (each None for an asset of no source)."""

    kind: str | None
    host: str
    created_at: datetime
    source_id: str | None
    published_at: datetime | None


def search_metadata(asset: Asset) -> SearchMetadata:
    return SearchMetadata(asset.kind.value if asset.kind else None, asset.host, asset.created_at,
                          asset.source_id, asset.published_at)


# What `AssetStore.link_source` may set besides the source itself (a source's item's fields).
LINKED_FIELDS = ITEM_FIELDS - {"source_id"}  # the source itself is link_source's own argument


def linked_fields(item: Mapping[str, object]) -> dict:
    """The item's fields for `link_source`, checked: ValueError names any it may not set."""
    unknown = set(item) - LINKED_FIELDS
    if unknown:
        raise ValueError(f"unknown item fields {sorted(unknown)}")
    return dict(item)
