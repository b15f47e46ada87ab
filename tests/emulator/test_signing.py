"""Both signature versions, signed by the vendor SDK's own signer functions."""

from __future__ import annotations

import hashlib
import time
from types import SimpleNamespace
from typing import Any

import pytest
from alibabacloud_tea_openapi.utils import Utils
from multidict import CIMultiDict

from rtc_recording.emulator.errors import ApiError
from rtc_recording.emulator.keys import KeyStore
from rtc_recording.emulator.signing import NonceCache, SignedRequest, verify

NOW = 1_700_000_000.0
KEYS = KeyStore({"AK": "secret"}, {"STS.AK": ("stssecret", "tok")}, {"STS.AK": NOW + 3600})
QUERY = {"AppId": "app 1+2~", "SubscribeParams": '{"SubscribeUserIdList":[{"UserId":"ü"}]}', "TaskId": "t/1=2&x"}


def stamp(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def acs3(
    query: dict[str, str] = QUERY,
    *,
    key: str = "AK",
    secret: str = "secret",
    token: str | None = None,
    at: float = NOW,
    nonce: str = "n1",
    unsigned: dict[str, str] | None = None,
    body: bytes = b"",
    drop: tuple[str, ...] = (),
) -> SignedRequest:
    """What the SDK's do_request sends (see alibabacloud_tea_openapi.client), signed by its get_authorization."""
    headers = {
        "host": "127.0.0.1:8080",
        "x-acs-version": "2016-11-01",
        "x-acs-action": "DescribeRtcCloudRecordingFiles",
        "user-agent": "AlibabaCloud",
        "x-acs-date": stamp(at),
        "x-acs-signature-nonce": nonce,
        "accept": "application/json",
        "x-acs-content-sha256": hashlib.sha256(b"").hexdigest(),
    }
    if token:
        headers |= {"x-acs-accesskey-id": key, "x-acs-security-token": token}
    for name in drop:
        headers.pop(name)
    request = SimpleNamespace(method="POST", pathname="/", query=dict(query), headers=headers)
    authorization = Utils.get_authorization(request, "ACS3-HMAC-SHA256", headers["x-acs-content-sha256"], key, secret)
    wire = CIMultiDict(headers | (unsigned or {}) | {"Authorization": authorization})
    return SignedRequest("POST", "/", list(query.items()), wire, body)


def v2(
    query: dict[str, str] = QUERY,
    *,
    key: str = "AK",
    secret: str = "secret",
    token: str | None = None,
    at: float = NOW,
    nonce: str = "n1",
    method: str = "POST",
    **override: str,
) -> SignedRequest:
    """What the SDK's do_rpcrequest sends, signed by its get_rpcsignature."""
    params = {
        "Action": "DescribeRtcCloudRecordingFiles",
        "Format": "json",
        "Version": "2016-11-01",
        "Timestamp": stamp(at),
        "SignatureNonce": nonce,
        **query,
    }
    if token:
        params["SecurityToken"] = token
    params |= {"SignatureMethod": "HMAC-SHA1", "SignatureVersion": "1.0", "AccessKeyId": key}
    params["Signature"] = Utils.get_rpcsignature(params, method, secret)
    params |= override
    return SignedRequest(method, "/", [(k, v) for k, v in params.items() if v is not None], CIMultiDict())


def check(request: SignedRequest, *, nonces: NonceCache | None = None, now: float = NOW) -> str:
    return verify(request, KEYS, nonces or NonceCache(), now).access_key_id


def refused(request: SignedRequest, **kwargs: Any) -> tuple[str, int]:
    with pytest.raises(ApiError) as caught:
        check(request, **kwargs)
    return caught.value.code, caught.value.status


def tampered(request: SignedRequest, **changes: str) -> SignedRequest:
    query = [(k, changes.get(k, v)) for k, v in request.query]
    return SignedRequest(request.method, request.path, query, request.headers, request.body)


class TestAcs3:
    def test_accepts_the_sdk_signature(self) -> None:
        assert check(acs3()) == "AK"

    def test_sts(self) -> None:
        assert check(acs3(key="STS.AK", secret="stssecret", token="tok")) == "STS.AK"
        assert refused(acs3(key="STS.AK", secret="stssecret")) == ("InvalidSecurityToken.MismatchWithAccessKey", 400)
        assert refused(acs3(key="STS.AK", secret="stssecret", token="other")) == ("InvalidSecurityToken.Malformed", 400)
        assert refused(acs3(key="AK", token="tok")) == ("InvalidSecurityToken.MismatchWithAccessKey", 400)
        expired = acs3(key="STS.AK", secret="stssecret", token="tok", at=NOW + 3600)
        assert refused(expired, now=NOW + 3600) == ("InvalidSecurityToken.Expired", 400)

    def test_wrong_secret_or_changed_query(self) -> None:
        assert refused(acs3(secret="guess")) == ("SignatureDoesNotMatch", 400)
        assert refused(tampered(acs3(), TaskId="t2")) == ("SignatureDoesNotMatch", 400)

    def test_body_must_match_its_hash(self) -> None:
        assert refused(acs3(body=b"x")) == ("SignatureDoesNotMatch", 400)

    def test_unknown_key(self) -> None:
        assert refused(acs3(key="NOPE")) == ("InvalidAccessKeyId.NotFound", 404)

    @pytest.mark.parametrize("name", ["host", "x-acs-date", "x-acs-signature-nonce", "x-acs-action"])
    def test_host_and_acs_headers_must_be_signed(self, name: str) -> None:
        request = acs3(drop=(name,), unsigned={name: "x"})
        assert refused(request) == ("IncompleteSignature", 400)

    def test_extra_acs_header_must_be_signed(self) -> None:
        assert refused(acs3(unsigned={"x-acs-extra": "1"})) == ("IncompleteSignature", 400)
        assert check(acs3(unsigned={"x-forwarded-for": "1.2.3.4"})) == "AK"  # others need not be

    @pytest.mark.parametrize(
        "authorization",
        ["ACS3-HMAC-SHA256 Credential=AK", "ACS3-HMAC-SM3 Credential=AK,SignedHeaders=host,Signature=00", "garbage"],
    )
    def test_malformed_authorization(self, authorization: str) -> None:
        request = acs3()
        headers = CIMultiDict(request.headers)
        headers["Authorization"] = authorization
        assert refused(SignedRequest("POST", "/", request.query, headers)) == ("IncompleteSignature", 400)

    def test_unsigned_request(self) -> None:
        assert refused(SignedRequest("POST", "/", [("TaskId", "t")], CIMultiDict())) == ("IncompleteSignature", 400)

    def test_date_within_15_minutes(self) -> None:
        assert check(acs3(at=NOW - 899)) == "AK"
        assert check(acs3(at=NOW + 899)) == "AK"
        assert refused(acs3(at=NOW - 901)) == ("InvalidTimeStamp.Expired", 400)
        assert refused(acs3(at=NOW + 901)) == ("InvalidTimeStamp.Expired", 400)

    def test_nonce_single_use(self) -> None:
        nonces = NonceCache()
        check(acs3(nonce="once"), nonces=nonces)
        assert refused(acs3(nonce="once"), nonces=nonces) == ("SignatureNonceUsed", 400)
        # a forged copy does not spend the nonce
        assert refused(acs3(nonce="fresh", secret="guess"), nonces=nonces) == ("SignatureDoesNotMatch", 400)
        assert check(acs3(nonce="fresh"), nonces=nonces) == "AK"


class TestV2:
    def test_accepts_the_sdk_signature(self) -> None:
        assert check(v2()) == "AK"
        assert check(v2(method="GET")) == "AK"

    def test_sts(self) -> None:
        assert check(v2(key="STS.AK", secret="stssecret", token="tok")) == "STS.AK"
        assert refused(v2(key="STS.AK", secret="stssecret")) == ("InvalidSecurityToken.MismatchWithAccessKey", 400)
        assert refused(v2(key="STS.AK", secret="stssecret", token="bad")) == ("InvalidSecurityToken.Malformed", 400)

    def test_wrong_secret_or_changed_query(self) -> None:
        assert refused(v2(secret="guess")) == ("SignatureDoesNotMatch", 400)
        assert refused(tampered(v2(), AppId="other")) == ("SignatureDoesNotMatch", 400)
        assert refused(v2(method="GET", Signature=v2().query[-1][1])) == ("SignatureDoesNotMatch", 400)

    def test_unknown_key(self) -> None:
        assert refused(v2(key="NOPE")) == ("InvalidAccessKeyId.NotFound", 404)

    @pytest.mark.parametrize(
        "name", ["SignatureNonce", "Timestamp", "AccessKeyId", "SignatureMethod", "SignatureVersion"]
    )
    def test_signature_parameters_required(self, name: str) -> None:
        assert refused(v2(**{name: None})) == ("IncompleteSignature", 400)

    def test_only_hmac_sha1(self) -> None:
        assert refused(v2(SignatureMethod="HMAC-SHA256")) == ("IncompleteSignature", 400)

    def test_timestamp(self) -> None:
        assert refused(v2(at=NOW - 901)) == ("InvalidTimeStamp.Expired", 400)
        assert refused(v2(Timestamp="yesterday")) == ("InvalidTimeStamp.Format", 400)

    def test_nonce_single_use(self) -> None:
        nonces = NonceCache()
        check(v2(nonce="once"), nonces=nonces)
        assert refused(v2(nonce="once"), nonces=nonces) == ("SignatureNonceUsed", 400)


def test_nonces_are_forgotten_once_their_timestamp_expired() -> None:
    nonces = NonceCache(ttl=1800)
    assert nonces.use("AK", "n", 0) and not nonces.use("AK", "n", 1799)
    assert nonces.use("OTHER", "n", 1799)  # per AccessKey
    assert nonces.use("AK", "n", 1800)
