"""How a request to the apiserver can end, other than in success: one tree, so callers catch by meaning.

    KubeError
    ├── NotFound               404: the object is not there (an answer, not a failure)
    ├── Conflict               409: it changed since it was read: re-read, never overwrite
    └── Failed                 the request did not do its work; trying again later may
        ├── ApiError           any other error status, with the apiserver's body
        │   └── NamespaceTerminating   nothing new (an Event) can be created in the namespace
        └── Unreachable        no answer: the connection failed or timed out

Transport errors (aiohttp's, timeouts) never leave `kube/` as themselves: callers need not import aiohttp.
"""

from __future__ import annotations

import json


class KubeError(Exception):
    pass


class NotFound(KubeError):
    pass


class Conflict(KubeError):
    pass


class Failed(KubeError):
    pass


class ApiError(Failed):
    def __init__(self, status: int, body: str):
        super().__init__(f"HTTP {status}: {_said(body)}")
        self.status = status


def _said(body: str) -> str:
    """The apiserver's own words from a metav1.Status body (one line for a log), else the body's start."""
    try:
        message = json.loads(body).get("message")
    except (ValueError, AttributeError):
        message = None
    return message[:500] if isinstance(message, str) and message else body[:500].replace("\n", " ")


class NamespaceTerminating(ApiError):
    pass


class Unreachable(Failed):
    pass
