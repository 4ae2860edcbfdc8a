"""The API's description (OpenAPI 3.1), served at /api/openapi.json, and its Swagger UI page.

Written out rather than generated: the functions are separate Lambdas, so no one resolver
knows every route, and the parameters are parsed by the services (to name the parameter at
fault in a 400). A test holds it to the template's routes and to what the handlers answer.
"""

from __future__ import annotations

import json
from functools import cache

from allthethings.domain.assets import Kind, Status
from allthethings.domain.documents import MAX_TITLE_CHARS
from allthethings.domain.listing import MAX_TEXT_CHARS
from allthethings.domain.sources import MAX_INTERVAL_S, MIN_INTERVAL_S, EntryState, SourceKind
from allthethings.services.assets import MAX_PAGE
from allthethings.services.search import MAX_LIMIT, MAX_QUERY_CHARS

VERSION = "1.0.0"


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int, why: dict[int, str] | None = None) -> dict:
    """The error responses of an operation; `why` words some of them for it (a source's, not an asset's)."""
    why = {400: "The request is not valid; the message names the problem.", 401: "The signature is missing or wrong.",
           403: "No valid API key (API Gateway's answer).", 404: "No such asset.",
           409: "The asset is not in a state that allows this.", 413: "The body is larger than allowed.",
           415: "The content type cannot be indexed.", 422: "The URL cannot be fetched or holds no text.",
           503: "A dependency is unavailable; try again.", **(why or {})}
    out = {}
    for status in statuses:
        schema = {"type": "object", "properties": {"message": {"type": "string"}}} if status == 403 else _ref("Error")
        out[str(status)] = _json(schema, why[status])
    return out


def _openai_errors(*statuses: int) -> dict:
    why = {400: "A parameter is not valid; `param` names it.", 401: "No valid API key (code invalid_api_key).",
           404: "The model is not served here (code model_not_found).", 503: "The model is unavailable; try again."}
    return {str(s): _json(_ref("OpenAIError"), why[s]) for s in statuses}


_ASSET_ID = {"name": "id", "in": "path", "required": True, "description": "The asset's id.",
             "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"}}
_SOURCE_ID_SCHEMA = {"type": "string", "pattern": "^src_[0-9a-f]{32}$",
                     "examples": ["src_9d4e2a7c1b8f4e06a3c5d7b9e1f20468"]}
_SOURCE_ID = {"name": "id", "in": "path", "required": True, "description": "The source's id.",
              "schema": _SOURCE_ID_SCHEMA}
_SOURCE_ERRORS = {404: "No such source.", 413: "The feed or sitemap is larger than allowed.",
                  415: "The URL is no feed or sitemap (nor a page that links one).",
                  422: "The URL cannot be fetched."}
_KEYED = [{"apiKey": []}, {"bearer": []}]
# A date is midnight UTC; an instant without an offset is read as UTC.
_INSTANT = {"type": "string", "anyOf": [{"format": "date"}, {"format": "date-time"}],
            "examples": ["2026-11-21", "2026-11-21T08:00:00Z"]}


KINDS_DESCRIPTION = ("Only these kinds, comma-separated: " + ", ".join(k.value for k in Kind) + ". image: PNG, "
                     "JPEG, WebP, GIF, TIFF, BMP, HEIC; document: DOCX, ODT, RTF; presentation: PPTX, ODP; "
                     "spreadsheet: XLSX, ODS; ebook: EPUB; text: plain text, Markdown, reStructuredText, CSV, JSON.")


