"""`python -m devstack index FILE.jsonl`: stream a large JSONL file of documents into POST /api/documents.

One document per line, `{"id"?, "title"?, "text", "metadata"?}`. Lines are checked here with the
same rules the API applies, so one bad line is reported (with its number) and skipped instead of
failing the batch it would have joined. Batches go out a few at a time; the byte offset after
the last batch the API has acknowledged, with every batch before it, is written to a progress
file after each one, so an interrupted run started again carries on from there (and, ingestion
being idempotent on id, a batch sent twice changes nothing). A file that only grew since resumes
too; one changed before the resume point is sent again from the start.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import hashlib
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from allthethings.domain.documents import parse_document
from allthethings.domain.errors import InvalidInput, UpstreamUnavailable


@dataclasses.dataclass
class Totals:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0

    def add(self, results: list[dict]) -> None:
        for result in results:
            setattr(self, result["result"], getattr(self, result["result"]) + 1)

    @property
    def sent(self) -> int:
        return self.created + self.updated + self.unchanged


@dataclasses.dataclass
class _Batch:
    documents: list[dict]
    end: int  # the byte offset after the batch's last line
    line: int  # the number of that line
    rejected: int  # bad lines skipped since the batch before


def _batches(path: Path, start: int, line_no: int, batch: int, max_chars: int, report) -> Iterator[_Batch]:
    """The documents from byte `start` (line `line_no`) in batches; bad lines are reported, skipped
    and counted in the batch that follows them (a last batch may hold only rejections)."""
    documents: list[dict] = []
    rejected = 0
    with open(path, "rb") as f:
        f.seek(start)
        for raw in iter(f.readline, b""):
            line_no += 1
            if not raw.strip():
                continue
            try:
                item = json.loads(raw)
                parse_document(item, max_chars)
            except json.JSONDecodeError as exc:
                rejected += 1
                report(f"line {line_no}: not JSON ({_where_in_line(exc, raw)}); skipped")
                continue
            except (ValueError, InvalidInput) as exc:
                rejected += 1
                report(f"line {line_no}: {getattr(exc, 'message', None) or exc}; skipped")
                continue
            documents.append(item)
            if len(documents) == batch:
                yield _Batch(documents, f.tell(), line_no, rejected)
                documents, rejected = [], 0
        if documents or rejected:
            yield _Batch(documents, f.tell(), line_no, rejected)


def _where_in_line(exc: json.JSONDecodeError, raw: bytes) -> str:
    """The parser's complaint placed in the file's own line: json's "line 2 column 1" counts the
    line's newline as a second line of its own, which is no line of the file."""
    if exc.pos >= len(raw.rstrip(b"\r\n")):
        return f"{exc.msg} at the end of the line: is the object cut short?"
    return f"{exc.msg} at column {exc.pos + 1}"


class Progress:
    """The resume point of one input file, kept beside it (FILE.progress): the byte offset after the
    last acknowledged batch, and the SHA-256 of the file up to there. A run resumes only if the file
    still begins with those bytes, so lines appended since are picked up where the last run stopped,
    and a file changed before that point is sent from the start (idempotent ids make that safe)."""

    def __init__(self, path: Path, source: Path):
        self.path = path
        self.source = source
        self._digest, self._hashed = hashlib.sha256(), 0

    def _digest_to(self, offset: int) -> str:
        """The SHA-256 of the source's first `offset` bytes, extending the running digest (offsets only grow)."""
        if offset < self._hashed:
            self._digest, self._hashed = hashlib.sha256(), 0
        with open(self.source, "rb") as f:
            f.seek(self._hashed)
            while self._hashed < offset:
                block = f.read(min(offset - self._hashed, 1 << 20))
                if not block:
                    break  # the file is shorter than the offset: the digest will not match
                self._digest.update(block)
                self._hashed += len(block)
        return self._digest.hexdigest()

    def load(self) -> dict:
        try:
            state = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        offset = state.get("offset") if isinstance(state, dict) else None
        if not isinstance(offset, int) or offset < 0 or self._digest_to(offset) != state.get("sha256"):
            return {}  # the file changed before the resume point (or the state is not ours): start over
        return state

    def save(self, offset: int, line: int, totals: Totals) -> None:
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        tmp.write_text(json.dumps({"offset": offset, "line": line, "sha256": self._digest_to(offset),
                                   "totals": dataclasses.asdict(totals)}))
        os.replace(tmp, self.path)  # never a half-written progress file

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


