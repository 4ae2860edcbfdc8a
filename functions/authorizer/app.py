"""Authorizer function. Trigger: API Gateway, as the HTTP API's Lambda authorizer (payload 2.0,
simple responses, no identity source and no result caching, so it sees every request).

Runs before every route the template does not mark public, and answers
{"isAuthorized": bool, "context": {"key": NAME, "signin": "required" | ""}}: the name of the
API key presented (never the key), and whether a page should ask the browser to sign in.
A refused API route gets API Gateway's 403. When the keys cannot be read, everything that
needs one is refused (fail closed) and the reason is logged.
"""

from allthethings import bootstrap, logs
from allthethings.services.access import Decision, authorize, is_page

logger = logs.logger()


@logger.inject_lambda_context
def handler(event, context):
    route = event.get("routeKey") or ""
    try:
        decision = authorize(route, event.get("headers") or {}, event.get("cookies") or [], bootstrap.deps())
    except Exception:  # noqa: BLE001 - no key store, no entry; the reason is in the log
        logger.exception("API keys unavailable: refusing", extra={"route": route})
        decision = Decision(allowed=False, key_name=None, page=is_page(route))
    if not decision.allowed:
        logger.info("no valid API key", extra={"route": route})
    return {"isAuthorized": decision.allowed or decision.page,
            "context": {"key": decision.key_name or "", "signin": "" if decision.allowed else "required"}}
