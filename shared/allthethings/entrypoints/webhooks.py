"""The one implementation of both webhook functions (audio and image; embedding): a resolver
with a route POST /webhooks/{kind}/{id} per kind and the Lambda handler around it.

The delivery's signature is verified before its body is read (401, nothing changes); a
malformed id is a 400 and an unknown asset a 404 (the sender should not retry); otherwise the
delivery goes on the webhook queue and is answered 202 at once. The webhook consumer applies it.
"""

from __future__ import annotations

from aws_lambda_powertools.logging import correlation_paths

from allthethings import bootstrap
from allthethings.entrypoints import logs
from allthethings.entrypoints.resolver import api, json_response, origin, raw_body
from allthethings.services.webhooks import KINDS, receive_webhook


def webhook_function(*kinds: str):
    """The (logger, resolver, handler) of the webhook function for `kinds` (one route each)."""
    for kind in kinds:
        if kind not in KINDS:
            raise ValueError(f"no webhook kind {kind!r}: one of {', '.join(KINDS)}")
    logger = logs.logger()
    app = api(logger)

    def route(kind: str):
        @app.post(f"/webhooks/{kind}/<asset_id>")
        def delivered(asset_id: str):
            asset = receive_webhook(kind, asset_id, raw_body(app), app.current_event.headers or {},
                                    bootstrap.deps(), webhook_base=origin(app))
            return json_response(202, {"id": asset.id, "accepted": True})

    for kind in kinds:
        route(kind)

    @logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
    @bootstrap.metrics_flushed
    def handler(event, context):
        return app.resolve(event, context)

    return logger, app, handler
