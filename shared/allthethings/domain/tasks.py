"""The messages on the queues, each of a declared kind: on the processing queue, process one
submitted asset, or embed the stored chunks of documents sent together; on the fetch queue,
fetch (or go on fetching) one asset's body; on the source queue, read a source, submit its
pending entries, or delete a deleted source's assets. A message is a small JSON object; `webhook_base` is
where a remote model's webhooks for it should go."""

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


@dataclasses.dataclass(frozen=True)
class FetchAsset:
    """Fetch a FETCHING asset's body into the staging bucket, from byte `offset` on.

    A fetch that runs out of its invocation's time hands over to the next with a message that
    carries where it got to: the multipart upload, the ETags of its parts (each `part_bytes`
    long, so `offset` is their sum), and the validators of the version being fetched, so the
    next one asks for the rest with a Range request and refuses another version of the body.
    `restarts` counts fetches begun again from zero (the body changed), `resumes` Range
    continuations after the origin stopped sending part-way."""

    asset_id: str
    webhook_base: str | None = None
    offset: int = 0
    upload_id: str | None = None
    etags: tuple[str, ...] = ()
    etag: str | None = None
    last_modified: str | None = None
    restarts: int = 0
    resumes: int = 0
    kind = "fetch_asset"


@dataclasses.dataclass(frozen=True)
class ReadSource:
    """Read a source (conditionally, with the validators of the last version read, unless
    `force`), remember the items it lists that are new, and submit them; with `retry`, the items
    refused before are submitted again too (a user's refresh)."""

    source_id: str
    webhook_base: str | None = None
    force: bool = False
    retry: bool = False
    kind = "read_source"


@dataclasses.dataclass(frozen=True)
class SubmitEntries:
    """Submit a source's PENDING entries (what a read that ran out of time left)."""

    source_id: str
    webhook_base: str | None = None
    kind = "submit_entries"


@dataclasses.dataclass(frozen=True)
class DeleteSourceAssets:
    """Delete the assets a deleted source brought (DELETE /api/sources/{id}?assets=true)."""

    source_id: str
    webhook_base: str | None = None
    kind = "delete_source_assets"


Task = ProcessAsset | EmbedDocuments | FetchAsset | ReadSource | SubmitEntries | DeleteSourceAssets
SourceTask = ReadSource | SubmitEntries | DeleteSourceAssets
_KINDS = {cls.kind: cls for cls in (ProcessAsset, EmbedDocuments, FetchAsset, ReadSource, SubmitEntries,
                                     DeleteSourceAssets)}


def to_message(task: Task) -> dict:
    fields = dataclasses.asdict(task)
    if isinstance(task, EmbedDocuments):
        fields["asset_ids"] = list(task.asset_ids)
    if isinstance(task, FetchAsset):
        fields["etags"] = list(task.etags)
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
    if kind == "fetch_asset":
        return _fetch_asset(message, base)
    if kind in ("read_source", "submit_entries", "delete_source_assets"):
        if not isinstance(message.get("source_id"), str):
            raise ValueError(f"a {kind} message needs a source_id")
        if kind == "read_source":
            return ReadSource(message["source_id"], base, force=message.get("force") is True,
                              retry=message.get("retry") is True)
        return _KINDS[kind](message["source_id"], base)
    if not isinstance(message.get("asset_id"), str):
        raise ValueError("a process_asset message needs an asset_id")
    return ProcessAsset(message["asset_id"], base)


def _fetch_asset(message: dict, base: str | None) -> FetchAsset:
    def text(name: str) -> str | None:
        value = message.get(name)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"a fetch_asset message's {name} must be a string")
        return value

    def count(name: str) -> int:
        value = message.get(name, 0)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"a fetch_asset message's {name} must be a count")
        return value

    etags = message.get("etags", [])
    if not isinstance(etags, list) or not all(isinstance(e, str) for e in etags):
        raise ValueError("a fetch_asset message's etags must be a list of strings")
    if not isinstance(message.get("asset_id"), str):
        raise ValueError("a fetch_asset message needs an asset_id")
    return FetchAsset(message["asset_id"], base, offset=count("offset"), upload_id=text("upload_id"),
                      etags=tuple(etags), etag=text("etag"), last_modified=text("last_modified"),
                      restarts=count("restarts"), resumes=count("resumes"))
