"""OSS's side of a presigned link: the V4 signature in the query string, as the vendor's OSS SDK
(`alibabacloud-oss-v2`, `Client.presign`) writes it, and OSS's XML error answers.

    GET /<bucket>/<key>?x-oss-signature-version=OSS4-HMAC-SHA256&x-oss-date=<yyyymmddThhmmssZ>
        &x-oss-expires=<seconds>&x-oss-credential=<AccessKeyId>/<yyyymmdd>/<region>/oss/aliyun_v4_request
        [&x-oss-security-token=<STS token>]&x-oss-signature=<hex>

The signature is hex HMAC-SHA256, under a key derived from "aliyun_v4" + secret, the date, the
region, "oss" and "aliyun_v4_request", of "OSS4-HMAC-SHA256\\n<x-oss-date>\\n<scope>\\n" + hex
SHA-256 of the canonical request: method, "/<bucket>/<key>" URI-encoded ("/" kept), the query
without x-oss-signature (each key and value URI-encoded, sorted, `k=v`, or `k` when empty), the
x-oss-* / Content-Type / Content-MD5 headers and those named in x-oss-additional-headers
(`name:value\\n`, sorted), the additional header names, and "UNSIGNED-PAYLOAD". It is
recomputed from the decoded query, so any encoding the client used on the wire is fine.

A link is refused once the link clock (real time plus every advance, `Clock.links`) passes
x-oss-date + x-oss-expires: 403 AccessDenied "Request has expired."; any change to the key,
the query or the signature: 403 SignatureDoesNotMatch. An STS key's token must be the one
issued with it and not expired (real time, as for the API).
"""

from __future__ import annotations

import hashlib
import hmac
from calendar import timegm
from collections.abc import Mapping, Sequence
from time import gmtime, strftime, strptime
from urllib.parse import quote
from xml.sax.saxutils import escape

from .keys import Credential, KeyStore

V4 = "OSS4-HMAC-SHA256"
MAX_EXPIRES_SECONDS = 7 * 86400  # the SDK refuses to presign for longer; so does OSS
REQUIRED = ("x-oss-signature-version", "x-oss-credential", "x-oss-date", "x-oss-expires", "x-oss-signature")
DATE_FORMAT = "%Y%m%dT%H%M%SZ"


class OssError(Exception):
    """An OSS error answer: HTTP status, code, message and the extra elements OSS adds."""

    def __init__(self, status: int, code: str, message: str, **details: str):
        super().__init__(f"{code} ({status}): {message}")
        self.status, self.code, self.message, self.details = status, code, message, details


def error_xml(error: OssError, request_id: str, host: str) -> bytes:
    fields = {"Code": error.code, "Message": error.message, "RequestId": request_id, "HostId": host}
    body = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in (fields | error.details).items())
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<Error>{body}</Error>\n'.encode()


