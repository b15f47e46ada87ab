"""Links that play: OSS objects presigned for `kubectl rtcrec files --url`.

Signed where the caller runs, with the vendor's OSS SDK (`alibabacloud-oss-v2`: signature V4, valid
for at most 7 days). It is the plugin's optional dependency (`pip install
'rtc-recording-operator[plugin]'`), imported only when a link is made: the operator never makes one
and its image does not carry the SDK. Presigning is local arithmetic: no request leaves.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from rtc_recording.cloud.credentials import Credentials

MAX_EXPIRES = timedelta(days=7)  # the SDK's and OSS's limit for V4
_ENDPOINT = re.compile(r"^oss-([a-z0-9-]+?)(-internal)?\.aliyuncs\.com$")


class SdkMissing(Exception):
    """The OSS SDK is not installed where the plugin runs."""


@dataclass(frozen=True)
class Bucket:
    name: str
    region: str
    endpoint: str  # where links point: a host name (virtual-hosted style) or a URL (an IP: path style)


def bucket(name: str, endpoint: str, override: str | None = None) -> Bucket:
    """The bucket a recording wrote to, from spec.storage.oss (its endpoint, `oss-<region>[-internal].aliyuncs.com`,
    says the region that signs). An internal endpoint answers only inside the region's VPC: links use the
    public one. `override` (tests, private endpoints) replaces where links point, not the region."""
    match = _ENDPOINT.match(endpoint)
    if match is None:
        raise ValueError(f"OSS endpoint {endpoint!r} is not oss-<region>[-internal].aliyuncs.com")
    region = match.group(1)
    return Bucket(name, region, override or f"oss-{region}.aliyuncs.com")


@dataclass(frozen=True)
class Link:
    url: str
    expires: datetime


Presigner = Callable[[str], Link]  # object key -> a GET link to it


def oss_presigner(credentials: Credentials, target: Bucket, expires: timedelta) -> Presigner:
    """GET links to objects of `target`, valid for `expires`, signed with `credentials`."""
    if not timedelta(0) < expires <= MAX_EXPIRES:
        raise ValueError(f"links can be valid for at most {MAX_EXPIRES.days} days (OSS signature V4)")
    try:
        import alibabacloud_oss_v2 as oss
    except ImportError:
        raise SdkMissing(
            "presigned links need the vendor's OSS SDK: pip install 'rtc-recording-operator[plugin]' "
            "(or alibabacloud-oss-v2)"
        ) from None
    config = oss.config.load_default()
    config.credentials_provider = oss.credentials.StaticCredentialsProvider(
        credentials.access_key_id, credentials.access_key_secret, credentials.security_token
    )
    config.region, config.endpoint = target.region, target.endpoint
    client = oss.Client(config)

    def presign(key: str) -> Link:
        try:
            result = client.presign(oss.GetObjectRequest(bucket=target.name, key=key), expires=expires)
        except oss.exceptions.BaseError as exc:  # a name OSS would refuse: say which, not a traceback
            raise ValueError(f"cannot presign {target.name}/{key}: {exc}") from None
        return Link(result.url, result.expiration)

    return presign
