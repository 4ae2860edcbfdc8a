"""Which assets a listing shows: a filter every store applies in its own query, and its parsing
from query-string parameters (the JSON API's and the home page's, which share their names)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from allthethings.domain.assets import Asset, Kind, Status
from allthethings.domain.errors import InvalidInput
from allthethings.domain.sources import check_source_id

MAX_TEXT_CHARS = 200


@dataclasses.dataclass(frozen=True)
class AssetFilter:
    """An asset is listed when it matches every field that is set: its status is one of
    `statuses`, its kind one of `kinds`, `text` is a substring of its URL or title, compared
    without regard to case, and `source` is the id of the source that listed it. Characters in
    `text` are literal (no wildcards, no patterns)."""

    statuses: tuple[Status, ...] = ()
    kinds: tuple[Kind, ...] = ()
    text: str | None = None
    source: str | None = None

    @property
    def is_empty(self) -> bool:
        return not (self.statuses or self.kinds or self.text or self.source)

    @property
    def folded_text(self) -> str | None:
        """`text` as the stores compare it: lower-cased (URLs and titles are lower-cased too)."""
        return self.text.lower() if self.text else None

    def admits(self, asset: Asset) -> bool:
        """The rule itself, for a store that filters in memory (the unit tests' fake)."""
        folded = self.folded_text
        return ((not self.statuses or asset.status in self.statuses)
                and (not self.kinds or asset.kind in self.kinds)
                and (not self.source or asset.source_id == self.source)
                and (not folded or folded in asset.url.lower() or folded in (asset.title or "").lower()))


def _values(raw: str | None) -> list[str]:
    # API Gateway joins a repeated parameter's values with commas (a form's checkboxes).
    return [part.strip() for part in (raw or "").split(",") if part.strip()]


def parse_filter(params: Mapping[str, str]) -> AssetFilter:
    """`status`, `kind` (each comma-separated), `q` (the text) and `source` (a source id);
    InvalidInput names the parameter."""
    statuses: list[Status] = []
    for raw in _values(params.get("status")):
        try:
            statuses.append(Status(raw.upper()))
        except ValueError:
            raise InvalidInput(f"status must be among {', '.join(s.value for s in Status)} "
                               "(comma-separated)") from None
    kinds: list[Kind] = []
    for raw in _values(params.get("kind")):
        try:
            kinds.append(Kind(raw.lower()))
        except ValueError:
            raise InvalidInput(f"kind must be among {', '.join(k.value for k in Kind)} (comma-separated)") from None
    text = (params.get("q") or "").strip() or None
    if text and len(text) > MAX_TEXT_CHARS:
        raise InvalidInput(f"q must be at most {MAX_TEXT_CHARS} characters")
    if text and any(ord(ch) < 32 for ch in text):
        raise InvalidInput("q must not contain control characters")
    source = (params.get("source") or "").strip() or None
    if source:
        check_source_id(source)
    return AssetFilter(statuses=tuple(dict.fromkeys(statuses)), kinds=tuple(dict.fromkeys(kinds)), text=text,
                       source=source)
