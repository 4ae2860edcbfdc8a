"""The bad-input corpus: every request here is one a careless or hostile client could send.

Each gets a clear JSON 4xx naming the problem, or an asset that ends in an error status
after processing (a source: a `last_error`, or items refused with their reasons, after the
source worker has run); none gets a 5xx, none leaves a half-written record, and none reaches a
private address. Requests go through the template's route table to the real handlers, with
the real fetcher and extractor against real HTTP servers on loopback.

Address policy: 127.0.0.1 plays the public internet and 127.0.0.2 our private network (a
canary server that counts every request it gets). The real policy — which addresses are
public — is proven address by address in test_fetch.py; here the question is whether any
path through the API gets a request past it.
"""

from __future__ import annotations

import dataclasses
import gzip
import http.server
import json
import threading
import time
from urllib.parse import parse_qs, quote, urlsplit

import pytest

from allthethings import bootstrap
from allthethings.adapters.extract import DocumentExtractor
from allthethings.adapters.fetch import HttpFetcher
from allthethings.config import Settings
from allthethings.domain.content import SizeLimits
from tests.fakes import fake_deps
from tests.integration.test_sources import page, rss, sitemap, sitemap_index
from tests.unit.test_handlers import KEY, call, process_all
from tests.unit.test_source_handlers import NO_FAILURES, work_sources

KiB = 1024
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
BODIES: dict[str, tuple[str | None, bytes]] = {
    "empty": ("text/plain", b""),
    "garbage": ("text/plain", bytes((i * 7919) % 256 for i in range(4096))),
    "png-said-html": ("text/html", PNG),
    "png-said-pdf": ("application/pdf", PNG),
    "zip-said-text": ("text/plain", b"PK\x03\x04" + b"\x00" * 200),
    "exe-said-text": ("text/plain", b"MZ\x90\x00" + b"\x00" * 200),
    "elf": (None, b"\x7fELF" + b"\x00" * 200),
    "gzip-said-html": ("text/html", b"\x1f\x8b\x08\x00" + b"\x00" * 100),
    "broken-pdf": ("application/pdf", b"%PDF-1.7\n" + b"\x00garbage" * 50),
    "html-said-pdf-but-empty": ("application/pdf", b"<html><head><script>x()</script></head><body></body></html>"),
    "only-whitespace": ("text/plain", b" \n\t \r\n" * 100),
    "only-markup": ("text/html", b"<!doctype html><html><head><style>p{}</style></head><body><div></div></body>"),
    "nul-in-text": ("text/plain", b"hello\x00world" * 20),
    "big-text": ("text/plain", b"word " * (40 * KiB)),  # 200 KiB of text, limit 64 KiB
    "big-html": ("text/html", b"<p>" + b"word " * (40 * KiB) + b"</p>"),
    "declared-huge": ("text/plain", b"x" * KiB),  # sent with a Content-Length of 10 GB
    "mp3-garbage": ("audio/mpeg", b"ID3" + b"\x00" * 10),  # an audio file too short to hold sound
}


def _zip(entries: dict[str, bytes]) -> bytes:
    import io
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data, compress_type=zipfile.ZIP_STORED if name == "mimetype" else None)
    return out.getvalue()


_CONTENT_TYPES = (b'<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
                  b'<Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument'
                  b'.wordprocessingml.document.main+xml"/></Types>')


def _png_declaring(width: int, height: int) -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def _image(kind: str, **save) -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (64, 48), "white").save(out, kind, **save)
    return out.getvalue()


def _tiff_pages(count: int) -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    pages = [Image.new("L", (2, 2), 255) for _ in range(count)]
    pages[0].save(out, "TIFF", save_all=True, append_images=pages[1:])
    return out.getvalue()


def _encrypted_pdf() -> bytes:
    import io

    from pypdf import PdfWriter

    writer = PdfWriter()
    writer.add_blank_page(200, 200)
    writer.encrypt(user_password="swordfish", owner_password="swordfish")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


_EPUB_CONTAINER = (b'<?xml version="1.0"?><container version="1.0" '
                   b'xmlns="urn:oasis:names:tc:opendocument:xmlns:container"><rootfiles>'
                   b'<rootfile full-path="content.opf" media-type="application/oebps-package+xml"/>'
                   b'</rootfiles></container>')
_EMPTY_OPF = (b'<?xml version="1.0"?><package xmlns="http://www.idpf.org/2007/opf" version="3.0" '
              b'unique-identifier="id"><metadata xmlns:dc="http://purl.org/dc/elements/1.1/">'
              b'<dc:identifier id="id">x</dc:identifier>'
              b'<dc:title>Empty</dc:title><dc:language>en</dc:language></metadata><manifest/><spine/></package>')
_SHEET = (b'<?xml version="1.0"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
          b'<dimension ref="A1:A1000000"/><sheetData>' + b"".join(b'<row r="%d"/>' % n for n in range(1, 200_001))
          + b'</sheetData></worksheet>')

