"""Replicate's predictions API over httpx, and the embedder built on it.

Asynchronous predictions carry a `webhook` with `webhook_events_filter:
["completed"]`; synchronous ones (search queries) ask for `Prefer: wait` and fall
back to polling the prediction until a deadline inside API Gateway's 29 s.
Transient failures (429, 5xx, timeouts) are retried with exponential backoff
that honours `Retry-After`; what is left becomes UpstreamUnavailable.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence

from allthethings.adapters.retrying import send
from allthethings.domain.chunking import Segment
from allthethings.domain.embedding import CATALOG
from allthethings.domain.errors import NotFound, UpstreamUnavailable
from allthethings.ports import PREDICTION_FINISHED, Embedder, ImageReader, Pending, Predictions, Reading, Transcriber


class ReplicateClient:
    """Replicate's predictions API. With `queue_url` (a Hookdeck source forwarding to Replicate),
    predictions that report by webhook are created through the queue, which holds and retries
    them; their ids then arrive with the webhook. Synchronous calls always go straight to Replicate."""

    def __init__(self, base_url: str, token: Callable[[], str], *, timeout_s: float = 10.0,
                 attempts: int = 4, backoff_s: float = 0.5, sleep: Callable[[float], None] = time.sleep,
                 queue_url: str | None = None):
        self.base_url = base_url.rstrip("/")
        self.queue_url = queue_url.rstrip("/") if queue_url else None
        self._token = token
        self._timeout_s = timeout_s
        self._attempts = attempts
        self._backoff_s = backoff_s
        self._sleep = sleep
        self._http = None

    def _client(self):
        if self._http is None:
            import httpx

            self._http = httpx.Client(base_url=self.base_url, timeout=self._timeout_s,
                                      headers={"Authorization": f"Bearer {self._token()}",
                                               "User-Agent": "allthethings"})
        return self._http

    def _request(self, method: str, path: str, *, deadline: float | None = None, **kwargs) -> dict:
        """One call with bounded retries (and no attempt past `deadline`, a time.monotonic() value)."""
        response = send(self._client(), method, path, service="Replicate", attempts=self._attempts,
                        backoff_s=self._backoff_s, timeout_s=self._timeout_s, sleep=self._sleep, deadline=deadline,
                        **kwargs)
        if response.status_code < 400:
            return response.json() if response.content else {}
        if response.status_code == 404 and method == "GET":
            raise NotFound(f"Replicate has no {path}")
        raise UpstreamUnavailable(
            f"Replicate refused {method} {path}: HTTP {response.status_code} {response.text[:200]}")

    def create_prediction(self, version: str, inputs: dict, *, webhook: str | None = None,
                          wait_s: int | None = None, deadline: float | None = None) -> dict:
        body: dict = {"version": version, "input": inputs}
        if webhook:
            body["webhook"] = webhook
            body["webhook_events_filter"] = ["completed"]
        if webhook and self.queue_url:
            self._request("POST", f"{self.queue_url}/predictions", json=body)
            return {"id": None, "status": "queued"}
        headers = {"Prefer": f"wait={wait_s}"} if wait_s else {}
        timeout = (wait_s + 5) if wait_s else None
        return self._request("POST", "/predictions", json=body, headers=headers, deadline=deadline,
                             **({"timeout": timeout} if timeout else {}))

    def get_prediction(self, prediction_id: str, deadline: float | None = None) -> dict:
        return self._request("GET", f"/predictions/{prediction_id}", deadline=deadline)


def vectors_from_output(output: object) -> list[list[float]]:
    """all-mpnet-base-v2's output, `[{"embedding": [...]}, ...]`, as a list of vectors."""
    if not isinstance(output, list) or not all(isinstance(o, dict) and isinstance(o.get("embedding"), list)
                                               for o in output):
        raise ValueError("prediction output is not a list of {\"embedding\": [...]} objects")
    return [[float(x) for x in o["embedding"]] for o in output]


