"""Verification of the two request signatures the vendor's SDK produces.

ACS3-HMAC-SHA256 (the SDK default) signs a canonical request in the `Authorization`
header; the older RPC signature (`signature_algorithm='v2'` in the SDK) is an HMAC-SHA1
over the sorted query in the `Signature` query parameter. Both are recomputed exactly
as `alibabacloud_tea_openapi.utils.Utils.get_authorization` / `get_rpcsignature` build
them, from the decoded query, so any encoding the client used on the wire is fine.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from calendar import timegm
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from time import strptime
from urllib.parse import quote, quote_plus

from .errors import ApiError
from .keys import Credential, KeyStore

MAX_SKEW_SECONDS = 15 * 60
ACS3 = "ACS3-HMAC-SHA256"
# v2 parameters that carry the signature itself (IncompleteSignature when missing)
V2_SIGNATURE_PARAMS = ("Signature", "SignatureMethod", "SignatureVersion", "SignatureNonce", "AccessKeyId", "Timestamp")
# ACS3 headers the signer always sends and a verifier insists on seeing signed
ACS3_REQUIRED_HEADERS = (
    "host",
    "x-acs-date",
    "x-acs-signature-nonce",
    "x-acs-content-sha256",
    "x-acs-action",
    "x-acs-version",
)


@dataclass(frozen=True)
class SignedRequest:
    method: str
    path: str
    query: Sequence[tuple[str, str]]  # decoded, in wire order
    headers: Mapping[str, str]  # case-insensitive mapping (aiohttp's CIMultiDictProxy or lower-cased dict)
    body: bytes = b""

    def header_values(self, name: str) -> list[str]:
        getall = getattr(self.headers, "getall", None)
        if getall is not None:
            return list(getall(name, []))
        value = self.headers.get(name)
        return [] if value is None else [value]


class NonceCache:
    """Nonces seen within the accepted clock skew, per AccessKey; older ones can no longer replay."""

    def __init__(self, ttl: float = 2 * MAX_SKEW_SECONDS):
        self._ttl = ttl
        self._seen: set[tuple[str, str]] = set()
        self._order: deque[tuple[float, tuple[str, str]]] = deque()

    def use(self, access_key_id: str, nonce: str, now: float) -> bool:
        """Record the nonce; False if it was used already."""
        while self._order and self._order[0][0] <= now - self._ttl:
            self._seen.discard(self._order.popleft()[1])
        key = (access_key_id, nonce)
        if key in self._seen:
            return False
        self._seen.add(key)
        self._order.append((now, key))
        return True


def verify(request: SignedRequest, keys: KeyStore, nonces: NonceCache, now: float) -> Credential:
    """Check the request's signature; returns the caller's credential or raises ApiError."""
    if any(k == "Signature" for k, _ in request.query):
        return _verify_v2(request, keys, nonces, now)
    if request.headers.get("Authorization"):
        return _verify_acs3(request, keys, nonces, now)
    raise ApiError("IncompleteSignature", "Neither an Authorization header nor a Signature parameter is present.")


def acs3_string_to_sign(request: SignedRequest, signed_headers: Sequence[str]) -> str:
    canonical_headers = ""
    for name in signed_headers:
        values = sorted(v.strip() for v in request.header_values(name))
        canonical_headers += f"{name}:{','.join(values)}\n"
    payload_hash = request.headers.get("x-acs-content-sha256", "")
    canonical_request = "\n".join(
        [
            request.method.upper(),
            request.path or "/",
            _canonical_query(request.query),
            canonical_headers,
            ";".join(signed_headers),
            payload_hash,
        ]
    )
    return f"{ACS3}\n{hashlib.sha256(canonical_request.encode()).hexdigest()}"


def v2_string_to_sign(method: str, params: Sequence[tuple[str, str]]) -> str:
    pairs = sorted((k, v) for k, v in params if k != "Signature")
    canonical = "&".join(f"{quote(k, safe='~')}={quote(v, safe='~')}" for k, v in pairs)
    return f"{method.upper()}&%2F&{quote_plus(canonical, safe='~')}"


def _canonical_query(query: Sequence[tuple[str, str]]) -> str:
    return "&".join(f"{quote(k, safe='~')}={quote(v, safe='~')}" for k, v in sorted(query))


def _verify_acs3(request: SignedRequest, keys: KeyStore, nonces: NonceCache, now: float) -> Credential:
    algorithm, _, rest = request.headers["Authorization"].strip().partition(" ")
    if algorithm != ACS3:
        raise ApiError("IncompleteSignature", f"Unsupported signature algorithm {algorithm!r}.")
    fields = {}
    for part in rest.split(","):
        name, sep, value = part.strip().partition("=")
        if sep:
            fields[name] = value
    if not {"Credential", "SignedHeaders", "Signature"} <= fields.keys():
        raise ApiError("IncompleteSignature", "Authorization needs Credential, SignedHeaders and Signature.")
    signed = fields["SignedHeaders"].split(";")
    if signed != sorted(n.lower() for n in signed):
        raise ApiError("IncompleteSignature", "SignedHeaders must be lower-case and sorted.")
    for name in ACS3_REQUIRED_HEADERS:
        if name not in signed or not request.headers.get(name):
            raise ApiError("IncompleteSignature", f"Header {name} must be present and signed.")
    for name in request.headers:
        if name.lower().startswith("x-acs-") and name.lower() not in signed:
            raise ApiError("IncompleteSignature", f"Header {name.lower()} is present but not signed.")
    for name in signed:
        if not request.header_values(name):
            raise ApiError("IncompleteSignature", f"Signed header {name} is missing from the request.")

    _check_timestamp(request.headers["x-acs-date"], now)
    cred = _credential(keys, fields["Credential"], request.headers.get("x-acs-security-token"), now)
    if request.headers["x-acs-content-sha256"].lower() != hashlib.sha256(request.body).hexdigest():
        raise ApiError("SignatureDoesNotMatch", "x-acs-content-sha256 is not the SHA-256 of the body.")
    string_to_sign = acs3_string_to_sign(request, signed)
    expected = hmac.new(cred.secret.encode(), string_to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, fields["Signature"].lower()):
        raise ApiError("SignatureDoesNotMatch", f"Server string to sign is: {string_to_sign!r}")
    _use_nonce(nonces, cred, request.headers["x-acs-signature-nonce"], now)
    return cred


def _verify_v2(request: SignedRequest, keys: KeyStore, nonces: NonceCache, now: float) -> Credential:
    params = dict(request.query)
    for name in V2_SIGNATURE_PARAMS:
        if not params.get(name):
            raise ApiError("IncompleteSignature", f"Parameter {name} is missing.")
    if params["SignatureMethod"] != "HMAC-SHA1" or params["SignatureVersion"] != "1.0":
        raise ApiError("IncompleteSignature", "Only SignatureMethod HMAC-SHA1, SignatureVersion 1.0 are supported.")
    _check_timestamp(params["Timestamp"], now)
    cred = _credential(keys, params["AccessKeyId"], params.get("SecurityToken"), now)
    string_to_sign = v2_string_to_sign(request.method, request.query)
    digest = hmac.new(f"{cred.secret}&".encode(), string_to_sign.encode(), hashlib.sha1).digest()
    if not hmac.compare_digest(base64.b64encode(digest).decode(), params["Signature"]):
        raise ApiError("SignatureDoesNotMatch", f"Server string to sign is: {string_to_sign!r}")
    _use_nonce(nonces, cred, params["SignatureNonce"], now)
    return cred


def _check_timestamp(value: str, now: float) -> None:
    try:
        # the operator's format (rtc_recording.api.timestamps), copied: the emulator is the other side of the wire
        stamp = timegm(strptime(value, "%Y-%m-%dT%H:%M:%SZ"))
    except ValueError:
        raise ApiError("InvalidTimeStamp.Format", f"{value!r} is not YYYY-MM-DDThh:mm:ssZ.") from None
    if abs(now - stamp) > MAX_SKEW_SECONDS:
        raise ApiError("InvalidTimeStamp.Expired", f"{value} is more than 15 minutes off the server time.")


def _credential(keys: KeyStore, access_key_id: str, token: str | None, now: float) -> Credential:
    cred = keys.get(access_key_id)
    if cred is None:
        raise ApiError("InvalidAccessKeyId.NotFound", f"AccessKeyId {access_key_id!r}.")
    if cred.security_token is None:
        if token:
            raise ApiError("InvalidSecurityToken.MismatchWithAccessKey", "The AccessKey is not an STS key.")
        return cred
    if not token:
        raise ApiError("InvalidSecurityToken.MismatchWithAccessKey", "An STS AccessKey needs its SecurityToken.")
    if not hmac.compare_digest(token, cred.security_token):
        raise ApiError("InvalidSecurityToken.Malformed", "The SecurityToken is not the one issued with this AccessKey.")
    if cred.expires_at is not None and now >= cred.expires_at:
        raise ApiError("InvalidSecurityToken.Expired", "")
    return cred


def _use_nonce(nonces: NonceCache, cred: Credential, nonce: str, now: float) -> None:
    # Only a correctly signed request spends its nonce: a forged copy cannot burn it first.
    if not nonces.use(cred.access_key_id, nonce, now):
        raise ApiError("SignatureNonceUsed", f"Nonce {nonce!r}.")
