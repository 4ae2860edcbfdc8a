"""The messages on the processing queue, each of a declared kind: process one submitted asset,
or embed the stored chunks of documents sent together. A message is a small JSON object;
`webhook_base` is where a remote model's webhooks for it should go."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class ProcessAsset:
    """Extract, chunk and embed one submitted asset (or request its transcription)."""

    asset_id: str
    webhook_base: str | None = None
    kind = "process_asset"


@dataclasses.dataclass(frozen=True)
class EmbedDocuments:
    """Embed the already stored chunks of documents that one request sent, in one model call."""

    asset_ids: tuple[str, ...]
    webhook_base: str | None = None
    kind = "embed_documents"


Task = ProcessAsset | EmbedDocuments
_KINDS = {cls.kind: cls for cls in (ProcessAsset, EmbedDocuments)}


def to_message(task: Task) -> dict:
    fields = dataclasses.asdict(task)
    if isinstance(task, EmbedDocuments):
        fields["asset_ids"] = list(task.asset_ids)
    return {"kind": task.kind, **fields}


def from_message(message: object) -> Task:
    """The task a queued message asks for; ValueError (the message is retried, then dead-lettered
    where it can be read) for one of no known kind. A message queued before kinds were declared
    carries none: it is read by its fields, so a redriven old message still works."""
    if not isinstance(message, dict):
        raise ValueError("a processing message must be a JSON object")
    kind = message.get("kind") or ("embed_documents" if "asset_ids" in message else "process_asset")
    if kind not in _KINDS:
        raise ValueError(f"unknown processing message kind {kind!r}")
    base = message.get("webhook_base")
    if kind == "embed_documents":
        ids = message.get("asset_ids")
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise ValueError("an embed_documents message needs asset_ids, a list of asset ids")
        return EmbedDocuments(tuple(ids), base)
    if not isinstance(message.get("asset_id"), str):
        raise ValueError("a process_asset message needs an asset_id")
    return ProcessAsset(message["asset_id"], base)
