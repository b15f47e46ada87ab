"""The account's AccessKeys and STS tokens."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Credential:
    access_key_id: str
    secret: str
    security_token: str | None = None  # set for STS credentials
    expires_at: float | None = None  # real Unix time, STS only


class KeyStore:
    def __init__(
        self,
        access_keys: Mapping[str, str] = {},
        sts_tokens: Mapping[str, tuple[str, str]] = {},
        sts_expires_at: Mapping[str, float] = {},
    ):
        self._creds: dict[str, Credential] = {}
        self.update(access_keys, sts_tokens, sts_expires_at)

    def update(
        self,
        access_keys: Mapping[str, str] = {},
        sts_tokens: Mapping[str, tuple[str, str]] = {},
        sts_expires_at: Mapping[str, float] = {},
        revoke: Iterable[str] = (),
    ) -> None:
        for key_id, secret in access_keys.items():
            self._creds[key_id] = Credential(key_id, secret)
        for key_id, (secret, token) in sts_tokens.items():
            self._creds[key_id] = Credential(key_id, secret, token, sts_expires_at.get(key_id))
        for key_id, expires_at in sts_expires_at.items():
            if key_id in self._creds and key_id not in sts_tokens:
                old = self._creds[key_id]
                self._creds[key_id] = Credential(key_id, old.secret, old.security_token, expires_at)
        for key_id in revoke:
            self._creds.pop(key_id, None)

    def get(self, access_key_id: str) -> Credential | None:
        return self._creds.get(access_key_id)
