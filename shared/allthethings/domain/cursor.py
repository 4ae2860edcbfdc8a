"""Opaque pagination cursors: a small JSON object, URL-safe base64, checked on the way back in."""

from __future__ import annotations

import base64
import binascii
import json

from allthethings.domain.errors import InvalidInput


def encode(position: dict) -> str:
    raw = json.dumps(position, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(cursor: str, *keys: str) -> dict:
    """The position a cursor holds; InvalidInput if it was not made by `encode` with `keys`."""
    try:
        if len(cursor) > 512:
            raise ValueError("too long")
        padded = cursor + "=" * (-len(cursor) % 4)
        position = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        if not isinstance(position, dict) or set(position) != set(keys):
            raise ValueError("wrong shape")
        return position
    except (ValueError, UnicodeError, binascii.Error, json.JSONDecodeError):
        raise InvalidInput("cursor is not valid: pass back the next_cursor of a previous page") from None