def verify_presigned(
    method: str,
    bucket: str,
    key: str,
    query: Sequence[tuple[str, str]],
    headers: Mapping[str, str],
    keys: KeyStore,
    region: str,
    now: float,
    wall: float,
) -> Credential:
    """Check a presigned request (decoded query, in wire order); returns the signer's credential or raises
    OssError. `now` is the link clock (expiry), `wall` real time (an STS token's expiry)."""
    params = dict(query)
    if not any(k in params for k in REQUIRED):
        raise OssError(403, "AccessDenied", "You have no right to access this object because of bucket acl.")
    missing = [k for k in REQUIRED if not params.get(k)]
    if missing:
        raise OssError(400, "InvalidArgument", f"Presigned URLs need {', '.join(missing)}.")
    if (version := params["x-oss-signature-version"]) != V4:
        raise OssError(400, "InvalidArgument", f"Unsupported x-oss-signature-version {version}.")
    access_key_id, _, scope = params["x-oss-credential"].partition("/")
    date, signing_region, product, terminator = (scope.split("/") + ["", "", "", ""])[:4]
    try:
        signed_at = timegm(strptime(params["x-oss-date"], DATE_FORMAT))
        expires = int(params["x-oss-expires"])
    except ValueError:
        raise OssError(400, "InvalidArgument", "x-oss-date or x-oss-expires is malformed.") from None
    if not 0 < expires <= MAX_EXPIRES_SECONDS:
        raise OssError(400, "InvalidArgument", f"x-oss-expires must be between 1 and {MAX_EXPIRES_SECONDS}.")
    if (date, product, terminator) != (params["x-oss-date"][:8], "oss", "aliyun_v4_request"):
        raise OssError(400, "InvalidArgument", "x-oss-credential's scope is malformed.")
    if signing_region != region:
        raise OssError(400, "InvalidArgument", f"Invalid signing region {signing_region!r}: the bucket is in {region}.")
    cred = _credential(keys, access_key_id, params.get("x-oss-security-token"), wall)
    if now > signed_at + expires:
        raise OssError(
            403,
            "AccessDenied",
            "Request has expired.",
            Expires=strftime("%Y-%m-%dT%H:%M:%S.000Z", gmtime(signed_at + expires)),
            ServerTime=strftime("%Y-%m-%dT%H:%M:%S.000Z", gmtime(now)),
        )
    string_to_sign = v4_string_to_sign(method, bucket, key, query, headers, date, region)
    if not hmac.compare_digest(v4_signature(cred.secret, date, region, string_to_sign), params["x-oss-signature"]):
        raise OssError(
            403,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided. "
            "Check your key and signing method.",
            OSSAccessKeyId=access_key_id,
            StringToSign=string_to_sign,
        )
    return cred


def v4_string_to_sign(
    method: str,
    bucket: str,
    key: str,
    query: Sequence[tuple[str, str]],
    headers: Mapping[str, str],
    date: str,
    region: str,
) -> str:
    params = [(_encode(k), _encode(v)) for k, v in query if k != "x-oss-signature"]
    canonical_query = "&".join(f"{k}={v}" if v else k for k, v in sorted(params))
    additional = sorted(
        name.lower() for name in dict(query).get("x-oss-additional-headers", "").split(";") if name.strip()
    )
    lower = {name.lower(): value for name, value in headers.items()}
    signed = sorted(
        (name, value)
        for name, value in lower.items()
        if name.startswith("x-oss-") or name in ("content-type", "content-md5") or name in additional
    )
    canonical_request = "\n".join(
        [
            method.upper(),
            quote(f"/{bucket}/{key}", safe="/"),
            canonical_query,
            "".join(f"{name}:{value}\n" for name, value in signed),
            ";".join(additional),
            lower.get("x-oss-content-sha256", "UNSIGNED-PAYLOAD"),
        ]
    )
    scope = f"{date}/{region}/oss/aliyun_v4_request"
    date_time = dict(query)["x-oss-date"]
    return f"{V4}\n{date_time}\n{scope}\n{hashlib.sha256(canonical_request.encode()).hexdigest()}"


def v4_signature(secret: str, date: str, region: str, string_to_sign: str) -> str:
    key = f"aliyun_v4{secret}".encode()
    for part in (date, region, "oss", "aliyun_v4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()


def _encode(value: str) -> str:
    return quote(value, safe="-_.~")


def _credential(keys: KeyStore, access_key_id: str, token: str | None, wall: float) -> Credential:
    cred = keys.get(access_key_id)
    if cred is None:
        raise OssError(
            403,
            "InvalidAccessKeyId",
            "The OSS Access Key Id you provided does not exist in our records.",
            OSSAccessKeyId=access_key_id,
        )
    issued = cred.security_token
    if bool(issued) != bool(token) or (issued and token and not hmac.compare_digest(issued, token)):
        raise OssError(403, "InvalidSecurityToken", "The security token you provided is invalid.")
    if cred.expires_at is not None and wall >= cred.expires_at:
        raise OssError(403, "SecurityTokenExpired", "The security token you provided has expired.")
    return cred
