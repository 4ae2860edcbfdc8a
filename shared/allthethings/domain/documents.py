"""Documents: text a caller already has, indexed without a URL. Pure rules, no I/O.

A document is `{"id"?, "title"?, "text", "metadata"?}`. Its id is the caller's (a row key, a
file path) or, when absent, derived from its content, so that sending the same document twice
is a no-op either way. Each document is one asset whose URL is `document:<id>`: the store's
unique URL is what makes ingestion idempotent.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from urllib.parse import quote, unquote

from allthethings.domain.errors import InvalidInput

MAX_ID_CHARS = 256
MAX_TITLE_CHARS = 1000
MAX_METADATA_BYTES = 16 * 1024
# Metadata is a caller's record of a document, not a data structure: a few levels and keys are
# plenty, and a deeper one breaks JSON serializers downstream (pydantic's stops at 255 levels).
MAX_METADATA_DEPTH = 8
MAX_METADATA_KEYS = 256
_FIELDS = frozenset({"id", "title", "text", "metadata"})
SCHEME = "document:"


@dataclasses.dataclass(frozen=True)
class Document:
    id: str
    text: str
    title: str | None = None
    metadata: dict | None = None

    @property
    def url(self) -> str:
        return SCHEME + quote(self.id, safe="")

    @property
    def digest(self) -> str:
        """What decides whether a document sent again has changed: its title, text and metadata."""
        return content_digest(self.title, self.text, self.metadata)


def document_id(url: str) -> str | None:
    """The caller's id of a document, from its asset's URL (`document:<id>`); None for a web URL."""
    return unquote(url[len(SCHEME):]) if url.startswith(SCHEME) else None


def content_digest(title: str | None, text: str, metadata: dict | None) -> str:
    # "document" first: never equal to the SHA-256 of a fetched body, which would share its chunks.
    payload = json.dumps(["document", title, text, metadata], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def metadata_problem(metadata: object) -> str | None:
    """Why `metadata` cannot be kept and shown (too deep, too many keys), else None. Walked
    without recursion, so any input is safe to check."""
    keys, pending = 0, [(metadata, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, Mapping | list):
            if depth > MAX_METADATA_DEPTH:
                return f"is nested deeper than {MAX_METADATA_DEPTH} levels"
            if isinstance(value, Mapping):
                keys += len(value)
                if keys > MAX_METADATA_KEYS:
                    return f"has more than {MAX_METADATA_KEYS} keys"
                pending.extend((v, depth + 1) for v in value.values())
            else:
                pending.extend((v, depth + 1) for v in value)
    return None


def shown_metadata(metadata: dict | None) -> dict | None:
    """Metadata as the API shows it. A record stored before the limits above (or written by
    hand) that breaks them is shown as a note instead, so that it cannot break a page of others."""
    if metadata is None or metadata_problem(metadata) is None:
        return metadata
    return {"unshown": f"this metadata {metadata_problem(metadata)}; send the document again to replace it"}


def parse_document(raw: object, max_chars: int, where: str = "document") -> Document:
    """One document, checked field by field; InvalidInput says which field of which document."""
    if not isinstance(raw, Mapping):
        raise InvalidInput(f"{where} must be an object with a text")
    unknown = sorted(set(raw) - _FIELDS)
    if unknown:
        raise InvalidInput(f"{where}.{unknown[0]} is not a document field (id, title, text, metadata)")
    text = raw.get("text")
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput(f"{where}.text must be a non-empty string")
    if len(text) > max_chars:
        raise InvalidInput(f"{where}.text is {len(text)} characters; at most {max_chars} are accepted")
    title = raw.get("title")
    if title is not None and (not isinstance(title, str) or len(title) > MAX_TITLE_CHARS):
        raise InvalidInput(f"{where}.title must be a string of at most {MAX_TITLE_CHARS} characters")
    metadata = raw.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, Mapping):
            raise InvalidInput(f"{where}.metadata must be an object")
        problem = metadata_problem(metadata)
        if problem:
            raise InvalidInput(f"{where}.metadata {problem}")
        if len(json.dumps(metadata, ensure_ascii=False).encode("utf-8")) > MAX_METADATA_BYTES:
            raise InvalidInput(f"{where}.metadata is larger than {MAX_METADATA_BYTES // 1024} KiB as JSON")
        metadata = dict(metadata)
    doc_id = raw.get("id")
    if doc_id is None:
        doc_id = "sha256:" + content_digest(title, text, metadata)[:32]
    elif isinstance(doc_id, int) and not isinstance(doc_id, bool):
        doc_id = str(doc_id)  # a database row's key, as JSON exports write it
    elif not isinstance(doc_id, str) or not doc_id.strip() or len(doc_id) > MAX_ID_CHARS \
            or any(ord(ch) < 32 for ch in doc_id):
        raise InvalidInput(f"{where}.id must be a string of 1 to {MAX_ID_CHARS} printable characters")
    return Document(id=doc_id, text=text, title=title, metadata=metadata)


def parse_batch(body: object, max_documents: int, max_chars: int) -> list[Document]:
    """`{"documents": [...]}`: all valid, ids unique, at most `max_documents` (else InvalidInput
    naming every document at fault, so one round trip fixes them all)."""
    if not isinstance(body, Mapping) or not isinstance(body.get("documents"), list):
        raise InvalidInput('the body must be {"documents": [{"id"?, "title"?, "text", "metadata"?}, ...]}')
    unknown = sorted(set(body) - {"documents"})
    if unknown:
        raise InvalidInput(f"{unknown[0]} is not a field of the request (only documents)")
    raw = body["documents"]
    if not raw:
        raise InvalidInput("documents must not be empty")
    if len(raw) > max_documents:
        raise InvalidInput(f"documents has {len(raw)} items; at most {max_documents} are accepted per request")
    documents, problems, seen = [], [], {}
    for i, item in enumerate(raw):
        try:
            doc = parse_document(item, max_chars, f"documents[{i}]")
        except InvalidInput as exc:
            problems.append(exc.message)
            continue
        if doc.id in seen:
            problems.append(f"documents[{i}].id {doc.id!r} repeats documents[{seen[doc.id]}]")
            continue
        seen[doc.id] = i
        documents.append(doc)
    if problems:
        more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
        raise InvalidInput("; ".join(problems[:10]) + more)
    return documents
