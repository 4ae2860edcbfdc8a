"""Starting and stopping the whole local system in one process (plus the AWS emulator's)."""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from devstack import gateway
from devstack.sqs_pump import QueuePump
from devstack.template import Template, load, resolve_env

log = logging.getLogger("devstack")


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (it holds a key or a token), even one that existed
    before with wider permissions."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        os.fchmod(fd, 0o600)
        out.write(text)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_TEMPLATE = REPO / "infra" / "template.yaml"

# The template's OCR topic and Textract's role, as the local stack names them: the local Textract
# takes any ARN and delivers a finished job's notice to the webhook queue itself.
LOCAL_OCR_REFS = {"OcrTopic": "arn:aws:sns:us-east-1:000000000000:allthethings-local-ocr",
                  "TextractPublishRole": "arn:aws:iam::000000000000:role/allthethings-local-textract"}

# What local mode changes from the deployed configuration; any of these set in the
# environment wins (for example ALLOW_PRIVATE_URLS=false or EMBEDDING_MODEL=all-mpnet-base-v2).
LOCAL_SETTINGS = {
    "STORE_BACKEND": "sqlite",
    "EMBEDDER_BACKEND": "local",
    "EMBEDDING_MODEL": "all-MiniLM-L6-v2",
    "WEBHOOK_SIGNATURE": "replicate",
    "ALLOW_PRIVATE_URLS": "true",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "MONGODB_URI_PARAM": "",
    "REPLICATE_API_TOKEN_PARAM": "",
    "REPLICATE_WEBHOOK_SECRET_PARAM": "",
    "HOOKDECK_SIGNING_SECRET_PARAM": "",
    "API_KEYS_PARAM": "",
    "HOOKDECK_SOURCE_URL": "",
    "EMBEDDINGS_UPSTREAM_API_KEY_PARAM": "",
    "METRICS_BACKEND": "prometheus",
}


def _metrics():
    """Prometheus' scrape endpoint: what every function of this process has recorded."""
    import flask

    from allthethings.adapters.metrics import exposition

    body, content_type = exposition()
    return flask.Response(body, content_type=content_type)


def _blob_secret(folder: Path) -> str:
    """The stack's secret for presigned blob URLs, kept in its folder so URLs outlive a restart."""
    path = folder / "blob-secret"
    if not path.exists():
        write_private(path, secrets.token_hex(32) + "\n")
    return path.read_text().strip()