class ReplicateEmbedder(Embedder):
    """all-mpnet-base-v2 on Replicate: every text of a call in one `text_batch` prediction."""

    asynchronous = True

    def __init__(self, client: ReplicateClient, version: str, *, model: str = "all-mpnet-base-v2",
                 deadline_s: float = 25.0,
                 poll_s: float = 0.5, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.client = client
        self.version = version
        self.model = model
        self.dimensions, self.max_tokens = CATALOG[model].dimensions, CATALOG[model].max_tokens
        self.deadline_s = deadline_s
        self.poll_s = poll_s
        self._clock = clock
        self._sleep = sleep

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        started = self._clock()
        deadline = time.monotonic() + self.deadline_s
        prediction = self.client.create_prediction(
            self.version, {"text_batch": json.dumps(list(texts))}, wait_s=max(1, int(self.deadline_s * 0.8)),
            deadline=deadline)
        while prediction.get("status") not in PREDICTION_FINISHED:
            if self._clock() - started > self.deadline_s:
                raise UpstreamUnavailable(f"embedding prediction {prediction.get('id')} did not finish in time")
            self._sleep(self.poll_s)
            prediction = self.client.get_prediction(prediction["id"], deadline=deadline)
        if prediction["status"] != "succeeded":
            raise UpstreamUnavailable(f"embedding prediction {prediction['status']}: {prediction.get('error')}")
        try:
            return vectors_from_output(prediction.get("output"))
        except ValueError as exc:
            raise UpstreamUnavailable(f"embedding prediction {prediction.get('id')} returned no embeddings: {exc}") \
                from None

    def vectors_from_output(self, output: object) -> list[list[float]]:
        return vectors_from_output(output)

    def texts_of(self, prediction: dict) -> list[str] | None:
        return texts_of(prediction)

    def submit(self, texts: Sequence[str], webhook_url: str) -> Pending:
        prediction = self.client.create_prediction(self.version, {"text_batch": json.dumps(list(texts))},
                                                   webhook=webhook_url)
        return Pending(prediction_id=prediction["id"])


def texts_of(prediction: dict) -> list[str] | None:
    """The `text_batch` input a text-embedding prediction echoes back, as a list of strings."""
    inputs = prediction.get("input")
    try:
        texts = json.loads(inputs["text_batch"]) if isinstance(inputs, dict) else None
    except (KeyError, TypeError, ValueError):
        return None
    return texts if isinstance(texts, list) and all(isinstance(t, str) for t in texts) else None


def audio_url_of(prediction: dict) -> str | None:
    """The `audio` input a Whisper prediction echoes back."""
    inputs = prediction.get("input")
    audio = inputs.get("audio") if isinstance(inputs, dict) else None
    return audio if isinstance(audio, str) else None


def segments_from_output(output: object) -> list[Segment]:
    """openai/whisper's output, `{"segments": [{"start", "end", "text", ...}], "transcription", ...}`."""
    if not isinstance(output, dict) or not isinstance(output.get("segments"), list):
        raise ValueError("prediction output has no segments list")
    segments = []
    for item in output["segments"]:
        if not isinstance(item, dict) or not isinstance(item.get("text"), str):
            raise ValueError("a segment is not an object with text")
        try:
            start, end = float(item["start"]), float(item["end"])
        except (KeyError, TypeError, ValueError):
            raise ValueError("a segment has no numeric start and end") from None
        segments.append(Segment(start_s=start, end_s=max(start, end), text=item["text"]))
    return segments


class ReplicateTranscriber(Transcriber):
    """openai/whisper on Replicate, fed a presigned URL of the staged recording."""

    def __init__(self, client: ReplicateClient, version: str, *, model: str = "large-v3"):
        self.client = client
        self.version = version
        self.model = model

    def submit(self, audio_url: str, webhook_url: str) -> Pending:
        prediction = self.client.create_prediction(
            self.version, {"audio": audio_url, "model": self.model, "transcription": "plain text",
                           "translate": False, "temperature": 0},
            webhook=webhook_url)
        return Pending(prediction_id=prediction["id"])

    def segments_from_output(self, output: object) -> list[Segment]:
        return segments_from_output(output)

    def audio_url_of(self, prediction: dict) -> str | None:
        return audio_url_of(prediction)


class ReplicateImageReader(ImageReader):
    """A vision-language model on Replicate (lucataco/qwen2-vl-7b-instruct: `media`, `prompt`,
    `max_new_tokens`; a string out), fed a presigned URL of the staged image and asked for a
    description and the visible text in one answer (adapters/images.py has the prompt and the
    parser of its answer)."""

    def __init__(self, client: ReplicateClient, version: str, *, max_new_tokens: int = 512):
        self.client = client
        self.version = version
        self.max_new_tokens = max_new_tokens

    def submit(self, image_url: str, webhook_url: str) -> Pending:
        from allthethings.adapters.images import VISION_PROMPT

        prediction = self.client.create_prediction(
            self.version, {"media": image_url, "prompt": VISION_PROMPT, "max_new_tokens": self.max_new_tokens},
            webhook=webhook_url)
        return Pending(prediction_id=prediction["id"])

    def reading_from_output(self, output: object) -> Reading:
        from allthethings.adapters.images import reading_from_output

        return reading_from_output(output)

    def image_url_of(self, prediction: dict) -> str | None:
        inputs = prediction.get("input")
        media = inputs.get("media") if isinstance(inputs, dict) else None
        return media if isinstance(media, str) else None


class ReplicatePredictions(Predictions):
    def __init__(self, client: ReplicateClient):
        self.client = client

    def get(self, prediction_id: str) -> dict:
        return self.client.get_prediction(prediction_id)
