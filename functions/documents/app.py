"""Documents function: bulk ingestion of text without a URL. Trigger: HTTP API.

Route: POST /api/documents {"documents": [{"id"?, "title"?, "text", "metadata"?}, ...]} (at most
MAX_DOCUMENTS_PER_REQUEST) -> 202 {"documents": [{"id", "asset_id", "status", "result":
"created" | "updated" | "unchanged"}]}, in the order sent. Each document is chunked and stored
now and embedded by the processing queue; it is then searchable like any asset (its metadata
comes back with every result). Idempotent on id: a document without one gets an id from its
content. A bad document is a 400 naming every document at fault, and nothing is stored.
"""

from aws_lambda_powertools.logging import correlation_paths

from allthethings import bootstrap
from allthethings.entrypoints import logs
from allthethings.entrypoints.resolver import api, json_body, json_response, origin
from allthethings.services.documents import ingest_documents

logger = logs.logger()
app = api(logger)


@app.post("/api/documents")
def documents():
    results = ingest_documents(json_body(app), bootstrap.deps(), webhook_base=origin(app))
    return json_response(202, {"documents": [r.to_public() for r in results]})


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@bootstrap.metrics_flushed
def handler(event, context):
    return app.resolve(event, context)
