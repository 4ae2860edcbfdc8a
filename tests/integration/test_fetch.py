"""HttpFetcher against a real HTTP server on 127.0.0.1: statuses, redirects, size caps, timeouts, SSRF guard."""

from __future__ import annotations

import hashlib
import http.server
import ipaddress
import socket
import sys
import threading
import time
from urllib.parse import parse_qs, quote, urlsplit

import pytest

from allthethings.adapters.fetch import MAX_REDIRECTS, HttpFetcher, vetted_addresses
from allthethings.domain.content import SNIFF_BYTES, SizeLimits
from allthethings.domain.errors import ContentTooLarge, InvalidInput, UnreachableUrl
from allthethings.domain.network import is_public_address
from tests.conftest import FIXTURES

PAGE = (FIXTURES / "html" / "bbc-1" / "source.html").read_bytes()
MiB = 1024 * 1024
ONE_MIB = SizeLimits(**dict.fromkeys(SizeLimits.__dataclass_fields__, MiB))
TEN_MIB = SizeLimits(**dict.fromkeys(SizeLimits.__dataclass_fields__, 10 * MiB))


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str = "127.0.0.1"):
        super().__init__((host, 0), _Handler)
        self.paths: list[str] = []
        self.lock = threading.Lock()
        self.released = threading.Event()  # set at teardown so stalled handlers return

    @property
    def base(self) -> str:
        return f"http://{self.server_address[0]}:{self.server_address[1]}"

    def handle_error(self, request, client_address):
        # A client hanging up mid-body is what several tests provoke on purpose.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    def requests_to(self, prefix: str) -> int:
        with self.lock:
            return sum(1 for p in self.paths if p.startswith(prefix))


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # chunked bodies need 1.1
    server: _Server

    def log_message(self, *args):
        pass

    def _send(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802 - http.server's naming
        with self.server.lock:
            self.server.paths.append(self.path)
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        segments = parts.path.strip("/").split("/")
        route = segments[0]
        if route == "page":
            self._send(200, PAGE, "text/html; charset=utf-8")
        elif route == "status":
            self._send(int(segments[1]), f"status {segments[1]}".encode())
        elif route == "redirect":
            left = int(segments[1])
            if left == 0:
                self._send(200, b"arrived")
            else:
                self.send_response(302)
                self.send_header("Location", f"/redirect/{left - 1}")
                self.send_header("Content-Length", "0")
                self.end_headers()
        elif route == "to":  # a redirect to anywhere
            self.send_response(302)
            self.send_header("Location", query["url"])
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif route == "declared":
            size = int(query["n"])
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            # Send only a little: a fetcher that trusts the header never needs the rest.
            try:
                self.wfile.write(b"x" * min(size, 1024))
                self.wfile.flush()
            except OSError:
                pass
            self.close_connection = True
        elif route == "chunked":
            size, piece = int(query["n"]), b"y" * 16384
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                sent = 0
                while sent < size:
                    chunk = piece[: size - sent]
                    self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                    sent += len(chunk)
                self.wfile.write(b"0\r\n\r\n")
            except OSError:
                pass  # the client hung up, as it should once past its limit
            self.close_connection = True
        elif route == "stall":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"the beginning, and then nothing")
            self.wfile.flush()
            self.server.released.wait(30)
            self.close_connection = True
        elif route == "trickle":
            total = int(query["n"])
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(total))
            self.end_headers()
            try:
                for _ in range(total):
                    if self.server.released.wait(float(query["every"])):
                        break
                    self.wfile.write(b"z")
                    self.wfile.flush()
            except OSError:
                pass
            self.close_connection = True
        else:
            self._send(404, b"no such route")


@pytest.fixture(scope="module")
def server():
    srv = _Server()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.released.set()
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def fetcher():
    return HttpFetcher(allow_private=True, timeout_s=5)


def test_a_200_body_is_streamed_whole_with_its_head_and_type(server, fetcher):
    fetched = fetcher.fetch(f"{server.base}/page", limits=TEN_MIB)
    try:
        assert fetched.body.read() == PAGE
        assert fetched.size == len(PAGE)
        assert fetched.head == PAGE[:SNIFF_BYTES]
        assert fetched.declared_type == "text/html; charset=utf-8"
        assert fetched.final_url == fetched.url == f"{server.base}/page"
    finally:
        fetched.body.close()


@pytest.mark.parametrize("status", [404, 500])
def test_an_error_status_is_unreachable_and_names_the_status(status, server, fetcher):
    with pytest.raises(UnreachableUrl, match=str(status)):
        fetcher.fetch(f"{server.base}/status/{status}", limits=ONE_MIB)


def test_a_closed_port_is_unreachable(fetcher):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens on the port once the probe is closed.
    with pytest.raises(UnreachableUrl):
        fetcher.fetch(f"http://127.0.0.1:{port}/", limits=ONE_MIB)


def test_a_chain_of_three_redirects_is_followed_to_the_last_url(server, fetcher):
    fetched = fetcher.fetch(f"{server.base}/redirect/3", limits=ONE_MIB)
    assert fetched.final_url == f"{server.base}/redirect/0"
    assert fetched.url == f"{server.base}/redirect/3"
    assert fetched.body.read() == b"arrived"


