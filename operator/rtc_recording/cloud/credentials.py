"""Where the AccessKey that signs each call comes from.

Two sources:

- `StaticCredentials`: a Kubernetes Secret named by the resource. Its keys:
  `accessKeyId`, `accessKeySecret`, and optionally `securityToken` (an STS token;
  whoever writes the Secret must renew it before it expires).
- `DefaultChainCredentials`: the vendor's own chain (`alibabacloud-credentials`), tried in
  its order: environment variables (ALIBABA_CLOUD_ACCESS_KEY_ID/_SECRET/SECURITY_TOKEN),
  RRSA (ALIBABA_CLOUD_ROLE_ARN, ALIBABA_CLOUD_OIDC_PROVIDER_ARN,
  ALIBABA_CLOUD_OIDC_TOKEN_FILE: the pod's OIDC token exchanged for STS credentials),
  CLI/profile files, the ECS instance role, ALIBABA_CLOUD_CREDENTIALS_URI. The chain
  caches and refreshes STS credentials itself, so `get()` is cheap to call per request.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from alibabacloud_credentials.client import Client as VendorCredentialsClient

SECRET_ACCESS_KEY_ID = "accessKeyId"
SECRET_ACCESS_KEY_SECRET = "accessKeySecret"
SECRET_SECURITY_TOKEN = "securityToken"


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    access_key_secret: str
    security_token: str | None = None

    def __repr__(self) -> str:
        token = "***" if self.security_token else None
        return f"Credentials(access_key_id={self.access_key_id!r}, access_key_secret='***', security_token={token!r})"


class CredentialsUnavailable(Exception):
    """No credentials could be obtained (nothing configured, or the STS exchange failed)."""


class CredentialsProvider(Protocol):
    def get(self) -> Credentials:
        """The credentials to sign the next request with; raises CredentialsUnavailable."""
        ...


@dataclass(frozen=True, repr=False)
class StaticCredentials:
    credentials: Credentials

    def get(self) -> Credentials:
        return self.credentials

    def __repr__(self) -> str:
        return f"StaticCredentials({self.credentials!r})"

    @classmethod
    def from_secret_data(cls, data: Mapping[str, str]) -> StaticCredentials:
        """From a Secret's `.data` (base64 values, as the API server returns them)."""
        values = {key: _b64decode(key, value) for key, value in data.items()}
        missing = [k for k in (SECRET_ACCESS_KEY_ID, SECRET_ACCESS_KEY_SECRET) if not values.get(k)]
        if missing:
            raise CredentialsUnavailable(f"credentials Secret lacks {', '.join(missing)}")
        return cls(
            Credentials(
                access_key_id=values[SECRET_ACCESS_KEY_ID],
                access_key_secret=values[SECRET_ACCESS_KEY_SECRET],
                security_token=values.get(SECRET_SECURITY_TOKEN) or None,
            )
        )


def _b64decode(key: str, value: str) -> str:
    try:
        return base64.b64decode(value, validate=True).decode("utf-8").strip()
    except (binascii.Error, UnicodeDecodeError):
        # Name the key, never the value: it may be the secret itself.
        raise CredentialsUnavailable(f"credentials Secret key {key!r} is not base64-encoded UTF-8") from None


class DefaultChainCredentials:
    """The vendor's default credentials chain, or a vendor client built from a `Config`."""

    def __init__(self, vendor: VendorCredentialsClient | None = None) -> None:
        if vendor is None:
            # Imported here: 8 MB (with requests and apscheduler) that the receiver, which holds no
            # cloud credentials, must not carry.
            from alibabacloud_credentials.client import Client as VendorCredentialsClient

            vendor = VendorCredentialsClient()
        self._vendor = vendor

    def get(self) -> Credentials:
        try:
            model = self._vendor.get_credential()
        except Exception as exc:  # the chain raises CredentialException, ValueError, OSError...
            raise CredentialsUnavailable(f"{type(exc).__name__}: {_message(exc)}") from exc
        if not model.access_key_id or not model.access_key_secret:
            raise CredentialsUnavailable("the credentials chain returned no AccessKey")
        return Credentials(
            access_key_id=model.access_key_id,
            access_key_secret=model.access_key_secret,
            security_token=model.security_token or None,
        )


def _message(exc: Exception) -> str:
    # CredentialException keeps its text in .message, not in args.
    return getattr(exc, "message", None) or str(exc)
