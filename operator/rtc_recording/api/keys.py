"""Keys derived from the operator's secrets, one per purpose: a key for one purpose is worth nothing for another."""

from __future__ import annotations

import hashlib
import hmac

_INFO = b"rtcrec task ownership v1"  # the default purpose: task seals (decide/ownership.py)


def derive_key(secret: str, info: bytes = _INFO) -> bytes:
    """HKDF-SHA256 (RFC 5869, one block) of `secret`: a key for one purpose only."""
    prk = hmac.new(b"rtcrec", secret.encode(), hashlib.sha256).digest()
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()
