"""Fetching a URL with httpx: streamed into a spooled temporary file, size-capped, every hop vetted.

Without ALLOW_PRIVATE_URLS, a host that resolves to a loopback, private,
link-local or otherwise non-public address is refused, on the first request
and on every redirect.
"""

from __future__ import annotations

import ipaddress
import socket
import tempfile
import time

from allthethings.domain.content import SNIFF_BYTES
from allthethings.domain.errors import ContentTooLarge, InvalidInput, UnreachableUrl
from allthethings.ports import Fetched, Fetcher

MAX_REDIRECTS = 5
# The whole download may take this many read timeouts: a server trickling bytes just under the
# read timeout cannot hold a fetch open for ever.
TOTAL_TIMEOUTS = 3


def is_public_address(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def check_public_host(host: str) -> None:
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        raise UnreachableUrl(f"the host {host!r} could not be resolved") from None
    for info in infos:
        if not is_public_address(info[4][0]):
            raise InvalidInput(f"the host {host!r} resolves to a non-public address, which is not allowed")


class HttpFetcher(Fetcher):
    def __init__(self, *, allow_private: bool, timeout_s: float = 20.0, spool_bytes: int = 8 * 1024 * 1024):
        self.allow_private = allow_private
        self.timeout_s = timeout_s
        self.spool_bytes = spool_bytes
        self._http = None

    def _client(self):
        if self._http is None:
            import httpx

            hooks = [] if self.allow_private else [lambda request: check_public_host(request.url.host)]
            self._http = httpx.Client(
                follow_redirects=True, max_redirects=MAX_REDIRECTS,
                timeout=httpx.Timeout(self.timeout_s, connect=5.0),
                headers={"User-Agent": "allthethings/0.1 (+https://github.com/allthethings)"},
                event_hooks={"request": hooks})
        return self._http

    def fetch(self, url: str, max_bytes: int) -> Fetched:
        import httpx

        body = tempfile.SpooledTemporaryFile(max_size=self.spool_bytes)
        try:
            with self._client().stream("GET", url) as response:
                if response.status_code >= 400:
                    raise UnreachableUrl(f"the URL answered HTTP {response.status_code}")
                declared_length = response.headers.get("content-length")
                if declared_length and declared_length.isdigit() and int(declared_length) > max_bytes:
                    raise ContentTooLarge(f"the body is {declared_length} bytes; the limit is {max_bytes}")
                size = 0
                head = b""
                deadline = time.monotonic() + self.timeout_s * TOTAL_TIMEOUTS
                for piece in response.iter_bytes():
                    if time.monotonic() > deadline:
                        raise UnreachableUrl(
                            f"the URL did not finish sending within {self.timeout_s * TOTAL_TIMEOUTS:.0f} s")
                    size += len(piece)
                    if size > max_bytes:
                        raise ContentTooLarge(f"the body is larger than the limit of {max_bytes} bytes")
                    if len(head) < SNIFF_BYTES:
                        head += piece[:SNIFF_BYTES - len(head)]
                    body.write(piece)
                body.seek(0)
                return Fetched(url=url, final_url=str(response.url),
                               declared_type=response.headers.get("content-type"),
                               body=body, size=size, head=head)
        except httpx.TooManyRedirects:
            body.close()
            raise UnreachableUrl(f"the URL redirected more than {MAX_REDIRECTS} times") from None
        except httpx.HTTPError as exc:
            body.close()
            raise UnreachableUrl(f"the URL could not be fetched ({type(exc).__name__}: {exc})") from None
        except BaseException:
            body.close()
            raise
