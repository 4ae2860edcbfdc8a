"""Who may call what: API keys, and the one policy the API Gateway authorizer applies.

A key is presented as `x-api-key: KEY`, `Authorization: Bearer KEY`, or the browser's
sign-in cookie. Keys are compared in constant time by their SHA-256 digests (so neither a
key's characters nor its length leak through timing), and only a key's *name* is ever
passed on or logged.

Routes fall in three groups. The template marks the public ones (health, webhooks, the
API description, sign-in) with no authorizer at all; every other route comes here. Search
is open to anyone when SEARCH_ACCESS is `public`; everything else needs a key. Pages are
never refused by the gateway: they are let through marked "sign in", so the page can ask
for a key in HTML rather than the browser showing a bare 403.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from urllib.parse import unquote, urlsplit

from allthethings.services import Deps

KEY_COOKIE = "allthethings_key"
MIN_KEY_CHARS = 20
SEARCH_ROUTES = frozenset({"GET /api/search", "GET /search"})
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@dataclasses.dataclass(frozen=True)
class ApiKeys:
    """Named keys, held as digests. Written as `name=key,name=key` (a bare key is named key1, key2, ...)."""

    digests: tuple[tuple[str, bytes], ...]

    @classmethod
    def parse(cls, text: str) -> ApiKeys:
        entries = []
        for n, item in enumerate((i.strip() for i in re.split(r"[,\n]", text or "")), start=1):
            if not item:
                continue
            name, _, key = item.partition("=") if "=" in item else (f"key{n}", "", item)
            name, key = name.strip(), key.strip()
            if not _NAME.match(name):
                raise ValueError(f"API key name {name!r} must be 1-64 letters, digits, '_', '.' or '-'")
            if len(key) < MIN_KEY_CHARS:  # the message names the key, never shows it
                raise ValueError(f"API key {name!r} is shorter than {MIN_KEY_CHARS} characters")
            entries.append((name, _digest(key)))
        return cls(tuple(entries))

    def name_of(self, presented: str | None) -> str | None:
        """The name of the key presented, or None. Every key is compared, match or not."""
        if not presented:
            return None
        digest, found = _digest(presented), None
        for name, expected in self.digests:
            if hmac.compare_digest(digest, expected) and found is None:
                found = name
        return found


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


@functools.lru_cache(maxsize=4)
def _parsed(text: str) -> ApiKeys:
    return ApiKeys.parse(text)


def configured_keys(deps: Deps) -> ApiKeys:
    """The keys in force: API_KEYS, or the SSM parameter API_KEYS_PARAM names (cached 5 minutes)."""
    settings = deps.settings
    return _parsed(deps.secrets.get(settings.api_keys, settings.api_keys_param, "API_KEYS"))


def safe_next_path(raw: str | None) -> str:
    """Where sign-in may send the browser: a path of this site, never another origin. Anything
    that is not plainly a local path (a scheme, `//host`, a backslash that browsers read as a
    slash, a control character) is replaced by the home page."""
    path = raw or "/"
    if (not path.startswith("/") or path.startswith("//") or "\\" in path
            or any(ord(c) < 0x20 or ord(c) == 0x7F for c in path)):
        return "/"
    parts = urlsplit(path)
    return path if not parts.scheme and not parts.netloc else "/"


def presented_key(headers: Mapping[str, str], cookies: Iterable[str] = ()) -> str | None:
    """The key a request carries, if any: a header first, then the sign-in cookie."""
    lowered = {k.lower(): v for k, v in (headers or {}).items()}
    if lowered.get("x-api-key"):
        return lowered["x-api-key"].strip()
    scheme, _, token = (lowered.get("authorization") or "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    for cookie in cookies or ():
        name, _, value = cookie.strip().partition("=")
        if name == KEY_COOKIE and value:
            return unquote(value)
    return None


@dataclasses.dataclass(frozen=True)
class Decision:
    allowed: bool
    key_name: str | None  # who called, when a valid key was presented
    refuses_itself: bool  # let through without a key, marked, for the route to refuse in its own words


# The routes that refuse a request without a key in their own words, so API Gateway lets them
# through marked: the HTML pages (they answer with the sign-in page) and the OpenAI-compatible
# routes (they answer OpenAI's 401, which its clients raise as AuthenticationError). Named one by
# one: a route added later is refused by the gateway unless it is listed here (fail closed:
# /v1/embeddings once slipped through a "not /api/" rule).
PAGE_ROUTES = frozenset({"GET /", "GET /assets/{id}", "POST /process", "POST /assets/{id}/retry",
                         "POST /assets/{id}/delete", "GET /search", "GET /sources", "POST /sources",
                         "POST /sources/{id}/refresh", "POST /sources/{id}/delete"})
OPENAI_ROUTES = frozenset({"POST /v1/embeddings", "GET /v1/models", "GET /v1/models/{model+}"})


def refuses_itself(route_key: str) -> bool:
    """Whether a route answers a request without a key itself (a page, an OpenAI-compatible route)
    rather than being refused by the gateway."""
    return route_key in PAGE_ROUTES or route_key in OPENAI_ROUTES


def decide(route_key: str, key_name: str | None, search_access: str) -> Decision:
    """The access rule for one route (as the template writes it, e.g. "GET /api/assets/{id}")."""
    open_route = route_key in SEARCH_ROUTES and search_access == "public"
    return Decision(allowed=open_route or key_name is not None, key_name=key_name,
                    refuses_itself=refuses_itself(route_key))


def authorize(route_key: str, headers: Mapping[str, str], cookies: Iterable[str], deps: Deps) -> Decision:
    """Decide for one request. Keys that cannot be read refuse everything (fail closed)."""
    return decide(route_key, configured_keys(deps).name_of(presented_key(headers, cookies)),
                  deps.settings.search_access)
