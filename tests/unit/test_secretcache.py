"""Secrets by consent: only Secrets labelled for their use, refused in words that tell nothing more."""

import base64

import pytest

from rtc_recording.api.names import segment
from rtc_recording.cloud.credentials import CredentialsUnavailable
from rtc_recording.cloud.secrets import SecretCache, SecretUnavailable
from rtc_recording.kube.errors import ApiError, NotFound


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def secret(name, usage=None, **data):
    labels = {"rtc.recording.io/usage": usage} if usage else {}
    return {
        "metadata": {"namespace": "ns", "name": name, "labels": labels},
        "data": {k: b64(v) for k, v in data.items()},
    }


class FakeKube:
    def __init__(self, *secrets):
        self.secrets = {s["metadata"]["name"]: s for s in secrets}

    async def get_secret(self, namespace, name):
        if name not in self.secrets:
            raise NotFound(name)
        return self.secrets[name]


def recording(name, key):
    return {
        "metadata": {"namespace": "ns", "name": "rec"},
        "spec": {"notify": {"url": "https://h", "authKeySecretRef": {"name": name, "key": key}}},
    }


async def test_only_secrets_that_opted_in_are_used():
    cache = SecretCache(
        FakeKube(
            secret("aliyun", "credentials", accessKeyId="id", accessKeySecret="s"),
            secret("db", password="hunter2hunter2hunter2"),
            secret("hook", "notify-key", key="userKey0123456789abc"),
            secret("as-credentials", "credentials", key="userKey0123456789abc"),
        )
    )
    assert base64.b64decode((await cache.credentials("ns", "aliyun"))["accessKeyId"]) == b"id"
    assert await cache.notify_key(recording("hook", "key")) == "userKey0123456789abc"

    refusals = {}
    for name in ("db", "missing", "hook"):
        with pytest.raises(SecretUnavailable) as refused:
            await cache.credentials("ns", name)
        refusals[name] = str(refused.value).replace(repr(name), "NAME")
    # Missing, not labelled, labelled for another use: the same words, and no key or value named.
    assert len(set(refusals.values())) == 1
    assert "rtc.recording.io/usage=credentials" in refusals["db"] and "password" not in refusals["db"]
    for name in ("db", "missing", "as-credentials"):
        with pytest.raises(SecretUnavailable) as refused:
            await cache.notify_key(recording(name, "password"))
        assert "hunter2" not in str(refused.value) and "notify-key" in str(refused.value)


@pytest.mark.parametrize("value", ["short", "has spaces in it 1234", "x" * 65, "ümlautsümlautsümlauts"])
async def test_a_notify_key_is_checked_and_never_shown(value):
    cache = SecretCache(FakeKube(secret("hook", "notify-key", key=value)))
    with pytest.raises(CredentialsUnavailable) as refused:
        await cache.notify_key(recording("hook", "key"))
    assert value not in str(refused.value) and "16 to 64 letters and digits" in str(refused.value)


async def test_a_missing_key_of_a_consenting_secret_is_named():
    cache = SecretCache(FakeKube(secret("hook", "notify-key", other="userKey0123456789abc")))
    with pytest.raises(CredentialsUnavailable, match="has no key 'key'"):
        await cache.notify_key(recording("hook", "key"))


async def test_a_secret_the_operators_rbac_forbids_is_a_reason_in_status_not_an_exception():
    class Forbidden(FakeKube):
        async def get_secret(self, namespace, name):
            raise ApiError(403, "secrets is forbidden")

    with pytest.raises(SecretUnavailable, match="may not read Secrets in namespace 'platform'.*RBAC"):
        await SecretCache(Forbidden()).consented("platform", "keys", "spec.credentialsSecretRef", "credentials")


@pytest.mark.parametrize("name", [".", ".."])
async def test_a_dot_name_is_refused_without_a_request(name):
    """`..` would make the Secret's path the Namespace's: a forged name must not read it."""

    class PathKube(FakeKube):
        async def get_secret(self, namespace, name):
            segment(namespace), segment(name)  # the path as kube/client.py builds it
            return await super().get_secret(namespace, name)

    kube = PathKube(secret(name, usage="credentials", accessKeyId="AK", accessKeySecret="s"))
    with pytest.raises(SecretUnavailable):
        await SecretCache(kube).credentials("ns", name)