def _answered(results: list[dict]) -> concurrent.futures.Future:
    future: concurrent.futures.Future = concurrent.futures.Future()
    future.set_result(results)
    return future


def _post(client, documents: list[dict], tries: int = 6) -> list[dict]:
    from allthethings.adapters.retrying import send

    response = send(client, "POST", "/api/documents", service="the API", attempts=tries, backoff_s=1.0,
                    timeout_s=120.0, json={"documents": documents})
    if response.status_code != 202:
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text[:300]
        raise InvalidInput(f"the API refused a batch: HTTP {response.status_code}: {message}")
    return response.json()["documents"]


def index_file(path: Path, *, api_url: str, api_key: str | None, batch: int = 100, in_flight: int = 2,
               max_chars: int = 1_000_000, restart: bool = False, show_progress: bool = True, tries: int = 6,
               report=lambda line: print(line, file=sys.stderr)) -> Totals:
    """Send every document of `path`; return the totals. Raises UpstreamUnavailable or InvalidInput
    when the API cannot take a batch (the progress file keeps the place for the next run)."""
    import httpx

    progress = Progress(path.with_name(path.name + ".progress"), path)
    state = {} if restart else progress.load()
    offset = state.get("offset", 0)
    totals = Totals(**state.get("totals", {}))
    if offset:
        report(f"resuming {path} at byte {offset:,} ({totals.sent:,} documents sent before)")
    size = path.stat().st_size
    bar = _bar(size, offset, show_progress)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    started = time.monotonic()
    with httpx.Client(base_url=api_url.rstrip("/"), headers=headers) as client, \
            concurrent.futures.ThreadPoolExecutor(max_workers=in_flight) as pool:
        pending: collections.deque = collections.deque()

        def settle_oldest() -> None:
            nonlocal offset
            future, sent = pending.popleft()
            totals.add(future.result())
            totals.rejected += sent.rejected
            progress.save(sent.end, sent.line, totals)
            bar.update(sent.end - offset)
            bar.set_postfix(documents=totals.sent, rejected=totals.rejected, refresh=False)
            offset = sent.end

        try:
            for sent in _batches(path, offset, state.get("line", 0), batch, max_chars, report):
                answer = pool.submit(_post, client, sent.documents, tries) if sent.documents else _answered([])
                pending.append((answer, sent))
                if len(pending) >= in_flight:
                    settle_oldest()
            while pending:
                settle_oldest()
        except BaseException:
            for future, _ in pending:
                future.cancel()
            raise
        finally:
            bar.close()
    progress.clear()
    elapsed = time.monotonic() - started
    report(f"done: {totals.created:,} created, {totals.updated:,} updated, {totals.unchanged:,} unchanged, "
           f"{totals.rejected:,} rejected lines in {elapsed:.1f} s")
    return totals


class _NoBar:
    def update(self, n):
        pass

    def set_postfix(self, **kwargs):
        pass

    def close(self):
        pass


def _bar(total: int, initial: int, show: bool):
    if not show:
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, desc="indexing", file=sys.stderr)


def main(args) -> int:
    path = Path(args.file)
    if not path.is_file():
        print(f"{path}: {'is a folder' if path.is_dir() else 'no such file'}; give the path of a JSONL file "
              "(one document a line)", file=sys.stderr)
        return 2
    try:
        index_file(path, api_url=args.api, api_key=args.key, batch=args.batch, in_flight=args.in_flight,
                   restart=args.restart, show_progress=not args.quiet, tries=args.tries)
    except UpstreamUnavailable as exc:
        print(f"stopped: {exc.message}.\nThe API tried was {args.api}. Is the stack running there? Point the CLI "
              "at another one with --api URL (or ALLTHETHINGS_API_URL); for a local stack, --data-dir (or DATA_DIR) "
              "must be the one `make run` was started with (its local-stack.json holds the address). Run the same "
              "command again to carry on.", file=sys.stderr)
        return 1
    except InvalidInput as exc:
        hint = (" Give a key with --key (or ALLTHETHINGS_API_KEY); a local stack keeps its own in DATA_DIR/api-key."
                if "HTTP 401" in exc.message or "HTTP 403" in exc.message else "")
        print(f"stopped: {exc.message} (API {args.api}).{hint} Run the same command again to carry on.",
              file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"stopped: {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; run the same command again to carry on", file=sys.stderr)
        return 130
    return 0
