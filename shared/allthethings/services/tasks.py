"""Running one task from the processing queue: the process function's one use case.

The task's kind, declared in the message, decides the step: a submitted asset is processed
(extracted, chunked, embedded or sent for transcription), documents sent together are
embedded together. Raising retries the message; SQS dead-letters it after maxReceiveCount.
"""

from __future__ import annotations

from allthethings.domain.assets import Status
from allthethings.domain.tasks import EmbedDocuments, FetchAsset, Task
from allthethings.services import Deps
from allthethings.services.documents import embed_documents
from allthethings.services.process_asset import process_asset


def run_task(task: Task, deps: Deps) -> dict[str, Status | None]:
    """Carry the task as far as it goes now; the status each of its assets reached (None: deleted)."""
    if isinstance(task, EmbedDocuments):
        return dict(embed_documents(task.asset_ids, deps, webhook_base=task.webhook_base))
    if isinstance(task, FetchAsset):
        raise ValueError("a fetch_asset message belongs on the fetch queue, not the processing queue")
    return {task.asset_id: process_asset(task.asset_id, deps, webhook_base=task.webhook_base)}
