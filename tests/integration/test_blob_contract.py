"""One contract for staged bodies, run against S3 (moto in server mode, through boto3) and against
the embedded folder (issue 15): objects, multipart uploads, the read-back hash, and presigned GET
URLs fetched over real HTTP (refused once tampered with or expired)."""

from __future__ import annotations

import hashlib
import io
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from allthethings.adapters.aws import S3BlobStore
from allthethings.adapters.embedded_blobs import EmbeddedBlobs
from allthethings.domain.errors import InvalidInput, NotFound

MiB = 1024 * 1024


def serve(blobs: EmbeddedBlobs) -> ThreadingHTTPServer:
    """A server for the folder's presigned URLs, as the local stack's gateway serves them."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):  # noqa: N802
            try:
                path = blobs.signed_path(self.path)
            except (NotFound, InvalidInput):
                self.send_response(403)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            data = path.read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(params=["s3", "embedded"])
def blobs(request, tmp_path):
    if request.param == "s3":
        yield S3BlobStore(request.getfixturevalue("bucket"))
        return
    server = serve(EmbeddedBlobs(tmp_path / "blobs", "http://placeholder", b"k" * 32))
    store = EmbeddedBlobs(tmp_path / "blobs", f"http://127.0.0.1:{server.server_address[1]}", b"k" * 32)
    yield store
    server.shutdown()


def key() -> str:
    return f"staged/{uuid.uuid4().hex}"


def test_a_body_round_trips_and_is_deleted(blobs):
    name, body = key(), b"%PDF-1.7 " + bytes(range(256)) * 40
    assert not blobs.exists(name)
    blobs.put(name, io.BytesIO(body), "application/pdf")
    assert blobs.exists(name) and blobs.get(name) == body
    assert blobs.sha256(name) == hashlib.sha256(body).hexdigest()
    blobs.delete(name)
    assert not blobs.exists(name)
    with pytest.raises(NotFound):
        blobs.get(name)
    blobs.delete(name)  # deleting what is gone is no error


def test_a_multipart_upload_joins_its_parts_in_order_and_an_aborted_one_leaves_nothing(blobs):
    name = key()
    parts = [bytes([n]) * (5 * MiB) for n in (1, 2)] + [b"tail"]
    upload = blobs.start_upload(name, "audio/mpeg")
    etags = [blobs.put_part(name, upload, n, data) for n, data in enumerate(parts, start=1)]
    etags[0] = blobs.put_part(name, upload, 1, parts[0])  # a part sent again replaces itself
    blobs.complete_upload(name, upload, etags)
    assert blobs.get(name) == b"".join(parts)
    assert blobs.sha256(name) == hashlib.sha256(b"".join(parts)).hexdigest()

    other = key()
    dropped = blobs.start_upload(other, "audio/mpeg")
    blobs.put_part(other, dropped, 1, parts[0])
    blobs.abort_upload(other, dropped)
    blobs.abort_upload(other, dropped)  # twice: nothing happens
    assert not blobs.exists(other)


def test_a_presigned_url_serves_the_body_over_http(blobs):
    name, body = key(), b"ID3" + bytes(range(256)) * 100
    blobs.put(name, io.BytesIO(body), "audio/mpeg")
    assert httpx.get(blobs.presigned_url(name, 600)).content == body


# S3 itself refuses a tampered or expired presigned URL; moto does not check them, so these two
# hold the embedded folder to what S3 does.

@pytest.mark.parametrize("blobs", ["embedded"], indirect=True)
def test_a_tampered_presigned_url_serves_nothing(blobs):
    name = key()
    blobs.put(name, io.BytesIO(b"public"), "text/plain")
    url = blobs.presigned_url(name, 600)
    other = key()
    blobs.put(other, io.BytesIO(b"private"), "text/plain")
    assert httpx.get(url.replace(name.rsplit("/", 1)[1], other.rsplit("/", 1)[1])).status_code == 403
    assert httpx.get(url.split("?", 1)[0]).status_code == 403, "no signature, no body"


@pytest.mark.parametrize("blobs", ["embedded"], indirect=True)
def test_an_expired_presigned_url_serves_nothing(blobs):
    name = key()
    blobs.put(name, io.BytesIO(b"soon gone"), "text/plain")
    url = blobs.presigned_url(name, 1)
    time.sleep(2.1)
    assert httpx.get(url).status_code == 403


def test_a_key_that_climbs_out_of_the_folder_is_refused(tmp_path):
    blobs = EmbeddedBlobs(tmp_path / "blobs", "http://127.0.0.1:1", b"k" * 32)
    for bad in ("../etc/passwd", "/abs", "staged/../../x", "staged//x", ""):
        with pytest.raises(InvalidInput):
            blobs.put(bad, io.BytesIO(b"x"), "text/plain")
    with pytest.raises(NotFound):
        blobs.signed_path("/_blobs/..%2F..%2Fetc%2Fpasswd?expires=9999999999&signature=00")
