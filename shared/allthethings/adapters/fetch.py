"""Fetching a URL with httpx: streamed into a spooled temporary file, size-capped per kind,
every connection made to an address vetted at the moment of connecting.

Without ALLOW_PRIVATE_URLS, the host is resolved once per connection by our own network
backend, every address it resolves to is checked (`domain.network.is_public_address`), and
the socket is opened to that vetted address: there is no second lookup for a DNS-rebinding
answer to slip into. Redirects open new connections, so every hop is vetted the same way.
Proxies from the environment are ignored (a proxy would make the connection for us). TLS
still verifies the certificate against the URL's host name.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import time
from collections.abc import Callable, Iterator
from urllib.parse import unquote

from allthethings.domain.content import SNIFF_BYTES, SizeLimits
from allthethings.domain.errors import ContentTooLarge, Interrupted, InvalidInput, UnreachableUrl
from allthethings.domain.network import is_public_address, literal_address
from allthethings.ports import Download, Fetcher, Validator

MAX_REDIRECTS = 5
# The whole download may take this many read timeouts: a server trickling bytes just under the
# read timeout cannot hold a fetch open for ever.
TOTAL_TIMEOUTS = 3

Resolver = Callable[[str, int], list[str]]
Policy = Callable[[str], bool]


def resolve(host: str, port: int) -> list[str]:
    """The addresses the system resolver gives for host, in its order of preference."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise UnreachableUrl(f"the host {host!r} could not be resolved") from None
    return list(dict.fromkeys(info[4][0] for info in infos))


def vetted_addresses(host: str, port: int, resolver: Resolver = resolve,
                     allowed: Policy = is_public_address) -> list[str]:
    """The host's addresses, every one of them allowed (public); InvalidInput if any is not. A
    percent-escape in the host (a redirect's `127%2E0%2E0%2E2`) is read as the character."""
    host = unquote(host)
    literal = literal_address(host)
    addresses = [literal.compressed] if literal is not None else resolver(host, port)
    if not addresses:
        raise UnreachableUrl(f"the host {host!r} could not be resolved")
    for address in addresses:
        if not allowed(address):
            raise InvalidInput(f"the host {host!r} resolves to a non-public address, which is not allowed")
    return addresses


def _pinned_backend(resolver: Resolver, allowed: Policy):
    import httpcore

    class PinnedBackend(httpcore.SyncBackend):
        """Connects to the addresses it vetted itself, never to a second lookup's answer."""

        def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
            addresses = vetted_addresses(host, port, resolver, allowed)
            failure: Exception | None = None
            for address in addresses:
                try:
                    return super().connect_tcp(address, port, timeout, local_address, socket_options)
                except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                    failure = exc
            raise failure or httpcore.ConnectError(f"no address for {host}")

    return PinnedBackend()


def _transport(resolver: Resolver, allowed: Policy):
    import httpcore
    import httpx

    class PinnedTransport(httpx.HTTPTransport):
        def __init__(self):
            super().__init__()
            self._pool = httpcore.ConnectionPool(ssl_context=httpx.create_ssl_context(), max_connections=20,
                                                 network_backend=_pinned_backend(resolver, allowed))

    return PinnedTransport()