def _blob(key: str):  # noqa: ARG001 - the route names it; the signed path is read whole
    """A presigned URL of the embedded bucket: its file, if the signature holds and it has not
    expired (Range requests answered, as S3 answers them); 403 otherwise."""
    import flask

    from allthethings import bootstrap
    from allthethings.domain.errors import InvalidInput, NotFound

    blobs = bootstrap.deps().blobs
    try:
        path = blobs.signed_path(flask.request.full_path)
    except (NotFound, InvalidInput):
        return flask.Response('{"message": "Forbidden"}', status=403, content_type="application/json")
    key = str(path.relative_to(blobs.root / "objects"))
    return flask.send_file(path, mimetype=blobs.content_type(key), conditional=True)  # the type it was staged with


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """In the emulator's process: ask Linux to stop it when the stack dies, even by SIGKILL."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _wait_for_port(port: int, timeout_s: float, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the AWS emulator exited with code {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"the AWS emulator did not listen on port {port} within {timeout_s}s")


class Schedule(threading.Thread):
    """A template's `rate(...)` schedule: the function invoked every `every_s` seconds, as
    EventBridge would, with a Scheduled Event (the first run one period after start)."""

    def __init__(self, function, every_s: float):
        super().__init__(name=f"schedule-{function.logical_id}", daemon=True)
        self.function, self.every_s = function, every_s
        self._stopped = threading.Event()

    def run(self) -> None:
        handler = gateway.load_handler(self.function)
        while not self._stopped.wait(self.every_s):
            event = {"version": "0", "id": uuid.uuid4().hex, "detail-type": "Scheduled Event", "source": "aws.events",
                     "account": "000000000000", "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                     "region": "us-east-1", "resources": [], "detail": {}}
            try:
                handler(event, gateway.LambdaContext(self.function, timeout_s=120))
            except Exception:  # noqa: BLE001 - EventBridge would log the failure and run it again next time
                log.exception("scheduled run of %s failed", self.function.logical_id)

    def stop(self) -> None:
        self._stopped.set()


class LocalStack:
    def __init__(self, *, port: int = 8000, data_dir: str = ".data", template: str | os.PathLike = DEFAULT_TEMPLATE,
                 host: str = "127.0.0.1", retry_delay_s: int = 2, pollers: int = 4):
        self.port = port
        self.host = host
        self.data_dir = Path(data_dir).resolve()
        self.template: Template = load(template)
        self.retry_delay_s = retry_delay_s
        # Lambda polls a queue with several concurrent pollers and invokes a container per batch.
        self.pollers = pollers
        self.aws_port: int | None = None
        self.queue_urls: dict[str, str] = {}
        self._moto: subprocess.Popen | None = None
        self.replicate = None
        self.textract = None
        self._pumps: list[QueuePump] = []
        self._schedules: list[Schedule] = []
        self._server = None
        self._serving = False
        self.api_key: str | None = None  # the generated key, when API_KEYS was not given

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- the AWS emulator ------------------------------------------------------
    def _start_aws(self) -> None:
        self.aws_port = free_port()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        logfile = open(self.data_dir / "aws-emulator.log", "ab")  # noqa: SIM115 - lives as long as the process
        self._moto = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.aws_port)],
            stdout=logfile, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_die_with_parent)
        _wait_for_port(self.aws_port, 30, self._moto)
        os.environ.update({
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{self.aws_port}",
            "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", "AWS_DEFAULT_REGION": "us-east-1",
        })

    def _create_resources(self) -> dict[str, str]:
        from allthethings.adapters.aws import client

        refs: dict[str, str] = {}
        for logical_id in self.template.buckets:
            name = f"allthethings-{logical_id.lower()}"
            client("s3").create_bucket(Bucket=name)
            refs[logical_id] = name
        sqs = client("sqs")
        # Dead-letter queues first: a redrive policy names its target's ARN.
        ordered = sorted(self.template.queues.values(), key=lambda q: q.dead_letter is not None)
        for queue in ordered:
            attributes = {"VisibilityTimeout": str(queue.visibility_timeout)}
            # The template's message size limit, enforced by the emulator as SQS does (without one,
            # the emulator's default: 1 MiB, the most SQS allows).
            properties = self.template.raw["Resources"][queue.logical_id].get("Properties") or {}
            if "MaximumMessageSize" in properties:
                attributes["MaximumMessageSize"] = str(properties["MaximumMessageSize"])
            if queue.dead_letter:
                dlq_arn = sqs.get_queue_attributes(QueueUrl=self.queue_urls[queue.dead_letter],
                                                   AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
                attributes["RedrivePolicy"] = json.dumps(
                    {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(queue.max_receive_count)})
            url = sqs.create_queue(QueueName=queue.logical_id, Attributes=attributes)["QueueUrl"]
            self.queue_urls[queue.logical_id] = url
            refs[queue.logical_id] = url
        return refs

    def environment(self, refs: dict[str, str], user_env: dict[str, str]) -> dict[str, str]:
        """One environment for every function: the template's, resolved, with local settings applied."""
        merged: dict[str, str] = {}
        for fn in self.template.functions.values():
            for key, value in resolve_env(fn.environment, refs).items():
                if key in merged and merged[key] != value:
                    raise RuntimeError(f"functions disagree on {key}; the local stack runs them in one process")
                merged[key] = value
        merged.update(LOCAL_SETTINGS)
        merged["DATA_DIR"] = str(self.data_dir)
        merged["API_URL"] = self.url
        merged["PUBLIC_BASE_URL"] = self.url  # webhook URLs: this stack, never what a request's headers say
        merged.update({k: v for k, v in user_env.items() if k in merged and k != "DATA_DIR"})
        return merged

    # -- life cycle ------------------------------------------------------------
    def _start_replicate(self, user_env: dict[str, str]) -> None:
        """The local Replicate, unless REPLICATE_API_BASE points the stack at another one."""
        if user_env.get("REPLICATE_API_BASE"):
            return
        from allthethings.config import load_settings
        from devstack.replicate import LocalReplicate

        settings = load_settings()
        self.replicate = LocalReplicate(
            token="r8_local_" + secrets.token_hex(16),
            webhook_secret="whsec_" + base64.b64encode(secrets.token_bytes(24)).decode(),
            whisper_version=settings.replicate_whisper_version,
            embedding_version=settings.replicate_embedding_version,
            vision_version=settings.replicate_vision_version,
            embedding_model=settings.embedding_model).start()
        os.environ.update({"REPLICATE_API_BASE": self.replicate.url, "REPLICATE_API_TOKEN": self.replicate.token,
                           "REPLICATE_WEBHOOK_SECRET": self.replicate.webhook_secret})

    def _start_textract(self, user_env: dict[str, str]) -> None:
        """The local Textract (scanned PDFs' text detection), unless TEXTRACT_ENDPOINT_URL names
        another. It reads staged objects from the stack's bucket and puts a finished job's notice
        on the webhook queue, as the template's SNS topic does with raw delivery."""
        if user_env.get("TEXTRACT_ENDPOINT_URL"):
            return
        from allthethings import bootstrap
        from devstack.textract import LocalTextract

        def read_object(bucket: str, key: str) -> bytes:  # noqa: ARG001 - one bucket
            return bootstrap.deps().blobs.get(key)

        self.textract = LocalTextract(read_object=read_object,
                                      notify=lambda notice: bootstrap.deps().webhooks.send(notice)).start()
        os.environ["TEXTRACT_ENDPOINT_URL"] = self.textract.url
        # boto3 signs every request, even to 127.0.0.1; the embedded mode sets no credentials.
        for key, value in (("AWS_ACCESS_KEY_ID", "local"), ("AWS_SECRET_ACCESS_KEY", "local"),
                           ("AWS_DEFAULT_REGION", "us-east-1")):
            os.environ.setdefault(key, value)

    def _api_keys(self, user_env: dict[str, str]) -> str:
        """API_KEYS from the environment, or this data folder's own key, made on the first run."""
        if user_env.get("API_KEYS"):
            return user_env["API_KEYS"]
        path = self.data_dir / "api-key"
        if not path.exists():
            write_private(path, "att_" + secrets.token_urlsafe(24) + "\n")
        self.api_key = path.read_text().strip()
        return f"local={self.api_key}"

    @property
    def embedded(self) -> bool:
        """Whether the stack's queues and bucket are the embedded ones (the default) or the AWS
        emulator's (LOCAL_AWS=moto, for full AWS-API parity)."""
        mode = os.environ.get("LOCAL_AWS") or "embedded"
        if mode not in ("embedded", "moto"):
            raise SystemExit(f"LOCAL_AWS must be embedded or moto, not {mode!r}")
        return mode == "embedded"

    def _start_embedded(self) -> dict[str, str]:
        from devstack.embedded import create_queues

        folder = self.data_dir / "aws"
        folder.mkdir(parents=True, exist_ok=True)
        from allthethings.adapters.embedded_queue import shared_queues

        queues = shared_queues(str(folder / "queues.db"))
        refs = create_queues(queues, self.template)
        released = queues.release_in_flight()  # nothing is left holding them after a stop
        if released:
            log.info("%d queue messages in flight when the stack stopped are visible again", released)
        self.queue_urls.update(refs)
        refs.update({logical_id: "embedded" for logical_id in self.template.buckets})
        self._embedded_env = {"EMBEDDED_AWS_DIR": str(folder), "EMBEDDED_BLOB_URL": self.url,
                              "EMBEDDED_BLOB_SECRET": _blob_secret(folder)}
        return refs

    def start(self) -> None:
        user_env = dict(os.environ)
        if self.embedded:
            refs = self._start_embedded()
        else:
            self._start_aws()
            refs = self._create_resources()
        refs.update(LOCAL_OCR_REFS)
        os.environ.update(self.environment(refs, user_env))
        if self.embedded:
            os.environ.update(self._embedded_env)
        os.environ["API_KEYS"] = self._api_keys(user_env)
        self._start_replicate(user_env)
        self._start_textract(user_env)
        self._write_manifest()
        gateway.configure(self.template)
        self._resume_unfinished()
        if self.embedded:
            from devstack.embedded import EmbeddedSqs

            sqs = EmbeddedSqs(os.path.join(os.environ["EMBEDDED_AWS_DIR"], "queues.db"))
        else:
            from allthethings.adapters.aws import client

            sqs = client("sqs")
        for fn in self.template.functions.values():
            for trigger in fn.queue_triggers:
                url = self.queue_urls[trigger.queue]
                arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
                for instance in range(self.pollers):
                    pump = QueuePump(sqs, fn, trigger, url, arn["Attributes"]["QueueArn"],
                                     retry_delay_s=self.retry_delay_s, instance=instance)
                    pump.start()
                    self._pumps.append(pump)
        for fn in self.template.functions.values():
            for every_s in fn.schedules:
                ticker = Schedule(fn, every_s)
                ticker.start()
                self._schedules.append(ticker)
        import flask
        import functions_framework
        from werkzeug.serving import make_server

        app = functions_framework.create_app(target="gateway", source=str(Path(gateway.__file__).with_name("entry.py")))
        # A path its catch-all route cannot match (one holding a newline) would get Flask's HTML 404;
        # API Gateway would still route it, so it goes to the gateway like any other request.
        app.register_error_handler(404, lambda _error: gateway.gateway(flask.request))
        app.add_url_rule("/metrics", "metrics", _metrics)
        if self.embedded:  # the staged bodies' presigned URLs, as S3 serves them
            app.add_url_rule("/_blobs/<path:key>", "blobs", _blob)
        self._server = make_server(self.host, self.port, app, threaded=True)

    def _write_manifest(self) -> None:
        """What `python -m devstack redrive` needs to find this stack's queues."""
        queues = {q.logical_id: {"url": self.queue_urls[q.logical_id],
                                 "dead_letter_url": self.queue_urls[q.dead_letter]}
                  for q in self.template.queues.values() if q.dead_letter}
        manifest = {"aws_endpoint": os.environ.get("AWS_ENDPOINT_URL"), "url": self.url, "queues": queues,
                    "aws": "embedded" if self.embedded else "moto"}
        if self.embedded:
            manifest["embedded_aws_dir"] = os.environ["EMBEDDED_AWS_DIR"]
        if self.replicate is not None:  # a local secret for local tools; the file is in DATA_DIR
            manifest["replicate"] = {"url": self.replicate.url, "token": self.replicate.token}
        write_private(self.data_dir / "local-stack.json", json.dumps(manifest, indent=2))

    def _resume_unfinished(self) -> None:
        """Assets a previous run left half-done, before the pumps start. On the embedded parts
        everything queued or staged outlived the stop (see `_resume_embedded`). On the emulator:
        resume those whose chunks are stored and fetch again those being fetched, fail the rest.

        The emulator keeps staged bodies and queue messages in memory only, and the local
        Replicate its predictions, so after a restart an asset waiting on any of them cannot
        continue; it is marked failed so the user sees it, rather than left waiting forever.
        """
        from allthethings import bootstrap
        from allthethings.domain.assets import Status
        from allthethings.domain.tasks import FetchAsset, ProcessAsset, to_message

        deps = bootstrap.deps()
        queued = self._queued_asset_ids() if self.embedded else {}
        cursor = None
        while True:
            assets, cursor = deps.store.list(100, cursor)
            for asset in assets:
                if self.embedded:
                    self._resume_embedded(asset, deps, queued)
                elif asset.status is Status.FETCHING:  # its upload's parts died with the emulator: from zero
                    deps.fetches.send(to_message(FetchAsset(asset.id, self.url)))
                elif asset.status in (Status.SUBMITTED, Status.PROCESSING):
                    deps.store.move(asset.id, Status.PROCESSING_ERROR,
                                    error="the local stack stopped before this asset was processed; retry it "
                                          "(its URL is fetched again)")
                elif asset.status is Status.PROCESSED:  # chunks stored: embedding can resume
                    deps.queue.send(to_message(ProcessAsset(asset.id, self.url)))
                elif asset.status is Status.GENERATING_EMBEDDINGS:  # its prediction died with the last run
                    deps.store.move(asset.id, Status.EMBEDDINGS_ERROR,
                                    error="the local stack stopped before the embeddings came back; retry it")
            if cursor is None:
                break

    def _queued_asset_ids(self) -> dict[str, set[str]]:
        """Per step (process, fetch, webhook), the assets some message in its queue or its
        dead-letter queue is about: every task and delivery names its asset (`asset_id`, or
        `asset_ids` for a batch of documents)."""
        import json

        from allthethings.adapters.embedded_queue import shared_queues

        queues = shared_queues(str(self.data_dir / "aws" / "queues.db"))
        named: dict[str, set[str]] = {}
        for logical_id, name in self.queue_urls.items():
            ids = named.setdefault(logical_id.removesuffix("DeadLetterQueue").removesuffix("Queue"), set())
            for body in queues.bodies(name):
                try:
                    message = json.loads(body)
                except ValueError:
                    continue
                if isinstance(message, dict):
                    if isinstance(message.get("asset_id"), str):
                        ids.add(message["asset_id"])
                    if isinstance(message.get("JobTag"), str):  # a text-detection job's notice
                        ids.add(message["JobTag"])
                    if isinstance(message.get("asset_ids"), list):
                        ids.update(i for i in message["asset_ids"] if isinstance(i, str))
        return named

    def _resume_embedded(self, asset, deps, queued: dict[str, set[str]]) -> None:
        """With the embedded queues and bucket, every message and staged body outlived the stop;
        what did not:
        - the step between storing an asset and queueing its work (a kill there leaves an asset
          no message names): its work is queued now;
        - the local Replicate's predictions and the local Textract's jobs (they run in this
          process). A transcription, an image reading or a scan's text detection is asked for
          again. An asset waiting for an embedding prediction whose delivery is not queued goes
          back to its stored chunks and is queued, unless a processing message for it is already
          waiting (which then asks for the embeddings: one prediction, not two).
        A message in a dead-letter queue counts as queued: it waits for a redrive, as it would have.
        """
        from allthethings.domain.assets import Status
        from allthethings.domain.tasks import FetchAsset, ProcessAsset, to_message
        from allthethings.services.scans import is_ocr_job

        waiting = {step: asset.id in ids for step, ids in queued.items()}
        # Another Replicate's predictions (another Textract's jobs) outlive us; the local ones do not.
        local_predictions = (self.textract if is_ocr_job(asset.prediction_id) else self.replicate) is not None
        if asset.status is Status.FETCHING and not waiting.get("Fetch"):
            deps.fetches.send(to_message(FetchAsset(asset.id, self.url)))
        elif asset.status in (Status.SUBMITTED, Status.PROCESSED, Status.PROCESSING):
            if asset.status is Status.PROCESSING and asset.prediction_id:
                if not local_predictions or waiting.get("Webhook"):
                    return  # its transcription is on its way, or already delivered
                deps.store.move(asset.id, Status.PROCESSING, prediction_id=None)  # its message asks again
            if not waiting.get("Process"):
                deps.queue.send(to_message(ProcessAsset(asset.id, self.url)))
        elif asset.status is Status.GENERATING_EMBEDDINGS and local_predictions and not waiting.get("Webhook") \
                and deps.store.move(asset.id, Status.EMBEDDINGS_ERROR,
                                    error="the local stack stopped before the embeddings came back; retried") \
                and deps.store.move(asset.id, Status.PROCESSED, error=None, prediction_id=None) \
                and not waiting.get("Process"):
            deps.queue.send(to_message(ProcessAsset(asset.id, self.url)))  # back to its stored chunks

    def serve_forever(self) -> None:
        self._serving = True
        self._server.serve_forever()

    def serve_in_thread(self) -> threading.Thread:
        self._serving = True
        thread = threading.Thread(target=self._server.serve_forever, name="gateway", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        for ticker in self._schedules:
            ticker.stop()
        for pump in self._pumps:
            pump.stop()
        for pump in self._pumps:
            pump.join(timeout=5)
        if self.replicate is not None:
            self.replicate.stop()
        if self.textract is not None:
            self.textract.stop()
        if self._server is not None:
            if self._serving:
                self._server.shutdown()
            self._server.server_close()
        if self._moto is not None and self._moto.poll() is None:
            os.killpg(self._moto.pid, signal.SIGTERM)
            try:
                self._moto.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self._moto.pid, signal.SIGKILL)
