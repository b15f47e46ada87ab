"""The relay's connector: internal addresses refused where the connection is made, over real sockets."""

import asyncio
import socket

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver

from rtc_recording.controller.ssrf import Guard, Refused


@pytest.mark.parametrize(
    "address, refused",
    [
        ("8.8.8.8", False),
        ("2606:4700:4700::1111", False),
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("169.254.169.254", True),
        ("fe80::1", True),  # link-local: cloud metadata
        ("100.100.100.200", True),
        ("100.64.0.1", True),  # CGNAT: the vendor's metadata address
        ("10.0.0.1", True),
        ("172.16.5.4", True),
        ("192.168.1.1", True),
        ("fd00::1", True),
        ("224.0.0.1", True),
        ("ff02::1", True),
        ("0.0.0.0", True),
        ("240.0.0.1", True),
        ("::ffff:127.0.0.1", True),
        ("::ffff:10.0.0.1", True),
        ("64:ff9b::a9fe:a9fe", True),  # IPv4 inside IPv6
        ("::ffff:8.8.8.8", False),
    ],
)
def test_internal_addresses_are_refused(address, refused):
    assert (Guard().address_refused("h", address) is not None) is refused


def test_denied_ranges_and_the_allow_list():
    denied = Guard(denied_ranges=["8.8.0.0/16"])
    assert denied.address_refused("h", "8.8.8.8") and denied.address_refused("h", "::ffff:8.8.8.8")
    hosts = ["hooks.example.com", "*.corp.example", "127.0.0.1", "10.20.0.0/16"]
    allow = Guard(allowed_hosts=hosts)
    assert allow.address_refused("hooks.example.com", "10.9.9.9") is None  # named by the admin: may be internal
    assert allow.address_refused("a.corp.example", "10.9.9.9") is None
    assert allow.address_refused("x", "10.20.1.1") is None and allow.address_refused("x", "127.0.0.1") is None
    assert allow.address_refused("x", "127.0.0.2") and allow.address_refused("corp.example", "10.9.9.9")
    assert allow.address_refused("other.example.com", "8.8.8.8") is None  # public: allowed
    only = Guard(allowed_hosts=hosts, only_allowed=True)
    assert only.address_refused("other.example.com", "8.8.8.8")  # exclusive: public but not listed
    assert only.address_refused("a.corp.example", "8.8.8.8") is None
    assert Guard(allowed_hosts=["127.0.0.1"], denied_ranges=["127.0.0.0/8"]).address_refused("x", "127.0.0.1")


@pytest.mark.parametrize(
    "address",
    ["169.254.169.254", "169.254.0.1", "fe80::a9fe:a9fe", "fd00:ec2::254", "100.100.100.200", "::ffff:169.254.169.254"],
)
@pytest.mark.parametrize("only_allowed", [False, True])
def test_an_allowed_name_or_range_never_reaches_a_metadata_address(address, only_allowed):
    """A name in the allow-list was trusted for any address it resolved to: one that resolves to
    the metadata service (DNS the name's owner or an attacker controls) reached it."""
    allow = Guard(allowed_hosts=["hooks.example.com", "169.254.0.0/16", "100.64.0.0/10"], only_allowed=only_allowed)
    assert (
        allow.address_refused("hooks.example.com", address) == "hooks.example.com resolves to a cloud metadata address"
    )
    assert allow.address_refused("x", address)


@pytest.mark.parametrize(
    "url, ok",
    [
        ("https://hooks.example.com/x", True),
        ("HTTPS://hooks.example.com/x", True),
        ("Http://h/", True),
        ("https://user:pw@hooks.example.com/", False),
        ("https://user@hooks.example.com/", False),
        ("ftp://hooks.example.com/", False),
        ("file:///etc/passwd", False),
        ("https://", False),
        ("", False),
    ],
)
def test_urls(url, ok):
    if ok:
        Guard().check_url(url)
    else:
        with pytest.raises(Refused):
            Guard().check_url(url)


class Rebinding(AbstractResolver):
    """Answers `first` once and `then` afterwards: DNS rebinding."""

    def __init__(self, first: str, then: str):
        self.answers = [first]
        self.then = then

    async def resolve(self, host, port=0, family=socket.AF_INET):
        address = self.answers.pop() if self.answers else self.then
        return [{"hostname": host, "host": address, "port": port, "family": socket.AF_INET, "proto": 0, "flags": 0}]

    async def close(self):
        pass


@pytest.fixture
async def loopback_server():
    hits: list[str] = []

    async def hook(request: web.Request) -> web.Response:
        hits.append(request.host)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    yield port, hits
    await runner.cleanup()


async def post(guard: Guard, url: str, resolver: AbstractResolver | None = None) -> int:
    kwargs = {"resolver": resolver} if resolver else {}
    async with aiohttp.ClientSession(connector=guard.connector(**kwargs), trust_env=False) as session:
        async with session.post(url, json={}, allow_redirects=False) as resp:
            return resp.status


async def test_the_connector_refuses_loopback_unless_allowed(loopback_server):
    port, hits = loopback_server
    for url in (f"http://127.0.0.1:{port}/hook", f"http://localhost:{port}/hook", f"HTTP://127.0.0.1:{port}/hook"):
        with pytest.raises(Refused):
            await post(Guard(), url)
    with pytest.raises(aiohttp.ClientError):  # legacy numeric forms never reach an address check
        await post(Guard(), f"http://2130706433:{port}/hook")
    assert hits == []
    assert await post(Guard(allowed_hosts=["127.0.0.1"]), f"http://127.0.0.1:{port}/hook") == 200
    assert len(hits) == 1


async def test_dns_rebinding_gains_nothing(loopback_server):
    port, hits = loopback_server
    guard = Guard()  # the name's first answer is public, its second is not
    resolver = Rebinding("8.8.8.8", "127.0.0.1")
    await resolver.resolve("evil.example")  # the check's lookup (were it made apart from the connection)
    with pytest.raises(Refused):
        await post(guard, f"http://evil.example:{port}/hook", resolver)  # the connection's own lookup
    with pytest.raises(Refused):
        await post(Guard(), f"http://evil.example:{port}/hook", Rebinding("127.0.0.1", "127.0.0.1"))
    assert hits == []
    await asyncio.sleep(0)
