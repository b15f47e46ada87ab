"""Credentials from a Secret and from the vendor's chain; secrets never shown."""

from __future__ import annotations

import base64
import json
from types import SimpleNamespace

import pytest
from alibabacloud_credentials.client import Client as VendorCredentialsClient
from alibabacloud_credentials.models import Config
from alibabacloud_credentials.provider import oidc
from alibabacloud_credentials.utils import auth_util

from rtc_recording.cloud.credentials import (
    Credentials,
    CredentialsUnavailable,
    DefaultChainCredentials,
    StaticCredentials,
)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_repr_hides_secret_and_token():
    text = repr(Credentials("LTAI-id", "the-secret", "the-token")) + repr(
        StaticCredentials(Credentials("LTAI-id", "the-secret"))
    )
    assert "LTAI-id" in text
    assert "the-secret" not in text and "the-token" not in text


def test_from_secret_data():
    provider = StaticCredentials.from_secret_data(
        {"accessKeyId": b64("LTAI-id\n"), "accessKeySecret": b64("secret"), "securityToken": b64("tok")}
    )
    assert provider.get() == Credentials("LTAI-id", "secret", "tok")


def test_from_secret_data_without_token():
    provider = StaticCredentials.from_secret_data({"accessKeyId": b64("id"), "accessKeySecret": b64("s")})
    assert provider.get().security_token is None


def test_from_secret_data_names_missing_keys():
    with pytest.raises(CredentialsUnavailable, match="accessKeySecret"):
        StaticCredentials.from_secret_data({"accessKeyId": b64("id")})


def test_from_secret_data_does_not_echo_bad_values():
    with pytest.raises(CredentialsUnavailable, match="accessKeySecret") as caught:
        StaticCredentials.from_secret_data({"accessKeyId": b64("id"), "accessKeySecret": "not base64 secret!"})
    assert "secret!" not in str(caught.value)


def test_vendor_client_sts():
    vendor = VendorCredentialsClient(
        Config(type="sts", access_key_id="STS.id", access_key_secret="s", security_token="tok")
    )
    assert DefaultChainCredentials(vendor).get() == Credentials("STS.id", "s", "tok")


def test_default_chain_reads_the_environment(monkeypatch):
    # The vendor reads these variables once, at import: patch what it read.
    monkeypatch.setattr(auth_util, "environment_access_key_id", "LTAI-env")
    monkeypatch.setattr(auth_util, "environment_access_key_secret", "env-secret")
    monkeypatch.setattr(auth_util, "environment_security_token", None)
    assert DefaultChainCredentials().get() == Credentials("LTAI-env", "env-secret")


def rrsa_environment(monkeypatch, tmp_path) -> None:
    """What ACK's RRSA webhook injects into the pod, as the vendor read it at import."""
    token = tmp_path / "token"
    token.write_text("oidc-token")
    monkeypatch.setattr(auth_util, "enable_oidc_credential", True)
    monkeypatch.setattr(auth_util, "environment_role_arn", "acs:ram::1:role/recorder")
    monkeypatch.setattr(auth_util, "environment_oidc_provider_arn", "acs:ram::1:oidc-provider/ack")
    monkeypatch.setattr(auth_util, "environment_oidc_token_file", str(token))
    monkeypatch.setattr(auth_util, "environment_access_key_id", None)
    monkeypatch.setattr(auth_util, "environment_access_key_secret", None)
    # Keep the rest of the chain off this machine's files and off the ECS metadata server.
    monkeypatch.setattr(auth_util, "environment_cli_profile_disabled", "true")
    monkeypatch.setattr(auth_util, "environment_credentials_file", str(tmp_path / "absent"))
    monkeypatch.setattr(auth_util, "environment_ecs_metadata_disabled", "true")


def test_default_chain_exchanges_the_rrsa_token_once(monkeypatch, tmp_path):
    rrsa_environment(monkeypatch, tmp_path)
    exchanges = []

    def sts(request, runtime):
        exchanges.append(request.query)
        return SimpleNamespace(
            status_code=200,
            body=json.dumps(
                {
                    "Credentials": {
                        "AccessKeyId": "STS.rrsa",
                        "AccessKeySecret": "rrsa-secret",
                        "SecurityToken": "rrsa-token",
                        "Expiration": "2999-01-01T00:00:00Z",
                    }
                }
            ).encode(),
        )

    monkeypatch.setattr(oidc.TeaCore, "do_action", staticmethod(sts))
    chain = DefaultChainCredentials()
    assert chain.get() == chain.get() == Credentials("STS.rrsa", "rrsa-secret", "rrsa-token")
    assert len(exchanges) == 1  # cached until near expiry
    assert exchanges[0]["Action"] == "AssumeRoleWithOIDC" and exchanges[0]["OIDCToken"] == "oidc-token"


def test_failed_rrsa_exchange_is_unavailable(monkeypatch, tmp_path):
    rrsa_environment(monkeypatch, tmp_path)
    monkeypatch.setattr(
        oidc.TeaCore,
        "do_action",
        staticmethod(
            lambda request, runtime: SimpleNamespace(status_code=403, body=b'{"Code": "AuthenticationFail.OIDCToken"}')
        ),
    )
    with pytest.raises(CredentialsUnavailable, match="oidc_role_arn"):
        DefaultChainCredentials().get()


def test_empty_chain_is_unavailable():
    class Empty:
        def get_credential(self):
            from alibabacloud_credentials.exceptions import CredentialException

            raise CredentialException("unable to load credentials from any of the providers in the chain")

    with pytest.raises(CredentialsUnavailable, match="unable to load credentials"):
        DefaultChainCredentials(Empty()).get()
