"""Authorizer function. Trigger: API Gateway, as the HTTP API's Lambda authorizer (payload 2.0,
simple responses, no identity source and no result caching, so it sees every request).

Runs before every route the template does not mark public, and answers
{"isAuthorized": bool, "context": {"key": NAME, "signin": "required" | ""}}: the name of the
API key presented (never the key), and whether the route must refuse the request itself (a
page asks the browser to sign in; /v1 answers OpenAI's 401). Any other refused route gets API
Gateway's 403. When the keys cannot be read, everything that needs one is refused (fail closed)
and the reason is logged.
"""

from allthethings import bootstrap
from allthethings.entrypoints import logs
from allthethings.services.access import Decision, authorize, refuses_itself

logger = logs.logger()


@logger.inject_lambda_context
def handler(event, context):
    route = event.get("routeKey") or ""
    try:
        decision = authorize(route, event.get("headers") or {}, event.get("cookies") or [], bootstrap.deps())
    except Exception:  # noqa: BLE001 - no key store, no entry; the reason is in the log
        logger.exception("API keys unavailable: refusing", extra={"route": route})
        decision = Decision(allowed=False, key_name=None, refuses_itself=refuses_itself(route))
    if not decision.allowed:
        logger.info("no valid API key", extra={"route": route})
    return {"isAuthorized": decision.allowed or decision.refuses_itself,
            "context": {"key": decision.key_name or "", "signin": "" if decision.allowed else "required"}}
