"""Staged bodies as files: the embedded default's blob store (issue 15).

The BlobStore port on a folder: every write lands in a temporary file renamed into place, so a
body is whole or absent after a crash (`kill -9` included), and multipart uploads keep their
parts as files until they are joined. Writes are not fsynced: a process that dies leaves its
writes to the kernel, which keeps them; a machine that loses power may lose the newest bodies,
as SQLite's `synchronous=NORMAL` may lose the newest commits, and an asset whose body is gone
fails with a reason its retry mends (docs/decisions.md). Presigned URLs carry an expiry and an HMAC-SHA256 of key
and expiry under a secret of the stack, which whatever serves the folder checks (`signed_path`)
before it hands a byte out, as S3 checks its own signatures.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO
from urllib.parse import parse_qs, quote, unquote, urlsplit

from allthethings.domain.errors import InvalidInput, NotFound
from allthethings.ports import BlobStore

PREFIX = "/_blobs/"
_COPY = 1024 * 1024


class EmbeddedBlobs(BlobStore):
    def __init__(self, root: str | os.PathLike, base_url: str, secret: bytes):
        """`base_url`: where the folder is served (presigned URLs point there); `secret`: what signs them."""
        self.root = Path(root)
        self.base_url = base_url.rstrip("/")
        self.secret = secret
        (self.root / "objects").mkdir(parents=True, exist_ok=True)
        (self.root / "uploads").mkdir(parents=True, exist_ok=True)

    # -- paths --------------------------------------------------------------------------------
    def _path(self, key: str) -> Path:
        parts = key.split("/")
        if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\\" in key:
            raise InvalidInput(f"not a blob key: {key!r}")
        return self.root / "objects" / key

    def _upload(self, upload_id: str) -> Path:
        if not (len(upload_id) == 32 and all(c in "0123456789abcdef" for c in upload_id)):
            raise NotFound(f"no upload {upload_id!r}")
        return self.root / "uploads" / upload_id

    @staticmethod
    def _write(path: Path, chunks) -> None:
        try:
            fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".partial-")
        except FileNotFoundError:  # the key's first object in its folder
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".partial-")
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    out.write(chunk)
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise

    # -- objects ------------------------------------------------------------------------------
    def put(self, key: str, body: BinaryIO, content_type: str) -> None:
        self._write(self._path(key), iter(lambda: body.read(_COPY), b""))
        self._write(self._meta(key), [json.dumps({"content_type": content_type}).encode()])

    def _meta(self, key: str) -> Path:
        path = self._path(key)
        return path.with_name(path.name + ".meta")

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            raise NotFound(f"reading the staged body failed: {key} does not exist") from None

    def content_type(self, key: str) -> str:
        try:
            return json.loads(self._meta(key).read_text())["content_type"]
        except (FileNotFoundError, ValueError, KeyError):
            return "application/octet-stream"

    def delete(self, key: str) -> None:
        for path in (self._path(key), self._meta(key)):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def sha256(self, key: str) -> str:
        digest = hashlib.sha256()
        try:
            with open(self._path(key), "rb") as fh:
                for chunk in iter(lambda: fh.read(_COPY), b""):
                    digest.update(chunk)
        except FileNotFoundError:
            raise NotFound(f"{key} does not exist") from None
        return digest.hexdigest()

    # -- presigned URLs -----------------------------------------------------------------------
    def _signature(self, key: str, expires: int) -> str:
        return hmac.new(self.secret, f"{key}\n{expires}".encode(), hashlib.sha256).hexdigest()

    def presigned_url(self, key: str, expires_s: int) -> str:
        self._path(key)
        expires = int(time.time()) + int(expires_s)
        return f"{self.base_url}{PREFIX}{quote(key)}?expires={expires}&signature={self._signature(key, expires)}"

    def signed_path(self, target: str) -> Path:
        """The file a presigned URL's path and query name, if its signature holds and it has not
        expired; NotFound otherwise (the same answer either way, as S3 gives nothing away)."""
        parts = urlsplit(target)
        if not parts.path.startswith(PREFIX):
            raise NotFound("not a blob URL")
        key = unquote(parts.path[len(PREFIX):])
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        expires = query.get("expires", "")
        signature = query.get("signature", "")
        if not expires.isdigit() or int(expires) < time.time():
            raise NotFound("the URL has expired")
        if not hmac.compare_digest(signature, self._signature(key, int(expires))):
            raise NotFound("the URL's signature does not hold")
        path = self._path(key)
        if not path.is_file():
            raise NotFound(f"{key} does not exist")
        return path

    # -- multipart uploads --------------------------------------------------------------------
    def start_upload(self, key: str, content_type: str) -> str:
        self._path(key)
        upload_id = uuid.uuid4().hex
        folder = self._upload(upload_id)
        folder.mkdir(parents=True)
        self._write(folder / "upload.json", [json.dumps({"key": key, "content_type": content_type}).encode()])
        return upload_id

    def put_part(self, key: str, upload_id: str, number: int, data: bytes) -> str:
        folder = self._upload(upload_id)
        if not folder.is_dir():
            raise NotFound(f"no upload {upload_id}")
        self._write(folder / f"{number:05d}.part", [bytes(data)])
        return '"' + hashlib.md5(data).hexdigest() + '"'  # noqa: S324 - S3's part ETag

    def complete_upload(self, key: str, upload_id: str, etags: Sequence[str]) -> None:
        folder = self._upload(upload_id)
        parts = [folder / f"{n:05d}.part" for n in range(1, len(etags) + 1)]
        if not folder.is_dir() or not all(p.is_file() for p in parts):
            raise NotFound(f"upload {upload_id} is missing parts")
        meta = json.loads((folder / "upload.json").read_text())

        def joined():
            for part in parts:
                with open(part, "rb") as fh:
                    yield from iter(lambda: fh.read(_COPY), b"")

        self._write(self._path(key), joined())
        self._write(self._meta(key), [json.dumps({"content_type": meta["content_type"]}).encode()])
        shutil.rmtree(folder, ignore_errors=True)

    def abort_upload(self, key: str, upload_id: str) -> None:
        with contextlib.suppress(NotFound):
            shutil.rmtree(self._upload(upload_id), ignore_errors=True)