class HttpFetcher(Fetcher):
    def __init__(self, *, allow_private: bool, timeout_s: float = 20.0, spool_bytes: int = 8 * 1024 * 1024,
                 resolver: Resolver = resolve, allowed: Policy = is_public_address):
        """`resolver` and `allowed` are the name lookup and the address policy (tests give their own)."""
        self.timeout_s = timeout_s
        self.whole_body_s = timeout_s * TOTAL_TIMEOUTS  # `fetch`: a body fetched in one go
        self.spool_bytes = spool_bytes
        self.resolver = resolver
        self.allowed: Policy = (lambda _address: True) if allow_private else allowed
        self._http = None

    def _client(self):
        if self._http is None:
            import httpx

            self._http = httpx.Client(
                transport=_transport(self.resolver, self.allowed), trust_env=False,
                follow_redirects=True, max_redirects=MAX_REDIRECTS,
                timeout=httpx.Timeout(self.timeout_s, connect=5.0),
                headers={"User-Agent": "allthethings/0.1 (+https://github.com/allthethings)"})
        return self._http

    def open(self, url: str, limits: SizeLimits, *, start: int = 0, validator: Validator | None = None,
             limit: int | None = None, unless: Validator | None = None) -> Download:
        headers = {}
        if unless is not None and unless.etag:
            headers["If-None-Match"] = unless.etag
        if unless is not None and unless.last_modified:
            headers["If-Modified-Since"] = unless.last_modified
        if start:
            headers["Range"] = f"bytes={start}-"
            if validator is not None and validator.if_range():
                headers["If-Range"] = validator.if_range()
        # The first bytes must come within the same few read timeouts as a whole body fetched in one go.
        head_until = time.monotonic() + self.timeout_s * TOTAL_TIMEOUTS
        stream = self._client().stream("GET", url, headers=headers)
        with _translated():
            response = stream.__enter__()
        try:
            return self._opened(url, response, stream, limits, start, limit, head_until)
        except BaseException:
            stream.__exit__(None, None, None)
            raise

    def _opened(self, url, response, stream, limits: SizeLimits, start: int, limit: int | None,
                head_until: float) -> Download:
        if response.status_code == 304:
            stream.__exit__(None, None, None)
            return Download(url=url, final_url=str(response.url), declared_type=response.headers.get("content-type"),
                            head=b"", start=0, total=0, resumable=False, pieces=iter(()), not_modified=True,
                            validator=Validator(response.headers.get("etag"), response.headers.get("last-modified")))
        if response.status_code >= 400:
            raise UnreachableUrl(f"the URL answered HTTP {response.status_code}")
        declared_type = response.headers.get("content-type")
        final_url = str(response.url)
        length = _number(response.headers.get("content-length"))
        served_from, total = 0, length
        if response.status_code == 206:
            served_from, total = _content_range(response.headers.get("content-range"), start)
        ceiling = limit if limit is not None else limits.ceiling
        if total is not None and total > ceiling:
            raise ContentTooLarge(f"the body is {total} bytes; the limit is {ceiling}")
        pieces = _guarded(response.iter_bytes(), served_from)
        head, rest = b"", []
        with _translated(served_from):
            for piece in pieces:
                rest.append(piece)
                head += piece[:SNIFF_BYTES - len(head)]
                if len(head) >= SNIFF_BYTES:
                    break
                if time.monotonic() > head_until:
                    raise UnreachableUrl(f"the URL did not send its first {SNIFF_BYTES} bytes within "
                                         f"{self.timeout_s * TOTAL_TIMEOUTS:.0f} s")
        if limit is None:
            limit = limits.for_body(head, declared_type, final_url)
        if total is not None and total > limit:
            raise ContentTooLarge(f"the body is {total} bytes; the limit for it is {limit}")
        return Download(
            url=url, final_url=final_url, declared_type=declared_type, head=head, start=served_from, total=total,
            validator=Validator(response.headers.get("etag"), response.headers.get("last-modified")),
            resumable=response.status_code == 206 or response.headers.get("accept-ranges", "").lower() == "bytes",
            pieces=_capped(rest, pieces, served_from, total, limit), close=lambda: stream.__exit__(None, None, None))


def _number(value: str | None) -> int | None:
    return int(value) if value and value.isascii() and value.isdigit() else None


def _content_range(value: str | None, asked: int) -> tuple[int, int | None]:
    """(first byte, whole size or None) of a 206's `Content-Range: bytes a-b/size`; a range that
    does not start where it was asked for is refused (the parts would not join up)."""
    unit, _, spec = (value or "").partition(" ")
    span, _, size = spec.partition("/")
    first = _number(span.partition("-")[0])
    if unit.lower() != "bytes" or first is None:
        raise UnreachableUrl(f"the URL answered a Range request with an unreadable Content-Range ({value!r})")
    if first != asked:
        raise UnreachableUrl(f"the URL answered a Range request for byte {asked} with bytes from {first}")
    return first, _number(size)


def _guarded(pieces: Iterator[bytes], start: int) -> Iterator[bytes]:
    """The response's pieces, a failure part-way through translated (an Interrupted, with how far it got)."""
    received = 0
    with _translated(start, lambda: received):
        for piece in pieces:
            received += len(piece)
            yield piece


def _capped(first: list[bytes], rest: Iterator[bytes], start: int, total: int | None, limit: int) -> Iterator[bytes]:
    """The body's pieces (those read for the head, then the rest), refused past `limit` and
    checked against the size the origin announced."""
    position = start
    for piece in itertools.chain(first, rest):
        position += len(piece)
        if position > limit:
            raise ContentTooLarge(f"the body is larger than the limit of {limit} bytes")
        yield piece
    if total is not None and position != total:
        raise Interrupted(f"the URL sent {position} bytes of the {total} it announced", received=position - start)


@contextlib.contextmanager
def _translated(start: int | None = None, received: Callable[[], int] = lambda: 0):
    """httpx's errors as the domain's. With `start` (the body has begun), a broken or stalled
    transfer is Interrupted, which a fetch may resume."""
    import httpx

    try:
        yield
    except httpx.TooManyRedirects:
        raise UnreachableUrl(f"the URL redirected more than {MAX_REDIRECTS} times") from None
    except httpx.InvalidURL as exc:
        raise InvalidInput(f"url is malformed: {exc}") from None
    except UnicodeError as exc:  # idna.IDNAError: a host name no encoding accepts, here or in a redirect
        raise InvalidInput(f"the URL's host name is not a valid internationalised name ({exc})") from None
    except httpx.UnsupportedProtocol:
        raise InvalidInput("the URL redirected to a scheme other than http or https") from None
    except (httpx.ReadTimeout, httpx.ReadError, httpx.RemoteProtocolError) as exc:
        if start is None:
            raise UnreachableUrl(f"the URL could not be fetched ({type(exc).__name__}: {exc})") from None
        at = start + received()
        raise Interrupted(f"the URL stopped sending at byte {at} ({type(exc).__name__})", received=received()) from None
    except httpx.HTTPError as exc:
        raise UnreachableUrl(f"the URL could not be fetched ({type(exc).__name__}: {exc})") from None