def _schemas() -> dict:
    nullable_string = {"type": ["string", "null"]}
    return {
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {
            "type": "object", "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"},
                           "request_id": {"type": "string"}}}}},
        "Asset": {"type": "object", "required": ["id", "url", "status", "created_at", "updated_at"], "properties": {
            "id": {"type": "string"}, "url": {"type": "string"},
            "status": {"type": "string", "enum": [s.value for s in Status]},
            "content_type": nullable_string,
            "kind": {"type": ["string", "null"], "enum": [*(k.value for k in Kind), None]},
            "title": nullable_string, "size_bytes": {"type": ["integer", "null"]},
            "chunk_count": {"type": ["integer", "null"]}, "sha256": nullable_string,
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
            "metadata": {"type": "object", "description": "A document's own fields, as ingested."},
            "fetched_bytes": {"type": "integer", "description": (
                "While FETCHING: how many bytes of the body are staged so far (size_bytes is the whole, "
                "when the origin declared it).")},
            "embedded_chunks": {"type": "integer", "description": (
                "While GENERATING_EMBEDDINGS in groups: how many of chunk_count chunks have their vectors.")},
            "thumbnail_url": {"type": "string", "description": (
                "An image's thumbnail (a small JPEG staged beside it): GET it with the API key; it redirects "
                "to a short-lived URL.")},
            "source_id": {"type": "string", "description": (
                "The source (GET /api/sources/{id}) whose feed or sitemap listed the asset; absent for a URL "
                "submitted on its own.")},
            "published_at": {"type": "string", "format": "date-time", "description": (
                "The item's publication date, as its source gave it (a feed's date, a sitemap's lastmod).")},
            "author": {"type": "string", "description": "The item's author, as its feed gave it."},
            "description": {"type": "string", "description": "The item's summary, as plain text."},
            "transcript": {"type": "object", "required": ["url", "type"], "description": (
                "A podcast episode's transcript, as its feed links it (`podcast:transcript`); read instead "
                "of transcribing the recording."), "properties": {
                    "url": {"type": "string"}, "type": {"type": "string", "examples": ["text/vtt"]},
                    "language": {"type": "string"}, "rel": {"type": "string"}}},
            "error": {"type": "string", "description": "Why the asset failed (error statuses only)."}}},
        "AssetPage": {"type": "object", "required": ["assets", "next_cursor"], "properties": {
            "assets": {"type": "array", "items": _ref("Asset")}, "next_cursor": nullable_string}},
        "Submission": {"type": "object", "required": ["url"], "additionalProperties": False, "properties": {
            "url": {"type": "string", "description": "An http or https URL on the public internet."}}},
        "SearchResult": {"type": "object", "required": ["asset", "score", "snippet", "highlights"], "properties": {
            "asset": {"type": "object", "properties": {
                "id": {"type": "string"}, "url": {"type": "string"}, "content_type": nullable_string,
                "kind": nullable_string, "title": nullable_string,
                "created_at": {"type": "string", "format": "date-time"}, "metadata": {"type": "object"},
                "thumbnail_url": {"type": "string"},
                "source_id": {"type": "string", "description": "The source (feed or sitemap) that listed it."},
                "published_at": {"type": "string", "format": "date-time",
                                 "description": "The date its source gave it (a feed's pubDate, a sitemap's lastmod)."},
                "author": {"type": "string"}}},
            "score": {"type": "number", "description": "Orders the results; in hybrid mode a reciprocal rank "
                                                      "score, not a measure of relevance (see relevance)."},
            "snippet": {"type": "string"},
            "highlights": {"type": "array", "items": {"type": "array", "items": {"type": "integer"},
                                                      "minItems": 2, "maxItems": 2}},
            "relevance": {"type": "object", "required": ["level", "similarity", "keyword"], "description": (
                "How well the result matches: level strong, good or weak, from the best chunk's cosine similarity "
                "to the query (null when no vector search found it) and whether it holds the query's words. "
                "Absent when the model's similarities are not calibrated and no word matched."), "properties": {
                    "level": {"type": "string", "enum": ["strong", "good", "weak"]},
                    "similarity": {"type": ["number", "null"]}, "keyword": {"type": "boolean"}}},
            "start_s": {"type": "number"}, "end_s": {"type": "number"},
            "location": _ref("Location")}},
        "Location": {"type": "object", "additionalProperties": False, "description": (
            "Where in its document the snippet is: a PDF's page (the UI links url#page=N), a presentation's "
            "slide, a spreadsheet's sheet, or a section: a heading path (`Part 2 › Safety`) in a DOCX, ODT or "
            "Markdown file, an e-book's chapter, or which part of an image the text is (its description, with "
            "where that came from, or the text visible in it). Numbers count from 1."), "properties": {
                "page": {"type": "integer", "minimum": 1}, "slide": {"type": "integer", "minimum": 1},
                "sheet": {"type": "string"}, "section": {"type": "string"}}},
        "SearchPage": {"type": "object", "required": ["results", "next_cursor"], "properties": {
            "results": {"type": "array", "items": _ref("SearchResult")}, "next_cursor": nullable_string}},
        "Document": {"type": "object", "required": ["text"], "additionalProperties": False, "properties": {
            "id": {"type": ["string", "integer", "null"], "description": "Your id (idempotency key); absent or "
                                                                         "null: one made from the content."},
            "title": {"type": ["string", "null"], "maxLength": MAX_TITLE_CHARS},
            "text": {"type": "string", "minLength": 1},
            "metadata": {"type": ["object", "null"],
                         "description": "Returned with every search result of the document."}}},
        "DocumentBatch": {"type": "object", "required": ["documents"], "additionalProperties": False, "properties": {
            "documents": {"type": "array", "minItems": 1, "items": _ref("Document")}}},
        "DocumentResults": {"type": "object", "required": ["documents"], "properties": {"documents": {
            "type": "array", "items": {"type": "object", "required": ["id", "asset_id", "status", "result"],
                                       "properties": {
                "id": {"type": "string"}, "asset_id": {"type": "string"},
                "status": {"type": "string", "enum": [s.value for s in Status]},
                "result": {"type": "string", "enum": ["created", "updated", "unchanged"]}}}}}},
        "EmbeddingRequest": {"type": "object", "required": ["input", "model"], "additionalProperties": False,
                             "properties": {
            "input": {"anyOf": [{"type": "string", "minLength": 1},
                                {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}}]},
            "model": {"type": "string", "description": "A model GET /v1/models lists."},
            "dimensions": {"type": ["integer", "null"], "minimum": 1,
                           "description": "Shorter vectors, for models that support them."},
            "encoding_format": {"type": ["string", "null"], "enum": ["float", "base64", None]},
            "user": {"type": "string"}}},
        "EmbeddingList": {"type": "object", "required": ["object", "data", "model", "usage"], "properties": {
            "object": {"const": "list"}, "model": {"type": "string"},
            "data": {"type": "array", "items": {"type": "object", "required": ["object", "index", "embedding"],
                                                "properties": {
                "object": {"const": "embedding"}, "index": {"type": "integer"},
                "embedding": {"anyOf": [{"type": "array", "items": {"type": "number"}}, {"type": "string"}]}}}},
            "usage": {"type": "object", "required": ["prompt_tokens", "total_tokens"], "properties": {
                "prompt_tokens": {"type": ["integer", "null"]}, "total_tokens": {"type": ["integer", "null"]}}}}},
        "Model": {"type": "object", "required": ["id", "object", "dimensions", "max_input_tokens"], "properties": {
            "id": {"type": "string"}, "object": {"const": "model"}, "created": {"type": "integer"},
            "owned_by": {"type": "string"}, "dimensions": {"type": "integer"},
            "max_input_tokens": {"type": "integer"}, "shortenable": {"type": "boolean"}}},
        "ModelList": {"type": "object", "required": ["object", "data"], "properties": {
            "object": {"const": "list"}, "data": {"type": "array", "items": _ref("Model")}}},
        "OpenAIError": {"type": "object", "required": ["error"], "properties": {"error": {
            "type": "object", "required": ["message", "type"], "properties": {
                "message": {"type": "string"}, "type": {"type": "string"}, "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]}}}}},
        "Accepted": {"type": "object", "required": ["id", "accepted"],
                     "properties": {"id": {"type": "string"}, "accepted": {"type": "boolean"}}},
        "NewSource": {"type": "object", "required": ["url"], "additionalProperties": False, "properties": {
            "url": {"type": "string", "description": (
                "An http or https URL on the public internet: an RSS or Atom feed (a podcast's included), a "
                "sitemap, a sitemap index, or a page that links its feed."),
                "examples": ["https://blog.python.org/feeds/posts/default"]},
            "refresh_interval_s": {"type": ["integer", "null"], "minimum": MIN_INTERVAL_S,
                                   "maximum": MAX_INTERVAL_S,
                                   "description": "Seconds between two reads (null or absent: the default)."}}},
        "Source": {"type": "object", "required": [
            "id", "url", "feed_url", "kind", "title", "refresh_interval_s", "created_at", "last_refresh_at",
            "next_refresh_at", "last_error", "items", "assets", "searchable", "refused"], "properties": {
            "id": _SOURCE_ID_SCHEMA, "url": {"type": "string", "description": "As added, normalised."},
            "feed_url": {"type": "string", "description": "What is read: url, or the feed the page at url links."},
            "kind": {"type": "string", "enum": [k.value for k in SourceKind]},
            "title": nullable_string, "refresh_interval_s": {"type": "integer"},
            "created_at": {"type": "string", "format": "date-time"},
            "last_refresh_at": {"type": ["string", "null"], "format": "date-time"},
            "next_refresh_at": {"type": ["string", "null"], "format": "date-time"},
            "last_error": {"type": ["string", "null"], "description": (
                "Why the last read failed (the feed gone or invalid); the source's assets are kept.")},
            "skipped": {"type": "object", "additionalProperties": {"type": "integer"}, "description": (
                "Items the last read left out, by reason: no_url, duplicate, over_limit, bad_url; for a sitemap "
                "index also loop, unreadable_sitemap and disallowed_sitemap (robots.txt).")},
            "items": {"type": "object", "required": ["total", *(s.value.lower() for s in EntryState)],
                      "description": "The items the source has listed, by state: pending (not yet submitted), "
                                     "submitted (an asset), refused (see refused).",
                      "properties": {"total": {"type": "integer"},
                                     **{s.value.lower(): {"type": "integer"} for s in EntryState}}},
            "assets": {"type": "object", "additionalProperties": {"type": "integer"},
                       "propertyNames": {"enum": [s.value for s in Status]},
                       "description": "The source's assets by status (statuses with none left out)."},
            "searchable": {"type": "integer", "description": "How many of its assets are SEARCHABLE."},
            "item_count": {"type": "integer", "description": "How many items it has listed (items.total)."},
            "refused": {"type": "array", "items": _ref("SourceItem"),
                        "description": "The first items the submission refused, with why."}}},
        "SourceItem": {"type": "object", "required": ["url", "state", "title", "published_at"], "properties": {
            "url": {"type": "string"}, "state": {"type": "string", "enum": [s.value for s in EntryState]},
            "title": nullable_string, "published_at": {"type": ["string", "null"], "format": "date-time"},
            "asset_id": {"type": "string"},
            "reason": {"type": "string", "description": "Why it was refused (a private address, an unreachable "
                                                        "URL, a type that cannot be indexed, robots.txt)."}}},
        "SourcePage": {"type": "object", "required": ["sources", "next_cursor"], "properties": {
            "sources": {"type": "array", "items": _ref("Source")}, "next_cursor": nullable_string}},
        "DeletingSource": {"type": "object", "required": ["id", "deleting_assets"], "properties": {
            "id": _SOURCE_ID_SCHEMA, "deleting_assets": {"const": True}}},
    }


def _query(name: str, description: str, schema: dict) -> dict:
    # The services read an optional parameter sent empty (`?limit=`, as a form sends a blank field) as absent.
    return {"name": name, "in": "query", "required": False, "allowEmptyValue": True, "description": description,
            "schema": schema}


def _paths(search_keyed: bool) -> dict:
    webhook_headers = [{"name": h, "in": "header", "required": False, "schema": {"type": "string"}}
                       for h in ("webhook-id", "webhook-timestamp", "webhook-signature", "x-hookdeck-signature")]
    webhook = {"tags": ["webhooks"], "security": [], "parameters": [_ASSET_ID, *webhook_headers],
               "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}},
               "responses": {"202": _json(_ref("Accepted"), "Queued; the asset moves on shortly."),
                             **_errors(400, 401, 404, 503),
                             "409": _json(_ref("Error"), "The delivery is not this asset's prediction (another "
                                                         "asset's, or not a transcription of a recording).")}}
    return {
        "/api/health": {"get": {"summary": "Liveness", "tags": ["service"], "security": [], "responses": {
            "200": _json({"type": "object", "properties": {"status": {"const": "ok"}}}, "The API answers.")}}},
        "/api/assets": {
            "post": {"summary": "Index a URL", "tags": ["assets"], "description": (
                "Opens the URL (public addresses only) and answers within seconds whatever the body's size: "
                "an unreachable URL, an HTTP error (422), a type that cannot be indexed (415) or a declared "
                "size over the limit (413) is refused at once. A body that arrives within about a second is "
                "staged now (status SUBMITTED); a larger or slower one is fetched behind the queue (status "
                "FETCHING, with fetched_bytes and size_bytes showing progress; a body too large for one "
                "invocation continues with HTTP Range requests). A URL already known answers 200 with its "
                "asset; bytes already indexed under another URL are reused."),
                "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("Submission")}}},
                "responses": {"202": _json(_ref("Asset"), "A new asset, queued (SUBMITTED or FETCHING)."),
                              "200": _json(_ref("Asset"), "The asset this URL already has."),
                              **_errors(400, 403, 413, 415, 422, 503)}},
            "get": {"summary": "List assets, newest first", "tags": ["assets"], "parameters": [
                _query("limit", f"Page size, 1 to {MAX_PAGE} (20).", {"type": "integer", "minimum": 1,
                                                                       "maximum": MAX_PAGE}),
                _query("cursor", "The next_cursor of the previous page (with the same filters).",
                       {"type": "string"}),
                _query("status", "Only assets in these statuses, comma-separated.",
                       {"type": "string", "examples": ["SEARCHABLE", "PROCESSING_ERROR,EMBEDDINGS_ERROR"]}),
                _query("kind", KINDS_DESCRIPTION, {"type": "string", "examples": ["pdf,html"]}),
                _query("q", "Only assets whose URL or title holds this text (case-insensitive, taken literally; "
                            "a document's URL is document:<id>).",
                       {"type": "string", "maxLength": MAX_TEXT_CHARS}),
                _query("source", "Only the assets this source listed (its id).", _SOURCE_ID_SCHEMA)],
                "responses": {"200": _json(_ref("AssetPage"), "A page of assets."), **_errors(400, 403)}}},
        "/api/assets/{id}": {
            "get": {"summary": "One asset", "tags": ["assets"], "parameters": [_ASSET_ID],
                    "responses": {"200": _json(_ref("Asset"), "The asset."), **_errors(400, 403, 404)}},
            "delete": {"summary": "Delete an asset, its chunks and its staged body", "tags": ["assets"],
                       "parameters": [_ASSET_ID],
                       "responses": {"204": {"description": "Deleted."}, **_errors(400, 403, 404)}}},
        "/api/assets/{id}/thumbnail": {"get": {
            "summary": "An image's thumbnail", "tags": ["assets"], "parameters": [_ASSET_ID],
            "description": "A redirect to a short-lived URL of the staged thumbnail (a JPEG of at most 320 px).",
            "responses": {"302": {"description": "The thumbnail is at the `Location` URL.", "headers": {
                "Location": {"schema": {"type": "string"}}}}, **_errors(400, 403, 404)}}},
        "/api/assets/{id}/retry": {"post": {
            "summary": "Retry a failed asset from the step that failed", "tags": ["assets"],
            "description": ("A failed processing starts from a fresh fetch of the URL (except a recording whose "
                            "staged body is kept: it is transcribed again); failed embeddings are computed again "
                            "from the stored chunks. `refetch: true` fetches the URL again in any case. Sending "
                            "a failed asset's URL to POST /api/assets again is the same as a retry with refetch."),
            "parameters": [_ASSET_ID],
            "requestBody": {"required": False, "content": {"application/json": {"schema": {
                "type": "object", "additionalProperties": False,
                "properties": {"refetch": {"type": "boolean", "default": False}}}}}},
            "responses": {"202": _json(_ref("Asset"), "Queued again."),
                          **_errors(400, 403, 404, 409, 422, 503)}}},
        "/api/search": {"get": {
            "summary": "Search by meaning, by words, or both", "tags": ["search"],
            **({} if search_keyed else {"security": []}),
            "parameters": [
                {"name": "q", "in": "query", "required": True,
                 "description": f"The query, 1 to {MAX_QUERY_CHARS} characters.",
                 "schema": {"type": "string", "minLength": 1, "maxLength": MAX_QUERY_CHARS}},
                _query("mode", "hybrid (default), vector or keyword.",
                       {"type": "string", "enum": ["hybrid", "vector", "keyword"]}),
                _query("kind", KINDS_DESCRIPTION, {"type": "string", "examples": ["pdf,document,image"]}),
                _query("host", "Only assets from this host.", {"type": "string", "examples": ["en.wikipedia.org"]}),
                _query("after", "Only assets submitted after this date or instant (ISO 8601).", _INSTANT),
                _query("before", "Only assets submitted before this date or instant (ISO 8601).", _INSTANT),
                _query("source", "Only the assets this source listed (its id).", _SOURCE_ID_SCHEMA),
                _query("published_after", "Only items published at or after this date or instant (ISO 8601): "
                                          "an asset a source listed with its date; one without a date is left "
                                          "out.", _INSTANT),
                _query("published_before", "Only items published before this date or instant (ISO 8601); one "
                                           "without a date is left out.", _INSTANT),
                _query("limit", f"Results per page, 1 to {MAX_LIMIT} (10).",
                       {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}),
                _query("cursor", "The next_cursor of the previous page.", {"type": "string"})],
            "responses": {"200": _json(_ref("SearchPage"), "One result per asset, best first."),
                          **_errors(400, *((403,) if search_keyed else ()))}}},
        "/api/sources": {
            "post": {"summary": "Follow a feed or a sitemap", "tags": ["sources"], "description": (
                "Reads the URL now (public addresses only, the same size and type rules as an asset): a URL "
                "that is not one (400), cannot be fetched (422), is no feed or sitemap (415) or is too large "
                "(413) is refused at once. The items it lists (a podcast episode's recording, a post's link, a "
                "sitemap's pages) are submitted as assets behind the queue, politely, each carrying the "
                "source's id and the item's date, author and summary; an item whose URL is already indexed is "
                "not fetched again. The source is read again every refresh_interval_s (a conditional GET: an "
                "unchanged feed costs one request), and only new items are submitted. A URL already added "
                "answers 200 with its source."),
                "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("NewSource")}}},
                "responses": {"202": _json(_ref("Source"), "A new source; its items are being submitted."),
                              "200": _json(_ref("Source"), "The source this URL already is."),
                              **_errors(400, 403, 413, 415, 422, 503, why=_SOURCE_ERRORS)}},
            "get": {"summary": "List sources, newest first", "tags": ["sources"], "parameters": [
                _query("limit", f"Page size, 1 to {MAX_PAGE} (20).", {"type": "integer", "minimum": 1,
                                                                       "maximum": MAX_PAGE}),
                _query("cursor", "The next_cursor of the previous page.", {"type": "string"})],
                "responses": {"200": _json(_ref("SourcePage"), "A page of sources, each with its progress."),
                              **_errors(400, 403, why=_SOURCE_ERRORS)}}},
        "/api/sources/{id}": {
            "get": {"summary": "One source and its progress", "tags": ["sources"], "parameters": [_SOURCE_ID],
                    "description": "Its items by state, its assets by status, its last and next read, why the "
                                   "last read failed, and the first refused items with their reasons.",
                    "responses": {"200": _json(_ref("Source"), "The source."),
                                  **_errors(400, 403, 404, why=_SOURCE_ERRORS)}},
            "delete": {"summary": "Stop following a source", "tags": ["sources"], "parameters": [
                _SOURCE_ID, _query("assets", "true: delete the assets it brought too; false (default): keep them.",
                                   {"type": "string", "enum": ["true", "false"]})],
                "responses": {"204": {"description": "Deleted (with its assets, if asked)."},
                              "202": _json(_ref("DeletingSource"), "Deleted; its assets are still being deleted "
                                                                   "behind the queue."),
                              **_errors(400, 403, 404, 503, why=_SOURCE_ERRORS)}}},
        "/api/sources/{id}/refresh": {"post": {
            "summary": "Read a source again now", "tags": ["sources"], "parameters": [_SOURCE_ID],
            "description": "Queues a read (a conditional GET): new items are submitted, known ones left alone.",
            "responses": {"202": _json(_ref("Source"), "Queued; the source as it stands."),
                          **_errors(400, 403, 404, 503, why=_SOURCE_ERRORS)}}},
        "/api/documents": {"post": {
            "summary": "Index documents you already have (text, no URL)", "tags": ["documents"], "description": (
                "Chunks and stores each document, then embeds them in batches; each becomes an asset, searchable "
                "like any other. Idempotent on id: unchanged documents are left alone, changed ones replaced. "
                "A bad document fails the whole request (400 naming each one) and nothing is stored."),
            "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("DocumentBatch")}}},
            "responses": {"202": _json(_ref("DocumentResults"), "Stored and queued, in the order sent."),
                          **_errors(400, 403, 503)}}},
        "/v1/embeddings": {"post": {
            "summary": "Embeddings (OpenAI-compatible)", "tags": ["embeddings"],
            "description": "The model the index uses, in OpenAI's request and response shapes.",
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": _ref("EmbeddingRequest")}}},
            "responses": {"200": _json(_ref("EmbeddingList"), "One embedding per input, in order."),
                          **_openai_errors(400, 401, 404, 503)}}},
        "/v1/models": {"get": {"summary": "The models served (OpenAI-compatible)", "tags": ["embeddings"],
                               "responses": {"200": _json(_ref("ModelList"), "Each with its vector size and "
                                                                             "input limit."),
                                             **_openai_errors(401)}}},
        "/v1/models/{model}": {"get": {
            "summary": "One served model", "tags": ["embeddings"],
            "description": "The id may hold a slash: a Hugging Face name such as "
                           "`sentence-transformers/all-MiniLM-L6-v2` is accepted, as by /v1/embeddings.",
            "parameters": [{"name": "model", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {"200": _json(_ref("Model"), "The model."), **_openai_errors(401, 404)}}},
        "/api/openapi.json": {"get": {"summary": "This document", "tags": ["service"], "security": [],
                                      "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1.")}}},
        "/webhooks/audio/{id}": {"post": {**webhook, "summary": "Replicate: a transcription finished"}},
        "/webhooks/image/{id}": {"post": {**webhook, "summary": "Replicate: an image reading finished"}},
        "/webhooks/embedding/{id}": {"post": {**webhook, "summary": "Replicate: embeddings finished"}},
    }


_KEY_HINT = ('An API key (`make run` prints the local one). Without a valid key an /api route answers 403 '
             '{"message": "Forbidden"} (API Gateway\'s own answer, before any function runs); the /v1 routes '
             'answer 401 invalid_api_key, as OpenAI does.')


@cache
def document(search_access: str = "key") -> dict:
    """The OpenAPI document; search carries no security requirement when search is public."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "allthethings", "version": VERSION,
                 "description": "Index anything with a public URL and search it by meaning. Send an API key as "
                                "`x-api-key` or `Authorization: Bearer`; webhooks are checked by signature."},
        "security": _KEYED,
        "paths": _paths(search_access != "public"),
        "components": {"schemas": _schemas(), "securitySchemes": {
            "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key", "description": _KEY_HINT},
            "bearer": {"type": "http", "scheme": "bearer", "description": _KEY_HINT}}},
    }


@cache
def swagger_page(spec_url: str) -> str:
    """Swagger UI for the document at `spec_url`, from the copy Powertools ships (no CDN)."""
    from pathlib import Path

    import aws_lambda_powertools.event_handler.openapi.swagger_ui as ui

    folder = Path(ui.__file__).parent
    js = (folder / "swagger-ui-bundle.min.js").read_text(encoding="utf-8")
    css = (folder / "swagger-ui.min.css").read_text(encoding="utf-8")
    return ("<!doctype html><html lang=en><head><meta charset=utf-8><title>allthethings API</title>"
            f"<style>{css}</style></head><body><div id=swagger-ui></div><script>{js}</script><script>"
            f"SwaggerUIBundle({{url: {json.dumps(spec_url)}, dom_id: '#swagger-ui', deepLinking: true}});"
            "</script></body></html>")
