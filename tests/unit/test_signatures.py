"""Replicate's webhook signature, checked against the Standard Webhooks reference behaviour."""

import base64
import hashlib
import hmac
import time

import pytest

from allthethings.adapters.signatures import ReplicateVerifier
from allthethings.domain.errors import Unauthorized

KEY = b"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SECRET = "whsec_" + base64.b64encode(KEY).decode()
BODY = b'{"id":"ufawqhfynnddngldkgtslldrkq","status":"succeeded","output":{"segments":[]}}'


def signature(msg_id: str, stamp: int, body: bytes, key: bytes = KEY) -> str:
    """The reference construction: HMAC-SHA256 over "{id}.{timestamp}.{body}", base64, "v1," prefix."""
    digest = hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(msg_id="msg_p5jXN8AQM9LWM0D4loKWxJek", stamp=None, sig=None, body=BODY):
    stamp = int(time.time()) if stamp is None else stamp
    return {"webhook-id": msg_id, "webhook-timestamp": str(stamp),
            "webhook-signature": sig or signature(msg_id, stamp, body)}


def test_a_valid_signature_is_accepted_and_names_the_delivery():
    assert ReplicateVerifier(SECRET).verify(BODY, headers()) == "msg_p5jXN8AQM9LWM0D4loKWxJek"


def test_header_names_are_case_insensitive():
    h = {k.title(): v for k, v in headers().items()}
    ReplicateVerifier(SECRET).verify(BODY, h)


def test_one_valid_signature_among_several_in_the_header_is_enough():
    h = headers()
    h["webhook-signature"] = f"v1,{base64.b64encode(b'x' * 32).decode()} {h['webhook-signature']} v2,abc"
    ReplicateVerifier(SECRET).verify(BODY, h)


def test_a_tampered_body_is_refused():
    with pytest.raises(Unauthorized):
        ReplicateVerifier(SECRET).verify(BODY.replace(b"succeeded", b"failed"), headers())


def test_a_tampered_timestamp_is_refused():
    h = headers()
    h["webhook-timestamp"] = str(int(h["webhook-timestamp"]) + 1)
    with pytest.raises(Unauthorized):
        ReplicateVerifier(SECRET).verify(BODY, h)


@pytest.mark.parametrize("offset", [-10 * 60, 10 * 60])
def test_a_timestamp_outside_the_tolerance_is_refused_even_when_correctly_signed(offset):
    with pytest.raises(Unauthorized):
        ReplicateVerifier(SECRET).verify(BODY, headers(stamp=int(time.time()) + offset))


def test_a_signature_made_with_another_secret_is_refused():
    stamp = int(time.time())
    with pytest.raises(Unauthorized):
        ReplicateVerifier(SECRET).verify(BODY, headers(stamp=stamp, sig=signature("msg_1", stamp, BODY, b"k" * 32)))


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_a_missing_header_is_refused(missing):
    h = headers()
    del h[missing]
    with pytest.raises(Unauthorized):
        ReplicateVerifier(SECRET).verify(BODY, h)


def test_no_configured_secret_refuses_everything():
    with pytest.raises(Unauthorized, match="not configured"):
        ReplicateVerifier(None).verify(BODY, headers())
