"""A local origin server for fetch tests and benchmarks: real HTTP on 127.0.0.1, serving
registered bodies (bytes or files, streamed) with the behaviours real hosts have.

Each body answers GET with its ETag, Last-Modified and `Accept-Ranges: bytes`, and a Range
request (with If-Range) with 206 and Content-Range. Query parameters make it misbehave:

- `rate=N`: send at most N bytes a second (a slow host);
- `ranges=0`: ignore Range, always 200 with the whole body;
- `drop_at=N`: close the connection after byte N of the body (once per path, then serve normally);
- `stall_at=N`: stop sending after byte N and hold the connection (until the server stops);
- `declare=N`: announce Content-Length N whatever the body's length (a lying host);
- `chunked=1`: no Content-Length at all;
- `conditional=0`: ignore If-None-Match and If-Modified-Since (a host that always sends the body).

A conditional GET whose If-None-Match names the body's ETag (or, without one, whose
If-Modified-Since is its Last-Modified) is answered 304 with no body.

`replace(path, body)` changes a body and its validators, as a host publishing a new version does.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import threading
import time
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

PIECE = 64 * 1024


@dataclasses.dataclass
class Body:
    content_type: str
    data: bytes | None = None
    path: Path | None = None
    version: int = 1

    @property
    def size(self) -> int:
        return len(self.data) if self.data is not None else os.path.getsize(self.path)

    @property
    def etag(self) -> str:
        seed = f"{self.version}:{self.size}:{self.path or ''}".encode() + (self.data or b"")[:4096]
        return '"' + hashlib.sha256(seed).hexdigest()[:20] + '"'

    @property
    def last_modified(self) -> str:
        return formatdate(1_700_000_000 + self.version, usegmt=True)

    def read(self, start: int, end: int, piece: int = PIECE):
        """The bytes from start to end (exclusive), in pieces."""
        if self.data is not None:
            for i in range(start, end, piece):
                yield self.data[i:min(i + piece, end)]
            return
        with open(self.path, "rb") as fh:
            fh.seek(start)
            left = end - start
            while left > 0:
                chunk = fh.read(min(piece, left))
                if not chunk:
                    return
                left -= len(chunk)
                yield chunk


class Origin:
    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.bodies: dict[str, Body] = {}
        self.requests: list[dict] = []  # what was asked: path, Range, If-Range
        self.dropped: set[str] = set()
        self.stopping = threading.Event()
        self._server = ThreadingHTTPServer((host, port), self._handler())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def base(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def put(self, path: str, body: bytes | os.PathLike, content_type: str) -> str:
        """Serve `body` (bytes, or a file streamed from disk) at `path`; its URL."""
        if isinstance(body, bytes):
            self.bodies[path] = Body(content_type, data=body)
        else:
            self.bodies[path] = Body(content_type, path=Path(body))
        return self.base + path

    def replace(self, path: str, body: bytes) -> None:
        old = self.bodies[path]
        self.bodies[path] = Body(old.content_type, data=body, version=old.version + 1)

    def start(self) -> Origin:
        self._thread = threading.Thread(target=self._server.serve_forever, name="origin", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Origin:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _handler(self):
        origin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802
                parts = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                body = origin.bodies.get(parts.path)
                origin.requests.append({"path": parts.path, "range": self.headers.get("Range"),
                                        "if_range": self.headers.get("If-Range"),
                                        "if_none_match": self.headers.get("If-None-Match")})
                if body is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if query.get("conditional") != "0" and self._unchanged(body):
                    self.send_response(304)
                    self.send_header("ETag", body.etag)
                    self.send_header("Last-Modified", body.last_modified)
                    self.send_header("Connection", "close")
                    self.end_headers()
                    return
                start, status = self._range(body, query)
                self.send_response(status)
                self.send_header("Content-Type", body.content_type)
                self.send_header("ETag", body.etag)
                self.send_header("Last-Modified", body.last_modified)
                if query.get("ranges") != "0":
                    self.send_header("Accept-Ranges", "bytes")
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{body.size - 1}/{body.size}")
                chunked = query.get("chunked") == "1"
                if chunked:
                    self.send_header("Transfer-Encoding", "chunked")
                else:
                    self.send_header("Content-Length", query.get("declare") or str(body.size - start))
                self.send_header("Connection", "close")
                self.end_headers()
                self._send(body, start, query, chunked)

            def _unchanged(self, body: Body) -> bool:
                tags = self.headers.get("If-None-Match")
                if tags is not None:
                    return body.etag in [t.strip() for t in tags.split(",")] or tags.strip() == "*"
                return self.headers.get("If-Modified-Since") == body.last_modified

            def _range(self, body: Body, query: dict) -> tuple[int, int]:
                asked = self.headers.get("Range", "")
                if query.get("ranges") == "0" or not asked.startswith("bytes="):
                    return 0, 200
                if_range = self.headers.get("If-Range")
                if if_range and if_range not in (body.etag, body.last_modified):
                    return 0, 200  # another version: the whole of the current one
                first = asked[len("bytes="):].split("-", 1)[0]
                return (int(first), 206) if first.isdigit() and int(first) < body.size else (0, 200)

            def _send(self, body: Body, start: int, query: dict, chunked: bool) -> None:
                rate = float(query["rate"]) if query.get("rate") else None
                drop_at = int(query["drop_at"]) if query.get("drop_at") else None
                if drop_at is not None and self.path in origin.dropped:
                    drop_at = None  # dropped once already: this time it is served whole
                stall_at = int(query["stall_at"]) if query.get("stall_at") else None
                began, sent = time.monotonic(), start
                try:
                    # Throttled, a twentieth of a second's worth at a time, so the rate holds within a second.
                    size = max(1024, min(PIECE, int(rate / 20))) if rate else PIECE
                    for piece in body.read(start, body.size, size):
                        for cut in (drop_at, stall_at):
                            if cut is not None and sent + len(piece) > cut:
                                piece = piece[:max(0, cut - sent)]
                        self._write(piece, chunked)
                        sent += len(piece)
                        if drop_at is not None and sent >= drop_at:
                            origin.dropped.add(self.path)
                            return
                        if stall_at is not None and sent >= stall_at:
                            origin.stopping.wait()
                            return
                        if rate:
                            ahead = (sent - start) / rate - (time.monotonic() - began)
                            if ahead > 0:
                                time.sleep(ahead)
                    if chunked:
                        self.wfile.write(b"0\r\n\r\n")
                except OSError:
                    pass  # the client went away

            def _write(self, piece: bytes, chunked: bool) -> None:
                if not piece:
                    return
                if chunked:
                    self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                else:
                    self.wfile.write(piece)

        return Handler
