"""What every HTTP entrypoint shares: the resolver, and the one mapping from error type to status.

Errors are JSON `{"error": {"code", "message"}}`. Unknown errors become a
generic 500 carrying the request id, never a stack trace or a secret.
"""

from __future__ import annotations

import base64
import json
from urllib.parse import quote

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from pydantic import ValidationError

from allthethings import bootstrap
from allthethings.domain import errors
from allthethings.services.access import KEY_COOKIE

STATUS_OF: dict[type[errors.DomainError], int] = {
    errors.InvalidInput: 400,
    errors.Unauthorized: 401,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.ContentTooLarge: 413,
    errors.UnsupportedContentType: 415,
    errors.UnreachableUrl: 422,
    errors.ExtractionFailed: 422,
    errors.UpstreamUnavailable: 503,
}


def status_of(exc: errors.DomainError) -> int:
    return next((s for t, s in STATUS_OF.items() if isinstance(exc, t)), 400)


def error_response(status: int, code: str, message: str, **extra) -> Response:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON,
                    body=json.dumps({"error": {"code": code, "message": message, **extra}}))


def openai_error_response(status: int, code: str, message: str, param: str | None = None, **extra) -> Response:
    """OpenAI's error shape, which its clients parse: {"error": {"message", "type", "param", "code"}}."""
    kind = ("invalid_request_error" if status < 500 and status not in (401, 403, 429) else
            {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error"}.get(status, "api_error"))
    if status == 404 and param == "model":
        code = "model_not_found"
    elif status == 401:
        code = "invalid_api_key"
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=json.dumps(
        {"error": {"message": message, "type": kind, "param": param, "code": code, **extra}}))


def json_response(status: int, body: dict) -> Response:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=json.dumps(body))


def _describe(exc: RequestValidationError | ValidationError) -> str:
    parts = []
    for err in exc.errors():
        if err.get("type") in ("json_invalid", "json_type"):
            parts.append("body: is not valid JSON")
            continue
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path")]
        where = ".".join(loc) or "body"
        parts.append(f"{where}: {err.get('msg', 'is not valid')}")
    return "; ".join(parts) or "the request is not valid"


def api(logger, *, openai_errors: bool = False) -> APIGatewayHttpResolver:
    """A resolver for an HTTP API function, with the shared error handling registered; with
    `openai_errors`, errors take OpenAI's shape (the /v1 routes, for OpenAI's clients)."""
    app = APIGatewayHttpResolver(enable_validation=True)
    respond = openai_error_response if openai_errors else error_response

    @app.exception_handler(errors.DomainError)
    def domain_error(exc: errors.DomainError) -> Response:
        status = status_of(exc)
        if status >= 500:
            logger.warning("dependency failure", extra={"error": exc.message})
        if openai_errors:
            return respond(status, exc.code, exc.message, exc.param)
        return respond(status, exc.code, exc.message)

    @app.exception_handler([RequestValidationError, ValidationError])
    def invalid_request(exc: RequestValidationError | ValidationError) -> Response:
        return respond(400, "invalid_input", _describe(exc))

    @app.not_found
    def not_found(_exc) -> Response:
        event = app.current_event
        return respond(404, "not_found", f"no route for {event.http_method} {event.path}")

    @app.exception_handler(Exception)
    def unexpected(exc: Exception) -> Response:
        logger.exception("unhandled error")
        request_id = app.current_event.request_context.request_id
        return respond(500, "internal", "internal error", request_id=request_id)

    return app


def raw_body(app: APIGatewayHttpResolver) -> bytes:
    """The request body exactly as sent (signatures are over bytes, not parsed JSON)."""
    event = app.current_event
    body = event.body or ""
    return base64.b64decode(body) if event.is_base64_encoded else body.encode("utf-8")


def text_body(app: APIGatewayHttpResolver) -> str:
    """The request body as text; InvalidInput if it is not UTF-8 (API Gateway passes such a body
    base64-encoded, and decoding it is where it would otherwise fail)."""
    try:
        return raw_body(app).decode("utf-8")
    except UnicodeDecodeError:
        raise errors.InvalidInput("body: is not valid UTF-8 text") from None


def json_body(app: APIGatewayHttpResolver) -> object:
    """The request body parsed as JSON, whatever content type it was sent with; InvalidInput if it
    is not JSON, is nested past what the parser takes, or holds a string that is not Unicode text
    (a lone surrogate escape such as "\\ud800", which nothing downstream could store or encode)."""
    try:
        parsed = json.loads(text_body(app) or "")
    except RecursionError:
        raise errors.InvalidInput("body: the JSON is nested too deeply") from None
    except ValueError:
        raise errors.InvalidInput("body: is not valid JSON") from None
    _refuse_surrogates(parsed)
    return parsed


def _refuse_surrogates(value: object) -> None:
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if not item.isascii():
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    raise errors.InvalidInput("body: a string holds a lone surrogate (\\ud800-\\udfff), "
                                              "which is not text") from None
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)


def origin(app: APIGatewayHttpResolver) -> str:
    """Where a model should call back for the work this request starts: PUBLIC_BASE_URL when it
    is set (the local stack sets its own address), else this API's own domain as API Gateway
    names it in the request context. Never a header the client writes (Host, X-Forwarded-*):
    a client could otherwise send a signed delivery of its asset to a server of its own."""
    configured = bootstrap.deps().settings.public_base_url
    return configured or f"https://{app.current_event.request_context.domain_name}"


def html_response(status: int, body: str) -> Response:
    return Response(status_code=status, content_type=content_types.TEXT_HTML, body=body)


def redirect(location: str, cookie: str | None = None) -> Response:
    """303 See Other: after a form's POST, the browser GETs `location`."""
    return Response(status_code=303, content_type=content_types.TEXT_HTML, body="",
                    headers={"Location": location}, cookies=[cookie] if cookie else None)


def needs_signin(app: APIGatewayHttpResolver) -> bool:
    """Whether the authorizer let this request through without a valid key, for the route to
    refuse it in its own words (a page asks for a key). A request that did not pass the
    authorizer at all (a misrouted template) is treated the same: fail closed."""
    context = app.current_event.raw_event.get("requestContext", {}).get("authorizer", {}).get("lambda")
    return not context or context.get("signin") == "required"


def session_cookie(app: APIGatewayHttpResolver, key: str | None) -> str:
    """The sign-in cookie holding `key` (None: the cookie that signs out). Secure over HTTPS."""
    secure = "; Secure" if (app.current_event.headers or {}).get("x-forwarded-proto", "https") == "https" else ""
    if key is None:
        return f"{KEY_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict{secure}"
    # Quoted: a key may hold characters a cookie value cannot (`;`, `,`, spaces); presented_key unquotes.
    return f"{KEY_COOKIE}={quote(key, safe='')}; Path=/; Max-Age=2592000; HttpOnly; SameSite=Strict{secure}"
