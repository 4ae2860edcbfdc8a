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

import hashlib
import socket
import tempfile
import time
from collections.abc import Callable
from urllib.parse import unquote

from allthethings.domain.content import SNIFF_BYTES, SizeLimits
from allthethings.domain.errors import ContentTooLarge, InvalidInput, UnreachableUrl
from allthethings.domain.network import is_public_address, literal_address
from allthethings.ports import Fetched, Fetcher

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

    def fetch(self, url: str, limits: SizeLimits) -> Fetched:
        import httpx

        body = tempfile.SpooledTemporaryFile(max_size=self.spool_bytes)
        try:
            with self._client().stream("GET", url) as response:
                if response.status_code >= 400:
                    raise UnreachableUrl(f"the URL answered HTTP {response.status_code}")
                declared_type = response.headers.get("content-type")
                final_url = str(response.url)
                declared = response.headers.get("content-length", "")
                declared_size = int(declared) if declared.isdigit() else None
                limit = limits.ceiling
                if declared_size is not None and declared_size > limit:
                    raise ContentTooLarge(f"the body is {declared_size} bytes; the limit is {limit}")
                size, head, digest, known = 0, b"", hashlib.sha256(), False
                deadline = time.monotonic() + self.timeout_s * TOTAL_TIMEOUTS
                for piece in response.iter_bytes():
                    if time.monotonic() > deadline:
                        raise UnreachableUrl(
                            f"the URL did not finish sending within {self.timeout_s * TOTAL_TIMEOUTS:.0f} s")
                    if len(head) < SNIFF_BYTES:
                        head += piece[:SNIFF_BYTES - len(head)]
                    if not known and len(head) >= SNIFF_BYTES:
                        limit, known = limits.for_body(head, declared_type, final_url), True
                        if declared_size is not None and declared_size > limit:
                            raise ContentTooLarge(f"the body is {declared_size} bytes; the limit for it is {limit}")
                    size += len(piece)
                    if size > limit:
                        raise ContentTooLarge(f"the body is larger than the limit of {limit} bytes")
                    digest.update(piece)
                    body.write(piece)
                if not known:  # a body shorter than the sniffing window
                    limit = limits.for_body(head, declared_type, final_url)
                    if size > limit:
                        raise ContentTooLarge(f"the body is larger than the limit of {limit} bytes")
                body.seek(0)
                return Fetched(url=url, final_url=final_url, declared_type=declared_type,
                               body=body, size=size, head=head, sha256=digest.hexdigest())
        except httpx.TooManyRedirects:
            body.close()
            raise UnreachableUrl(f"the URL redirected more than {MAX_REDIRECTS} times") from None
        except httpx.InvalidURL as exc:
            body.close()
            raise InvalidInput(f"url is malformed: {exc}") from None
        except UnicodeError as exc:  # idna.IDNAError: a host name no encoding accepts, here or in a redirect
            body.close()
            raise InvalidInput(f"the URL's host name is not a valid internationalised name ({exc})") from None
        except httpx.UnsupportedProtocol:
            body.close()
            raise InvalidInput("the URL redirected to a scheme other than http or https") from None
        except httpx.HTTPError as exc:
            body.close()
            raise UnreachableUrl(f"the URL could not be fetched ({type(exc).__name__}: {exc})") from None
        except BaseException:
            body.close()
            raise
