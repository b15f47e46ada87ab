"""A kubeconfig cluster's `proxy-url`, against the real apiserver through a CONNECT proxy on loopback: the
operator's loader (kube/config.py) honours it, and so does kubectl rtcrec where it falls back to that loader
(kubeconfig.py without the `kubernetes` package, as in this venv; tests/cluster/test_krew.py runs the other
path). An auth provider, which only the `kubernetes` package reads, is refused saying so."""

import asyncio
import importlib.util
from urllib.parse import urlsplit

import pytest
import yaml
from connect_proxy import ConnectProxy

from rtc_recording import kubeconfig
from rtc_recording.kube.client import Kube

pytestmark = pytest.mark.cluster


@pytest.fixture
def proxy():
    running = ConnectProxy()
    yield running
    running.close()


def edited(cluster, tmp_path, change) -> str:
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    change(config)
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_the_plugin_without_kubernetes_goes_through_proxy_url(cluster, tmp_path, proxy):
    assert importlib.util.find_spec("kubernetes") is None, "the test venv must not have it: Kopf would import it"
    path = edited(cluster, tmp_path, lambda c: c["clusters"][0]["cluster"].update({"proxy-url": proxy.url}))

    async def namespaces():
        async with Kube(kubeconfig.connection(path, None)) as kube:
            return (await kube.request("GET", "/api/v1/namespaces"))["items"]

    assert asyncio.run(namespaces())
    assert proxy.targets == [
        urlsplit(yaml.safe_load(cluster.kubeconfig.read_text())["clusters"][0]["cluster"]["server"]).netloc
    ]


def test_an_auth_provider_is_refused_naming_the_extra(cluster, tmp_path):
    oidc = {"auth-provider": {"name": "oidc", "config": {"id-token": "a.b.c", "idp-issuer-url": "https://idp"}}}
    path = edited(cluster, tmp_path, lambda c: c["users"][0].update({"user": oidc}))
    with pytest.raises(ValueError, match=r"'oidc' auth provider.*rtc-recording-operator\[kubectl\]"):
        kubeconfig.connection(path, None)


def test_a_socks5_proxy_is_refused_not_tried(cluster, tmp_path):
    """aiohttp speaks to http and https proxies only: a socks5 one would fail later, and less clearly."""
    path = edited(
        cluster, tmp_path, lambda c: c["clusters"][0]["cluster"].update({"proxy-url": "socks5://127.0.0.1:1"})
    )
    with pytest.raises(ValueError, match=r"proxy-url 'socks5://127.0.0.1:1': only http and https"):
        kubeconfig.connection(path, None)
