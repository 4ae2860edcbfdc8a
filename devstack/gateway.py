"""The local API gateway: a functions-framework HTTP function that behaves like an HTTP API.

Each request is matched against the template's routes, turned into an API Gateway
HTTP API (payload format 2.0) event, checked by the route's Lambda authorizer (as the
template configures it), and passed to the same `handler` Lambda calls; the handler's
answer is turned back into an HTTP response.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import re
import threading
import time
import uuid
from datetime import UTC, datetime

from devstack.template import Function, Route, Template


def isolate_requests() -> None:
    """Keep the event being resolved per thread. Powertools keeps it on its router *class*, one
    value per process; Lambda runs one event at a time per process, but this gateway serves
    concurrent requests from threads of one process, where a handler could read another
    request's event (a submission answered with another's asset; found by the load test).

    The resolver's `_to_proxy_event` (which every `resolve` calls) also records the event in a
    thread-local, and a property on the resolver class reads it back, ahead of the base class's
    shared attribute. Powertools internals, so this lives here, never in the deployed code."""
    from aws_lambda_powertools.event_handler.api_gateway import ApiGatewayResolver

    if isinstance(ApiGatewayResolver.__dict__.get("current_event"), property):
        return
    local = threading.local()
    to_proxy_event = ApiGatewayResolver._to_proxy_event

    def recorded(self, event):
        local.event = to_proxy_event(self, event)
        return local.event

    def set_event(self, value):
        local.event = value

    ApiGatewayResolver._to_proxy_event = recorded
    ApiGatewayResolver.current_event = property(lambda self: local.event, set_event)


isolate_requests()

# What Lambda accepts as a synchronous invocation's payload: API Gateway answers 413 for a request
# whose event (the body, base64-encoded when binary, with everything else) would be larger.
LAMBDA_PAYLOAD_BYTES = 6 * 1024 * 1024

_TEXTUAL = ("text/", "application/json", "application/x-www-form-urlencoded", "application/xml",
            "application/javascript")


class LambdaContext:
    """What a Lambda handler may read from its context object."""

    def __init__(self, function: Function, timeout_s: int = 29):
        self.function_name = function.logical_id
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:000000000000:function:{function.logical_id}"
        self.memory_limit_in_mb = 1024
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function.logical_id}"
        self.log_stream_name = "local"
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def import_instance(function: Function, instance: int):
    """A separate import of the function's module: one more "container"."""
    name = f"lambda_{function.logical_id}" + (f"_{instance}" if instance else "")
    spec = importlib.util.spec_from_file_location(name, function.module_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_modules: dict[str, object] = {}
_modules_lock = threading.Lock()


def load_module(function: Function):
    """The function's handler module, imported once from its own folder as Lambda would."""
    with _modules_lock:
        if function.logical_id not in _modules:
            _modules[function.logical_id] = import_instance(function, 0)
    return _modules[function.logical_id]


def load_handler(function: Function):
    return getattr(load_module(function), function.handler.rsplit(".", 1)[1])


class Containers:
    """Lambda runs one request at a time per container and adds containers for concurrent ones;
    a handler's module state (the Powertools resolver's current event, for one) relies on that.
    Each "container" here is a separate import of the handler module, reused when idle."""

    def __init__(self):
        self._idle: dict[str, list] = {}
        self._count: dict[str, int] = {}
        self._lock = threading.Lock()

    def invoke(self, function: Function, event: dict, context) -> object:
        with self._lock:
            idle = self._idle.setdefault(function.logical_id, [])
            module = idle.pop() if idle else None
            if module is None:
                instance = self._count.get(function.logical_id, 0)
                self._count[function.logical_id] = instance + 1
        if module is None:
            module = load_module(function) if instance == 0 else import_instance(function, instance)
        try:
            return getattr(module, function.handler.rsplit(".", 1)[1])(event, context)
        finally:
            with self._lock:
                self._idle[function.logical_id].append(module)


def _pattern(path: str) -> re.Pattern:
    regex = re.sub(r"\{([A-Za-z0-9_]+)\+\}", r"(?P<\1>[\\s\\S]+)", path)  # greedy: any character, newlines too
    regex = re.sub(r"\{([A-Za-z0-9_]+)\}", r"(?P<\1>[^/]+)", regex)
    return re.compile(f"^{regex}$")


class Router:
    def __init__(self, template: Template):
        self.template = template
        # Static routes win over parameterised ones, as in API Gateway.
        entries = [(route, fn) for fn in template.functions.values() for route in fn.routes]
        entries.sort(key=lambda e: (e[0].path.count("{"), -len(e[0].path)))
        self.entries = [(route, _pattern(route.path), fn) for route, fn in entries]

    def match(self, method: str, path: str) -> tuple[Route, Function, dict] | None:
        for route, pattern, fn in self.entries:
            m = pattern.match(path)
            if m and route.method in (method, "ANY"):
                return route, fn, m.groupdict()
        return None


def _own_host(request) -> str:
    """host[:port] this server listens on (what it was bound to, whatever Host the client sent)."""
    name, port = request.environ.get("SERVER_NAME", "localhost"), str(request.environ.get("SERVER_PORT", ""))
    return name if port in ("", "80", "443") else f"{name}:{port}"


def _is_utf8(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def build_event(request, route: Route, path_params: dict) -> dict:
    """An HTTP API payload 2.0 event for a Flask/werkzeug request."""
    body = request.get_data()
    content_type = request.headers.get("content-type", "")
    # A body that is not UTF-8 cannot travel as a JSON string: like API Gateway, send it base64-encoded.
    textual = not body or (content_type.startswith(_TEXTUAL) and _is_utf8(body))
    headers: dict[str, str] = {}
    for key, value in request.headers.items():
        k = key.lower()
        headers[k] = f"{headers[k]},{value}" if k in headers else value
    cookies = [c.strip() for c in headers.pop("cookie", "").split(";") if c.strip()]
    headers.setdefault("x-forwarded-proto", request.scheme)
    headers.setdefault("x-forwarded-for", request.remote_addr or "127.0.0.1")
    query = {k: ",".join(request.args.getlist(k)) for k in request.args}
    now = datetime.now(UTC)
    event = {
        "version": "2.0",
        "routeKey": route.key,
        "rawPath": request.path,
        "rawQueryString": request.query_string.decode("latin-1"),
        "headers": headers,
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "local",
            # The gateway's own address, as API Gateway names its own domain: never the Host header.
            "domainName": _own_host(request),
            "domainPrefix": _own_host(request).split(".")[0],
            "http": {"method": request.method, "path": request.path, "protocol": "HTTP/1.1",
                     "sourceIp": request.remote_addr or "127.0.0.1",
                     "userAgent": request.headers.get("user-agent", "")},
            "requestId": uuid.uuid4().hex,
            "routeKey": route.key,
            "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
        },
        "isBase64Encoded": not textual,
    }
    if cookies:
        event["cookies"] = cookies
    if query:
        event["queryStringParameters"] = query
    if path_params:
        event["pathParameters"] = path_params
    if body:
        event["body"] = body.decode("utf-8") if textual else base64.b64encode(body).decode()
    return event


def authorizer_event(event: dict) -> dict:
    """The payload 2.0 REQUEST event API Gateway sends a Lambda authorizer for `event`."""
    request = {k: v for k, v in event.items() if k not in ("body", "isBase64Encoded")}
    method, _, path = event["routeKey"].partition(" ")
    return {**request, "type": "REQUEST", "identitySource": [],
            "routeArn": f"arn:aws:execute-api:us-east-1:000000000000:local/$default/{method}{path}"}


def dispatch(route: Route, fn: Function, event: dict, functions: dict[str, Function], invoke) -> dict:
    """What API Gateway does with a matched request: run the route's authorizer, if it has one
    (refused: 403; broken: 500, as API Gateway answers), then the route's function."""
    if route.authorizer is not None:
        authorizer = functions[route.authorizer]
        try:
            verdict = invoke(authorizer, authorizer_event(event), LambdaContext(authorizer, timeout_s=10))
        except Exception:  # noqa: BLE001 - API Gateway's answer to a failing authorizer
            return _gateway_error(500, "Internal Server Error")
        if not (isinstance(verdict, dict) and verdict.get("isAuthorized") is True):
            return _gateway_error(403, "Forbidden")
        event["requestContext"]["authorizer"] = {"lambda": verdict.get("context") or {}}
    return invoke(fn, event, LambdaContext(fn))


def _gateway_error(status: int, message: str) -> dict:
    return {"statusCode": status, "headers": {"content-type": "application/json"},
            "body": json.dumps({"message": message})}


def to_response(result):
    """A Flask response for a handler's payload 2.0 answer."""
    from flask import Response

    if not isinstance(result, dict) or "statusCode" not in result:
        return Response(json.dumps(result), status=200, content_type="application/json")
    body = result.get("body") or ""
    data = base64.b64decode(body) if result.get("isBase64Encoded") else body.encode()
    response = Response(data, status=int(result["statusCode"]))
    for key, value in (result.get("headers") or {}).items():
        response.headers[key] = str(value)
    for key, values in (result.get("multiValueHeaders") or {}).items():
        for value in values:
            response.headers.add(key, str(value))
    for cookie in result.get("cookies") or []:
        response.headers.add("Set-Cookie", cookie)
    return response


_router: Router | None = None
_containers = Containers()


def configure(template: Template) -> None:
    global _router
    _router = Router(template)
    for fn in template.functions.values():
        if fn.routes:
            load_handler(fn)


def gateway(request):
    """The functions-framework entrypoint for every route."""
    from flask import Response

    if _router is None:
        raise RuntimeError("the local gateway is not configured")
    found = _router.match(request.method, request.path)
    if found is None:
        return Response(json.dumps({"message": "Not Found"}), status=404, content_type="application/json")
    route, fn, params = found
    # A body alone over the limit makes an event over it: refused before it is read into memory.
    if (request.content_length or 0) > LAMBDA_PAYLOAD_BYTES:
        return to_response(_gateway_error(413, "Request Entity Too Large"))
    event = build_event(request, route, params)
    if len(json.dumps(event, ensure_ascii=False).encode("utf-8")) > LAMBDA_PAYLOAD_BYTES:
        return to_response(_gateway_error(413, "Request Entity Too Large"))
    return to_response(dispatch(route, fn, event, _router.template.functions, _containers.invoke))