# The formats of issue 16, each broken the way a hostile or careless file is (small generated files).
BODIES.update({
    "docx-zip-bomb": (None, _zip({"[Content_Types].xml": _CONTENT_TYPES, "word/document.xml": bytes(40 << 20)})),
    "docx-password-protected": (None, b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(1024)),
    "xlsx-declaring-a-million-empty-rows": (
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        _zip({"[Content_Types].xml": b'<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/'
              b'2006/content-types"><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-'
              b'officedocument.spreadsheetml.sheet.main+xml"/></Types>',
              "xl/workbook.xml": b'<?xml version="1.0"?><workbook xmlns="http://schemas.openxmlformats.org/'
              b'spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
              b'<sheets><sheet name="Empty" sheetId="1" r:id="rId1"/></sheets></workbook>',
              "xl/_rels/workbook.xml.rels": b'<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats'
              b'.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/'
              b'officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/></Relationships>',
              "xl/worksheets/sheet1.xml": _SHEET})),
    "png-declaring-100000-by-100000": (None, _png_declaring(100_000, 100_000)),
    "pdf-password-protected": ("application/pdf", _encrypted_pdf()),
    "jpeg-truncated": ("image/jpeg", _image("JPEG", quality=90)[:400]),
    "epub-without-content-documents": (None, _zip({"mimetype": b"application/epub+zip",
                                                    "META-INF/container.xml": _EPUB_CONTAINER,
                                                    "content.opf": _EMPTY_OPF})),
    "tiff-of-500-pages": (None, _tiff_pages(500)),
})


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str):
        super().__init__((host, 0), _Handler)
        self.hits: list[str] = []
        self.lock = threading.Lock()

    @property
    def base(self) -> str:
        return f"http://{self.server_address[0]}:{self.server_address[1]}"

    def handle_error(self, request, client_address):
        pass  # clients hang up mid-body on purpose (size limits)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, *args):
        pass

    def do_GET(self):  # noqa: N802 - http.server's naming
        with self.server.lock:
            self.server.hits.append(self.path)
        parts = urlsplit(self.path)
        name = parts.path.strip("/")
        if name == "to":
            self.send_response(302)
            self.send_header("Location", parse_qs(parts.query)["url"][0])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if name.startswith("status-"):
            code = int(name.split("-", 1)[1])
            self.send_response(code)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"no")
            return
        declared, body = BODIES.get(name, ("text/plain", b"lighthouse keepers trimmed the wicks"))
        self.send_response(200)
        if declared:
            self.send_header("Content-Type", declared)
        self.send_header("Content-Length", str(10 * 1024 ** 3 if name == "declared-huge" else len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except OSError:
            pass
        self.close_connection = True


def _serve(host: str) -> _Server:
    server = _Server(host)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def public():
    server = _serve("127.0.0.1")
    yield server
    server.shutdown()


@pytest.fixture(scope="module")
def canary():
    server = _serve("127.0.0.2")
    yield server
    server.shutdown()
    assert server.hits == [], f"requests reached the private address: {server.hits}"


@pytest.fixture
def deps(public, canary):
    def resolve(host, port):
        return {"public.test": ["127.0.0.1"], "private.test": ["127.0.0.2"], "localhost": ["127.0.0.1", "::1"],
                "metadata.google.internal": ["169.254.169.254"]}.get(host, [])

    fetcher = HttpFetcher(allow_private=False, timeout_s=3, resolver=resolve, allowed=lambda a: a == "127.0.0.1")
    limits = SizeLimits(text=64 * KiB, html=64 * KiB, pdf=64 * KiB, audio=64 * KiB, video=64 * KiB)
    d = fake_deps(fetcher=fetcher, extractor=DocumentExtractor(),
                  settings=Settings(chunk_tokens=20, chunk_overlap=4, size_limits=limits, api_keys=f"unit={KEY}"))
    with bootstrap.use(d):
        yield d


def submit(url) -> tuple[int, dict]:
    return call("POST", "/api/assets", json.dumps({"url": url}), {"Content-Type": "application/json"})


def clear_4xx(status: int, body, deps, *words: str) -> None:
    assert 400 <= status < 500, f"expected a 4xx, got {status}: {body}"
    assert isinstance(body, dict) and body["error"]["code"] and body["error"]["message"]
    for word in words:
        assert word in body["error"]["message"], body["error"]["message"]
    assert deps.store.assets == {} and deps.blobs.objects == {} and deps.queue.messages == []


# -- every spelling of a private address, directly and by redirect ---------------------------------

PRIVATE_HOSTS = ["127.0.0.2", "2130706434", "0x7f.0.0.2", "0177.0.0.2", "127.0.2", "0x7f000002",
                 "[::ffff:127.0.0.2]", "[::ffff:7f00:2]", "private.test", "localhost", "[::1]", "0.0.0.0",
                 "169.254.169.254", "metadata.google.internal", "[::ffff:169.254.169.254]", "[fd00:ec2::254]",
                 "10.0.0.1", "172.16.0.1", "192.168.1.1", "100.64.0.1", "[fe80::1]", "[fc00::1]", "224.0.0.1",
                 "255.255.255.255", "[64:ff9b::a9fe:a9fe]", "[2002:a9fe:a9fe::1]", "198.18.0.1", "240.0.0.1",
                 "127%2E0%2E0%2E2", "0x7f%2E0%2E0%2E2"]


@pytest.mark.parametrize("host", PRIVATE_HOSTS)
def test_a_url_at_a_private_address_is_refused_without_a_request(deps, canary, host):
    port = canary.server_address[1]
    status, body = submit(f"http://{host}:{port}/page")
    assert status in (400, 422), body
    clear_4xx(status, body, deps)


@pytest.mark.parametrize("host", ["127.0.0.2", "2130706434", "0x7f.0.0.2", "[::ffff:127.0.0.2]", "private.test",
                                  "169.254.169.254", "127%2E0%2E0%2E2"])
def test_a_redirect_into_private_space_is_refused_without_a_request(deps, public, canary, host):
    hop = f"http://{host}:{canary.server_address[1]}/latest/meta-data/"
    status, body = submit(f"http://public.test:{public.server_address[1]}/to?url={quote(hop, safe='')}")
    clear_4xx(status, body, deps, "non-public")


# -- malformed URLs -------------------------------------------------------------------------------

@pytest.mark.parametrize("raw", [
    "", "   ", "not a url", "ftp://public.test/x", "file:///etc/passwd", "gopher://public.test/", "javascript:alert(1)",
    "data:text/plain,hello", "http://", "http:///nohost", "http://user:pass@public.test/", "http://public.test:99999/",
    "http://public.test:-1/", "http://[::1/", "http://exa mple.com/", "http://public.test/\x00", "http://ex\u200bample.com/",
    "http://" + "a" * 70 + ".com/", "http://public.test/" + "a" * 5000, 42, None, ["http://public.test/"],
    {"url": "http://public.test/"}, "http://xn--a-/x", "http://xn--/", "http://exa%2Fmple.com/",
])
def test_a_malformed_url_is_a_400_or_422_naming_the_problem(deps, raw):
    status, body = submit(raw)
    assert status in (400, 422), body
    clear_4xx(status, body, deps)


@pytest.mark.parametrize("body", ["", "{", "[]", '"http://public.test/"', '{"url": "http://public.test/", "x": '
                                  + "1" * 10 + "}", "\xff\xfe", '{"url": "\\ud800"}'])
def test_a_body_that_is_not_a_submission_is_a_400(deps, body):
    status, got = call("POST", "/api/assets", body, {"Content-Type": "application/json"})
    assert status == 400, got
    clear_4xx(status, got, deps)


# -- bodies that lie, are empty, too big or not text ------------------------------------------------

@pytest.mark.parametrize("name", sorted(BODIES))
def test_a_bad_body_is_refused_or_ends_in_an_error_status(deps, public, name):
    status, body = submit(f"http://public.test:{public.server_address[1]}/{name}")
    assert status < 500, body
    if status >= 400:
        clear_4xx(status, body, deps)
        return
    process_all(deps)
    asset = deps.store.get(body["id"])
    assert asset.status.is_error or name == "mp3-garbage", f"{name} ended {asset.status}"
    assert asset.error or name == "mp3-garbage"
    for word in REASONS.get(name, ()):
        assert word in asset.error, (name, asset.error)


# What the error of each of issue 16's broken files must say (the others: any clear reason).
REASONS = {"docx-zip-bomb": ("zip bomb",), "xlsx-declaring-a-million-empty-rows": ("no text",),
           "png-declaring-100000-by-100000": ("pixels",), "pdf-password-protected": ("password",),
           "jpeg-truncated": ("truncated",), "epub-without-content-documents": ("no content documents",),
           "tiff-of-500-pages": ("pages",)}


# Origins that misbehave part-way through a body too large to fetch inside the request, fetched
# behind the queue by the fetch function (in parts of 16 KiB; an invocation fetches for at least 1 s).
ORIGIN_FAULTS = {
    "drops the connection, then serves the rest": ("drop_at=20000", "staged"),
    "announces more than it sends": ("declare=60000", "error"),
    "grows past the limit, with no length": ("chunked=1&size=80000", "error"),
    "answers a Range request with the whole body": ("ranges=0&rate=20000", "error"),
    "is slow but takes Range requests": ("rate=30000", "staged"),
}


@pytest.fixture
def origin():
    from devstack.origin import Origin

    with Origin() as server:
        yield server


@pytest.mark.parametrize("fault", sorted(ORIGIN_FAULTS))
def test_an_origin_that_misbehaves_part_way_ends_staged_or_in_an_error_never_stuck(deps, origin, fault):
    from allthethings.domain.assets import Status
    from tests.unit.test_handlers import drain

    query, expected = ORIGIN_FAULTS[fault]
    size = int(query.split("size=")[1]) if "size=" in query else 50_000
    deps.settings = dataclasses.replace(deps.settings, inline_fetch_bytes=4 * KiB, fetch_part_bytes=16 * KiB,
                                        fetch_slice_s=0.001)
    body = (b"ID3" + bytes(range(256)) * (size // 256 + 1))[:size]
    origin.put("/long.mp3", body, "audio/mpeg")
    status, got = submit(f"http://public.test:{origin.base.rsplit(':', 1)[1]}/long.mp3?{query}")
    assert status == 202 and got["status"] == "FETCHING", got
    for _ in range(30):
        if not deps.fetches.messages:
            break
        assert drain(deps.fetches, "FetchFunction") == {"batchItemFailures": []}
    asset = deps.store.get(got["id"])
    if expected == "staged":
        assert asset.status is Status.SUBMITTED and deps.blobs.objects[asset.staged_key] == body
    else:
        assert asset.status is Status.PROCESSING_ERROR and asset.error.startswith("fetching the URL failed"), asset
    assert not deps.blobs.uploads, "no unfinished upload is left behind"


@pytest.mark.parametrize("code", [404, 410, 500, 503])
def test_a_url_answering_an_error_is_a_422(deps, public, code):
    status, body = submit(f"http://public.test:{public.server_address[1]}/status-{code}")
    clear_4xx(status, body, deps, str(code))


# -- search and listing parameters ------------------------------------------------------------------

@pytest.mark.parametrize("query", [
    "", "q=", "q=%20%20", "q=" + "a" * 5000, "q=x&mode=fuzzy", "q=x&limit=0", "q=x&limit=51", "q=x&limit=-1",
    "q=x&limit=1e3", "q=x&kind=sculpture", "q=x&kind=text,%00", "q=x&host=" + "h" * 300, "q=x&host=a%20b",
    "q=x&after=yesterday", "q=x&before=2024-13-01", "q=x&after=2025-01-01&before=2024-01-01",
    "q=x&cursor=garbage", "q=x&cursor=" + "A" * 4000, "q=x&cursor=eyJvIjogLTF9", "q=x&limit=%C2%B2",
    "q=x&limit=%D9%A3",
])
def test_a_bad_search_parameter_is_a_400(deps, query):
    status, body = call("GET", f"/api/search?{query}")
    assert status == 400, body
    assert body["error"]["code"] == "invalid_input" and body["error"]["message"]


@pytest.mark.parametrize("text", ["%E2%80%AE%E2%80%8B", "%F0%9F%94%A6%F0%9F%8C%8A", "%00", "%ED%A0%80", "%EF%BF%BF",
                                  "%22%27%3B--%20DROP%20TABLE", "NEAR%28a%20b%29%20OR%20*", "%5C%5C%5C"])
def test_an_odd_but_well_formed_query_is_answered_not_crashed(deps, text):
    status, body = call("GET", f"/api/search?q={text}&mode=keyword")
    assert status in (200, 400), body
    status, body = call("GET", f"/api/search?q={text}")
    assert status in (200, 400), body


@pytest.mark.parametrize("path", ["/api/assets?cursor=%FF%FE", "/api/assets?limit=101", "/api/assets/..%2F..%2Fetc",
                                  "/api/assets/" + "f" * 500, "/api/assets/%00", "/api/assets?limit=%C2%B2"])
def test_bad_listing_parameters_and_ids_are_4xx(deps, path):
    status, body = call("GET", path)
    assert 400 <= status < 500, body


# -- bodies that are not text, or JSON no parser should follow -------------------------------------

NOT_UTF8 = b'{"url": "http://public.test/\xff\xfe"}'
DEEP_JSON = "[" * 100_000 + "]" * 100_000
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.mark.parametrize("path, body, headers", [
    ("/api/assets", NOT_UTF8, {"Content-Type": "application/json"}),
    ("/api/assets", NOT_UTF8, {"Content-Type": "application/octet-stream"}),  # sent base64-encoded
    ("/api/documents", NOT_UTF8, {"Content-Type": "application/octet-stream"}),
    ("/v1/embeddings", NOT_UTF8, {"Content-Type": "application/octet-stream"}),
    ("/api/documents", DEEP_JSON, {"Content-Type": "application/json"}),
    ("/v1/embeddings", DEEP_JSON, {"Content-Type": "application/json"}),
    ("/api/assets", DEEP_JSON, {"Content-Type": "application/json"}),
    ("/api/documents", '{"documents": [{"text": "a lone \\ud800 surrogate"}]}', {"Content-Type": "application/json"}),
    ("/api/documents", '{"documents": [{"text": "ok", "title": "\\udfff"}]}', {"Content-Type": "application/json"}),
    ("/api/documents", '{"documents": [{"text": "ok", "metadata": {"\\ud800": 1}}]}',
     {"Content-Type": "application/json"}),
    ("/v1/embeddings", '{"input": "\\ud800", "model": "all-MiniLM-L6-v2"}', {"Content-Type": "application/json"}),
    ("/api/documents", '{"documents": [{"text": "deep", "metadata": ' + '{"a": ' * 260 + "{}" + "}" * 260 + "}]}",
     {"Content-Type": "application/json"}),
])
def test_a_body_that_is_not_utf8_text_or_too_deep_is_a_400_naming_it(deps, path, body, headers):
    status, got = call("POST", path, body, headers)
    assert status == 400, got
    assert any(word in json.dumps(got) for word in ("body", "surrogate", "metadata")), got
    assert deps.store.list(10, None)[0] == [], "nothing is stored"


@pytest.mark.parametrize("path, body", [("/process", b"url=http%3A%2F%2Fpublic.test%2F\xff\xfe"),
                                        ("/session", b"key=\xff\xfe&next=%2F")])
def test_a_form_that_is_not_utf8_gets_the_page_with_an_error_not_a_500(deps, path, body):
    status, page = call("POST", path, body, {"Content-Type": "application/octet-stream"})
    assert status == 400, page
    assert "UTF-8" in page and "<html" in page


def test_a_redirect_to_a_host_name_no_encoding_accepts_is_a_4xx(deps, public):
    status, body = submit(f"http://public.test:{public.server_address[1]}/to?url={quote('http://xn--a-/x', safe='')}")
    assert status in (400, 422), body
    clear_4xx(status, body, deps)


# -- sources: feeds and sitemaps whose items become assets -------------------------------------------
#
# A bad source ends in a JSON 4xx at POST /api/sources, or in a source whose `last_error` or
# REFUSED items (each with its reason) say what was wrong, after the source worker has run its
# messages. None reaches the canary, and none holds up the next source: after each, a good feed
# added next is read and all its items submitted.

@pytest.fixture(scope="module")
def site():
    """The public origin of the sources' tests: one server for the module (stopping one takes half
    a second), emptied before each test."""
    from devstack.origin import Origin

    with Origin() as server:
        yield server


@pytest.fixture
def sources(deps, site, canary):
    """The deps, with the politeness delay off (the origin is ours) and a check after the test that
    another source still goes through and nothing reached the private network."""
    site.bodies.clear()
    site.requests.clear()
    deps.settings = dataclasses.replace(deps.settings, source_host_delay_s=0.0)
    yield deps
    a_good_feed_is_still_read_and_fully_submitted(deps, site)
    assert canary.hits == [], f"requests reached the private address: {canary.hits}"


def public_url(site, path: str) -> str:
    """The origin's `path` as the public internet names it (public.test resolves to 127.0.0.1)."""
    return f"http://public.test:{site.base.rsplit(':', 1)[1]}{path}"


def serve(site, path: str, body: bytes, content_type: str) -> str:
    site.put(path, body, content_type)
    return public_url(site, path)


def serve_pages(site, prefix: str, count: int) -> list[str]:
    return [serve(site, f"{prefix}/{n}", page(n), "text/html") for n in range(count)]


def post_source(url, **fields) -> tuple[int, dict]:
    return call("POST", "/api/sources", json.dumps({"url": url, **fields}), {"Content-Type": "application/json"})


def run_source_worker(deps) -> None:
    assert all(reply == NO_FAILURES for reply in work_sources(deps)), "a source message failed"


def shown(source_id: str) -> dict:
    status, body = call("GET", f"/api/sources/{source_id}")
    assert status == 200, body
    return body


def source_refused(status: int, body, deps, *words: str) -> None:
    """A clear JSON 4xx naming the problem, and no source kept or queued."""
    assert 400 <= status < 500, f"expected a 4xx, got {status}: {body}"
    assert isinstance(body, dict) and body["error"]["code"] and body["error"]["message"], body
    for word in words:
        assert word in body["error"]["message"], body["error"]["message"]
    assert deps.sources.sources == {} and deps.source_queue.messages == []


def a_good_feed_is_still_read_and_fully_submitted(deps, site) -> None:
    links = serve_pages(site, "/good", 3)
    status, source = post_source(serve(site, "/good.xml", rss([(f"Good {n}", u) for n, u in enumerate(links)]),
                                       "application/rss+xml"))
    assert status == 202, source
    run_source_worker(deps)
    assert shown(source["id"])["items"] == {"total": 3, "pending": 0, "submitted": 3, "refused": 0}


def test_a_feed_of_100000_items_is_cut_at_the_item_limit_and_the_rest_counted(sources, site):
    sources.settings = dataclasses.replace(sources.settings, source_max_items=200)
    link = serve_pages(site, "/posts", 1)[0]
    status, source = post_source(serve(site, "/big.xml", rss([(f"Post {n}", f"{link}?n={n}") for n in range(100_000)]),
                                       "application/rss+xml"))
    assert status == 202, source
    assert source["items"]["total"] == 200 and source["skipped"]["over_limit"] == 99_800
    run_source_worker(sources)
    assert shown(source["id"])["items"] == {"total": 200, "pending": 0, "submitted": 200, "refused": 0}


def test_a_sitemap_index_that_lists_itself_is_read_once(sources, site):
    pages = serve_pages(site, "/docs", 3)
    child = serve(site, "/sitemap-docs.xml", sitemap(pages), "application/xml")
    index = public_url(site, "/sitemap.xml")
    serve(site, "/sitemap.xml", sitemap_index([index, child, index]), "application/xml")
    status, source = post_source(index)
    assert status == 202 and source["kind"] == "sitemap_index", source
    run_source_worker(sources)
    after = shown(source["id"])
    assert after["items"] == {"total": 3, "pending": 0, "submitted": 3, "refused": 0}
    assert after["skipped"]["loop"] >= 1 and after["last_error"] is None
    assert [r["path"] for r in site.requests].count("/sitemap.xml") == 2  # the request's read and the worker's


def test_sitemap_indexes_that_list_each_other_are_each_read_once(sources, site):
    pages = serve_pages(site, "/docs", 2)
    a, b = public_url(site, "/a.xml"), public_url(site, "/b.xml")
    serve(site, "/a.xml", sitemap_index([b]), "application/xml")
    serve(site, "/b.xml", sitemap_index([a, serve(site, "/docs.xml", sitemap(pages), "application/xml")]),
          "application/xml")
    status, source = post_source(a)
    assert status == 202, source
    run_source_worker(sources)
    after = shown(source["id"])
    assert after["items"]["submitted"] == 2 and after["skipped"]["loop"] >= 1
    read = [r["path"] for r in site.requests]
    assert (read.count("/a.xml"), read.count("/b.xml"), read.count("/docs.xml")) == (2, 1, 1)


def test_a_gzip_bomb_sitemap_is_a_413_and_one_inside_an_index_is_counted_unreadable(sources, site):
    bomb = serve(site, "/sitemap.xml.gz", gzip.compress(b"<urlset>" + b" " * (60 * 1024 * 1024), compresslevel=9),
                 "application/gzip")
    status, body = post_source(bomb)
    source_refused(status, body, sources, "inflates")
    assert status == 413
    pages = serve_pages(site, "/docs", 2)
    index = serve(site, "/index.xml", sitemap_index([bomb, serve(site, "/docs.xml", sitemap(pages),
                                                                   "application/xml")]), "application/xml")
    status, source = post_source(index)
    assert status == 202, source
    run_source_worker(sources)
    after = shown(source["id"])
    assert after["items"]["submitted"] == 2 and after["skipped"]["unreadable_sitemap"] == 1


def test_items_at_private_addresses_are_each_refused_counted_and_shown_and_none_is_requested(sources, site,
                                                                                             public, canary):
    port = canary.server_address[1]
    hop = quote(f"http://127.0.0.2:{port}/latest/meta-data/", safe="")
    private = [f"http://127.0.0.2:{port}/admin", "http://169.254.169.254/latest/meta-data/", "http://10.0.0.5/",
               f"http://private.test:{port}/secret", f"http://[::ffff:127.0.0.2]:{port}/",
               f"http://public.test:{public.server_address[1]}/to?url={hop}"]
    good = serve_pages(site, "/posts", 1)
    status, source = post_source(serve(site, "/feed.xml", rss([(f"Item {n}", u) for n, u in
                                                                 enumerate(private + good)]), "application/rss+xml"))
    assert status == 202, source
    run_source_worker(sources)
    after = shown(source["id"])
    assert after["items"] == {"total": 7, "pending": 0, "submitted": 1, "refused": 6}
    assert len(after["refused"]) == 6 and good[0] not in {e["url"] for e in after["refused"]}
    for entry in after["refused"]:
        assert entry["state"] == "REFUSED" and "non-public address" in entry["reason"], entry
    assert sources.metrics.counts["source_items_refused"] == 6
    assert canary.hits == []


def test_duplicate_items_and_items_with_no_usable_url_are_counted_and_the_rest_submitted(sources, site):
    link, other = serve_pages(site, "/posts", 2)
    items = [f"<link>{link}</link>", f"<link>{link}#comments</link>", f"<link>{link}</link>", "", "<link></link>",
             "<link>   </link>", "<link>javascript:alert(1)</link>", "<link>ftp://public.test/x</link>",
             f"<link>{other}</link>"]
    body = ('<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>'
            + "".join(f"<item><title>Item {n}</title>{i}</item>" for n, i in enumerate(items))
            + "</channel></rss>").encode()
    status, source = post_source(serve(site, "/feed.xml", body, "application/rss+xml"))
    assert status == 202, source
    assert source["items"]["total"] == 2
    assert source["skipped"] == {"no_url": 3, "duplicate": 2, "over_limit": 0, "bad_url": 2}
    run_source_worker(sources)
    assert shown(source["id"])["items"] == {"total": 2, "pending": 0, "submitted": 2, "refused": 0}


def test_a_feed_that_changes_keeps_old_items_adds_new_ones_and_marks_a_broken_version(sources, site):
    links = serve_pages(site, "/posts", 4)
    url = serve(site, "/feed.xml", rss([("Post 0", links[0]), ("Post 1", links[1])]), "application/rss+xml")
    _, source = post_source(url)
    run_source_worker(sources)
    site.replace("/feed.xml", rss([("Post 2", links[2]), ("Post 3", links[3])]))
    assert call("POST", f"/api/sources/{source['id']}/refresh")[0] == 202
    run_source_worker(sources)
    after = shown(source["id"])
    assert after["items"] == {"total": 4, "pending": 0, "submitted": 4, "refused": 0} and after["last_error"] is None
    status, listed = call("GET", f"/api/assets?source={source['id']}")
    assert status == 200 and sorted(a["url"] for a in listed["assets"]) == sorted(links), "removed items stay"
    for broken, words in [(b"<rss><channel></chanel></rss>", "XML"),
                          (gzip.compress(b"<rss>" + b" " * (60 * 1024 * 1024)), "inflates"),
                          (b"<!doctype html><html><body>we moved</body></html>", "feed")]:
        site.replace("/feed.xml", broken)
        assert call("POST", f"/api/sources/{source['id']}/refresh")[0] == 202
        run_source_worker(sources)
        after = shown(source["id"])
        assert after["last_error"] and words in after["last_error"], (words, after["last_error"])
        assert after["items"]["submitted"] == 4 and len(call("GET", f"/api/assets?source={source['id']}")[1]
                                                          ["assets"]) == 4, "a broken version deletes nothing"


@pytest.mark.parametrize("body, content_type, status, words", [
    (b'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><url><loc>http://a/</loc></url', "application/xml",
     422, "XML"),
    (b'<?xml version="1.0"?><rss version="2.0"><channel><title>T</title></chanel></rss>', "application/rss+xml",
     422, "XML"),
    (b"<!doctype html><html><head><title>Blog</title></head><body><p>Hello<br></body></html>", "application/rss+xml",
     415, "HTML"),
    (b"<html><head><title>Blog</title></head><body><p>Hello</p></body></html>", "application/rss+xml", 415, "HTML"),
    (b'{"version": "https://jsonfeed.org/version/1.1", "items": []}', "application/rss+xml", 415, "feed"),
    (b"", "application/rss+xml", 415, "feed"),
    (bytes((i * 7919) % 256 for i in range(4096)), "application/rss+xml", 415, "feed"),
    (b"\x1f\x8b\x08\x00" + b"\x00" * 100, "application/gzip", 422, "gzip"),
])
def test_a_body_that_is_no_readable_feed_or_sitemap_is_a_4xx_naming_why(sources, site, body, content_type, status,
                                                                        words):
    got_status, got = post_source(serve(site, "/source", body, content_type))
    source_refused(got_status, got, sources, words)
    assert got_status == status, got


def test_a_billion_laughs_feed_is_read_in_bounded_time_without_expanding(sources, site):
    entities = '<!ENTITY l0 "lol">' + "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10))
    link = serve_pages(site, "/posts", 1)[0]
    body = (f'<?xml version="1.0"?><!DOCTYPE r [{entities}]><rss version="2.0"><channel><title>&l9;</title>'
            f"<item><title>&l9;</title><link>{link}</link></item></channel></rss>").encode()
    started = time.monotonic()
    status, source = post_source(serve(site, "/feed.xml", body, "application/rss+xml"))
    assert time.monotonic() - started < 20
    assert status < 500, source
    if status == 202:
        assert len(source["title"] or "") <= 1_000
        run_source_worker(sources)
        assert shown(source["id"])["items"]["submitted"] == 1
    else:
        source_refused(status, source, sources)


@pytest.mark.parametrize("host", ["127.0.0.2", "private.test", "169.254.169.254", "[::ffff:127.0.0.2]", "10.0.0.5"])
def test_an_html_page_linking_a_feed_at_a_private_address_is_refused_without_a_request(sources, site, canary,
                                                                                      host):
    feed = f"http://{host}:{canary.server_address[1]}/feed.xml"
    home = serve(site, "/", f'<!doctype html><html><head><title>Blog</title><link rel="alternate" '
                              f'type="application/rss+xml" href="{feed}"></head><body>Blog</body></html>'.encode(),
                 "text/html")
    status, body = post_source(home)
    source_refused(status, body, sources)
    assert status == 400, body
    assert canary.hits == []


@pytest.mark.parametrize("host", PRIVATE_HOSTS)
def test_a_source_at_a_private_address_is_refused_without_a_request(sources, canary, host):
    status, body = post_source(f"http://{host}:{canary.server_address[1]}/feed.xml")
    source_refused(status, body, sources)
    assert status == 400, body
    assert canary.hits == []


def test_a_source_redirecting_into_private_space_is_refused_without_a_request(sources, public, canary):
    hop = quote(f"http://127.0.0.2:{canary.server_address[1]}/feed.xml", safe="")
    status, body = post_source(f"http://public.test:{public.server_address[1]}/to?url={hop}")
    source_refused(status, body, sources, "non-public")
    assert canary.hits == []


@pytest.mark.parametrize("body, words", [
    ("{}", "url"),
    ('{"url": null}', "url"),
    ('{"url": 42}', "url"),
    ('{"url": "ftp://public.test/feed.xml"}', "http"),
    ('{"url": "not a url"}', ""),
    ('{"url": "%(feed)s", "interval": 600}', "interval"),
    ('{"url": "%(feed)s", "refresh_interval_s": 0}', "refresh_interval_s"),
    ('{"url": "%(feed)s", "refresh_interval_s": 299}', "refresh_interval_s"),
    ('{"url": "%(feed)s", "refresh_interval_s": 2592001}', "refresh_interval_s"),
    ('{"url": "%(feed)s", "refresh_interval_s": 100000000000000000000}', "refresh_interval_s"),
    ('{"url": "%(feed)s", "refresh_interval_s": -3600}', "refresh_interval_s"),
    ('{"url": "%(feed)s", "refresh_interval_s": "3600"}', "refresh_interval_s"),
    ('{"url": "%(feed)s", "refresh_interval_s": "hourly"}', "refresh_interval_s"),
    ('{"url": "%(feed)s", "refresh_interval_s": 3600.5}', "refresh_interval_s"),
    ('{"url": "%(feed)s", "refresh_interval_s": true}', "refresh_interval_s"),
    ('{"url": "%(feed)s", "refresh_interval_s": [3600]}', "refresh_interval_s"),
    ("", "body"),
    ("[]", ""),
    ('"%(feed)s"', ""),
    ("not json", "JSON"),
])
def test_a_body_that_is_not_a_new_source_is_a_400_before_any_request(sources, site, body, words):
    feed = serve(site, "/feed.xml", rss([("Post", public_url(site, "/posts/1"))]), "application/rss+xml")
    status, got = call("POST", "/api/sources", body % {"feed": feed}, {"Content-Type": "application/json"})
    source_refused(status, got, sources, words)
    assert status == 400, got
    assert site.requests == [], "a bad body is refused before the feed is read"


ZERO_ID = "src_" + "0" * 32


@pytest.mark.parametrize("method, path, status", [
    ("GET", "/api/sources/nope", 400),
    ("GET", "/api/sources/SRC_" + "0" * 32, 400),
    ("GET", "/api/sources/src_" + "g" * 32, 400),
    ("GET", "/api/sources/src_" + "0" * 31, 400),
    ("GET", "/api/sources/src_" + "0" * 500, 400),
    ("GET", "/api/sources/%00", 404),  # no route matches it
    ("GET", "/api/sources/..%2F..%2Fetc", 404),
    ("GET", f"/api/sources/{ZERO_ID}", 404),
    ("POST", "/api/sources/nope/refresh", 400),
    ("POST", f"/api/sources/{ZERO_ID}/refresh", 404),
    ("DELETE", "/api/sources/nope", 400),
    ("DELETE", f"/api/sources/{ZERO_ID}", 404),
    ("DELETE", f"/api/sources/{ZERO_ID}?assets=maybe", 400),
    ("GET", "/api/sources?limit=0", 400),
    ("GET", "/api/sources?limit=101", 400),
    ("GET", "/api/sources?limit=-1", 400),
    ("GET", "/api/sources?limit=abc", 400),
    ("GET", "/api/sources?limit=%C2%B2", 400),
    ("GET", "/api/sources?cursor=garbage", 400),
    ("GET", "/api/sources?cursor=%FF%FE", 400),
    ("GET", "/api/sources?cursor=" + "A" * 4000, 400),
    ("GET", "/api/sources?cursor=eyJzZXEiOjF9", 400),  # an asset listing's cursor: {"seq": 1}
    ("GET", "/api/sources?cursor=eyJpZCI6MSwidCI6NX0", 400),  # {"id": 1, "t": 5}
    ("GET", "/api/sources?cursor=eyJpZCI6IngiLCJ0IjoieWVzdGVyZGF5In0", 400),  # {"id": "x", "t": "yesterday"}
    ("GET", "/api/assets?source=bad", 400),
    ("GET", "/api/assets?source=src_" + "G" * 32, 400),
    ("GET", "/api/search?q=x&source=bad", 400),
    ("GET", "/api/search?q=x&published_after=garbage", 400),
    ("GET", "/api/search?q=x&published_before=2024-13-01", 400),
    ("GET", "/api/search?q=x&published_after=2025-01-01&published_before=2024-01-01", 400),
])
def test_a_bad_source_id_or_parameter_is_a_4xx_naming_it(sources, method, path, status):
    got_status, body = call(method, path)
    assert got_status == status, body
    assert body.get("error") or body == {"message": "Not Found"}, body  # the latter: API Gateway's, no route


def test_a_delete_with_a_bad_assets_parameter_deletes_nothing(sources, site):
    link = serve_pages(site, "/posts", 1)[0]
    _, source = post_source(serve(site, "/feed.xml", rss([("Post", link)]), "application/rss+xml"))
    run_source_worker(sources)
    for value in ("maybe", "1", "yes", "true%00"):
        status, body = call("DELETE", f"/api/sources/{source['id']}?assets={value}")
        assert status == 400 and "assets" in body["error"]["message"], body
    assert shown(source["id"])["items"]["submitted"] == 1 and len(sources.store.assets) == 1