def test_the_largest_allowed_number_of_redirects_is_followed(server, fetcher):
    fetched = fetcher.fetch(f"{server.base}/redirect/{MAX_REDIRECTS}", limits=ONE_MIB)
    assert fetched.final_url == f"{server.base}/redirect/0"


def test_six_redirects_are_unreachable(server, fetcher):
    assert MAX_REDIRECTS == 5
    with pytest.raises(UnreachableUrl, match="redirected more than 5 times"):
        fetcher.fetch(f"{server.base}/redirect/6", limits=ONE_MIB)


def test_a_body_announced_larger_than_the_limit_is_refused(server, fetcher):
    with pytest.raises(ContentTooLarge, match=str(5 * MiB)):
        fetcher.fetch(f"{server.base}/declared?n={5 * MiB}", limits=ONE_MIB)


def test_a_chunked_body_larger_than_the_limit_is_refused(server, fetcher):
    started = time.monotonic()
    with pytest.raises(ContentTooLarge):
        fetcher.fetch(f"{server.base}/chunked?n={3 * MiB}", limits=ONE_MIB)
    assert time.monotonic() - started < 10


def test_a_chunked_body_within_the_limit_is_accepted(server, fetcher):
    fetched = fetcher.fetch(f"{server.base}/chunked?n={MiB}", limits=ONE_MIB)
    assert fetched.size == MiB
    assert fetched.body.read() == b"y" * MiB


def test_a_loopback_url_is_refused_without_a_request_when_private_hosts_are_not_allowed(server):
    fetcher = HttpFetcher(allow_private=False, timeout_s=5)
    before = server.requests_to("/page")
    with pytest.raises(InvalidInput, match="non-public"):
        fetcher.fetch(f"{server.base}/page", limits=ONE_MIB)
    assert server.requests_to("/page") == before


def test_localhost_by_name_is_refused_without_a_request_when_private_hosts_are_not_allowed(server):
    fetcher = HttpFetcher(allow_private=False, timeout_s=5)
    port = server.server_address[1]
    before = server.requests_to("/page")
    with pytest.raises(InvalidInput):
        fetcher.fetch(f"http://localhost:{port}/page", limits=ONE_MIB)
    assert server.requests_to("/page") == before


NOT_PUBLIC = ["127.0.0.1", "10.0.0.1", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "::1",
              "fe80::1", "fc00::1", "::ffff:127.0.0.1", "224.0.0.1", "0.0.0.0",
              # and a few more that an attacker would try
              "fe80::1%eth0", "::ffff:169.254.169.254", "fd00:ec2::254", "ff02::1", "::", "255.255.255.255",
              "198.18.0.1", "2001:db8::1"]
PUBLIC = ["8.8.8.8", "2001:4860:4860::8888", "::ffff:8.8.8.8"]


@pytest.mark.parametrize("address", NOT_PUBLIC)
def test_a_non_public_address_is_not_public(address):
    assert is_public_address(address) is False


@pytest.mark.parametrize("address", PUBLIC)
def test_a_public_address_is_public(address):
    assert is_public_address(address) is True


@pytest.mark.parametrize("host", ["127.0.0.1", "10.0.0.1", "169.254.169.254", "::1", "::ffff:127.0.0.1", "localhost",
                                  "2130706433", "0x7f.1", "0177.0.0.1", "127.1", "0x7f000001", "0xa9.0xfe.0xa9.0xfe",
                                  "0251.0376.0251.0376", "2852039166", "::ffff:a9fe:a9fe", "64:ff9b::a9fe:a9fe"])
def test_a_host_resolving_to_a_non_public_address_is_invalid_input(host):
    # IP literals in every spelling and /etc/hosts names resolve without leaving the machine.
    with pytest.raises(InvalidInput):
        vetted_addresses(host, 80)


@pytest.mark.parametrize("host", PUBLIC)
def test_a_host_at_a_public_address_passes_the_check(host):
    assert vetted_addresses(host, 80) == [ipaddress.ip_address(host).compressed]


def test_a_server_that_stops_sending_the_body_is_unreachable_after_the_read_timeout(server):
    fetcher = HttpFetcher(allow_private=True, timeout_s=1)
    started = time.monotonic()
    with pytest.raises(UnreachableUrl, match="Timeout"):
        fetcher.fetch(f"{server.base}/stall", limits=ONE_MIB)
    assert time.monotonic() - started < 5


def test_a_server_that_trickles_the_body_is_abandoned_within_a_few_timeouts(server):
    fetcher = HttpFetcher(allow_private=True, timeout_s=1)
    started = time.monotonic()
    outcome = "completed"
    try:
        fetcher.fetch(f"{server.base}/trickle?n=12&every=0.4", limits=ONE_MIB)  # about 5 s in all
    except UnreachableUrl:
        outcome = "unreachable"
    elapsed = time.monotonic() - started
    # Abandoned at the first byte after three timeouts (about 3.2 s), well before the trickle ends
    # (about 5 s); the margin is for a busy CI machine.
    assert outcome == "unreachable" and elapsed < 4.5, f"fetch {outcome} after {elapsed:.1f}s"


