"""Audio (and image) webhook function. Trigger: HTTP API, called by Replicate (directly, or
through Hookdeck) when a transcription (openai/whisper) or an image reading (the vision model)
prediction completes.

Routes: POST /webhooks/audio/{id} and POST /webhooks/image/{id}, public (no API key: the
signature is the credential).
Contract:
- The signature is verified before the body is read: Replicate's Standard Webhooks signature,
  or Hookdeck's with WEBHOOK_SIGNATURE=hookdeck. A bad or missing one -> 401, nothing changes.
- A malformed asset id -> 400; an unknown asset -> 404 (the sender should not retry).
- Otherwise the delivery is put on the webhook queue and answered 202 {"id", "accepted": true}
  within a second, whatever the store or the model API are doing.
The webhook consumer applies it later: the transcript's timed segments (or the image's
description and visible text) become chunks, and the embedding prediction is requested; a
failed or canceled prediction sets the asset's error status with the model's reason. A
delivery that cannot be queued -> 503, and the sender retries it.

The audio and embedding webhook functions are one implementation
(`entrypoints/webhooks.py`) with their kind: the template names both, so each keeps its
folder, its route and its least-privilege policy.
"""

from allthethings.entrypoints.webhooks import webhook_function

logger, app, handler = webhook_function("audio", "image")