# -- the connection goes where the check looked ------------------------------------------------
# 127.0.0.1 plays the public internet and 127.0.0.2 our private network (Linux routes all of
# 127/8 to loopback); names resolve through a resolver the test controls.


@pytest.fixture(scope="module")
def private_server():
    srv = _Server("127.0.0.2")
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.released.set()
    srv.shutdown()
    srv.server_close()


def _pretend_public(address: str) -> bool:
    return address == "127.0.0.1"


class _Resolver:
    """public.test is 127.0.0.1, private.test is 127.0.0.2, rebind.test is public once, then private."""

    def __init__(self):
        self.asked: list[str] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append(host)
        if host == "rebind.test":
            return ["127.0.0.1"] if self.asked.count(host) == 1 else ["127.0.0.2"]
        return {"public.test": ["127.0.0.1"], "private.test": ["127.0.0.2"],
                "mixed.test": ["127.0.0.1", "127.0.0.2"]}.get(host, [])


def _fetcher(resolver=None) -> HttpFetcher:
    return HttpFetcher(allow_private=False, timeout_s=5, resolver=resolver or _Resolver(), allowed=_pretend_public)


def test_a_name_is_resolved_once_per_connection_and_the_socket_goes_to_the_vetted_address(server):
    resolver = _Resolver()
    port = server.server_address[1]
    fetched = _fetcher(resolver).fetch(f"http://public.test:{port}/page", limits=TEN_MIB)
    assert fetched.body.read() == PAGE
    assert resolver.asked == ["public.test"]  # httpx never looked the name up itself


def test_a_rebinding_name_cannot_move_a_connection_to_a_private_address(server, private_server):
    resolver = _Resolver()
    fetcher = _fetcher(resolver)
    before = private_server.requests_to("/")
    port = server.server_address[1]
    assert fetcher.fetch(f"http://rebind.test:{port}/page", limits=TEN_MIB).size == len(PAGE)
    fresh = _fetcher(resolver)  # a new connection asks again, and gets the private answer: refused
    with pytest.raises(InvalidInput, match="non-public"):
        fresh.fetch(f"http://rebind.test:{private_server.server_address[1]}/page", limits=TEN_MIB)
    assert private_server.requests_to("/") == before


def test_a_name_with_any_private_address_is_refused(server, private_server):
    before = private_server.requests_to("/")
    with pytest.raises(InvalidInput):
        _fetcher().fetch(f"http://mixed.test:{server.server_address[1]}/page", limits=TEN_MIB)
    assert private_server.requests_to("/") == before


@pytest.mark.parametrize("target", ["http://private.test:{port}/page", "http://127.0.0.2:{port}/page",
                                    "http://2130706434:{port}/page", "http://0x7f.0.0.2:{port}/page",
                                    "http://[::ffff:127.0.0.2]:{port}/page"])
def test_a_redirect_into_private_space_is_refused_before_any_request_reaches_it(server, private_server, target):
    before = private_server.requests_to("/")
    hop = target.format(port=private_server.server_address[1])
    with pytest.raises(InvalidInput, match="non-public"):
        _fetcher().fetch(f"http://public.test:{server.server_address[1]}/to?url={quote(hop, safe='')}", limits=TEN_MIB)
    assert private_server.requests_to("/") == before


@pytest.mark.parametrize("target", ["file:///etc/passwd", "ftp://public.test/x", "gopher://public.test:70/"])
def test_a_redirect_to_another_scheme_is_invalid_input(server, target):
    with pytest.raises(InvalidInput, match="scheme"):
        _fetcher().fetch(f"http://public.test:{server.server_address[1]}/to?url={quote(target, safe='')}",
                         limits=TEN_MIB)


def test_proxies_from_the_environment_are_ignored(server, monkeypatch):
    # A proxy would make the connection for us, to wherever it resolved the name.
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.2:9")
    monkeypatch.setenv("ALL_PROXY", "http://127.0.0.2:9")
    fetched = _fetcher().fetch(f"http://public.test:{server.server_address[1]}/page", limits=TEN_MIB)
    assert fetched.size == len(PAGE)


def test_the_limit_is_the_one_for_the_kind_the_first_bytes_show(server):
    limits = SizeLimits(text=10 * MiB, html=1024, pdf=10 * MiB, audio=10 * MiB, video=10 * MiB)
    fetcher = HttpFetcher(allow_private=True, timeout_s=5)
    with pytest.raises(ContentTooLarge, match="1024"):
        fetcher.fetch(f"{server.base}/page", limits=limits)  # an HTML page of more than 1 KiB
    fetched = fetcher.fetch(f"{server.base}/chunked?n={2 * MiB}", limits=limits)  # 2 MiB of text
    assert fetched.size == 2 * MiB


def test_a_fetch_hashes_the_body_it_returns(server):
    fetched = HttpFetcher(allow_private=True, timeout_s=5).fetch(f"{server.base}/page", limits=TEN_MIB)
    assert fetched.sha256 == hashlib.sha256(PAGE).hexdigest()
