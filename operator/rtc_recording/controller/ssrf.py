"""Where the operator may send a user's callbacks: public addresses only, checked at connect time.

spec.notify.url is the user's to choose, and the relay POSTs to it from inside the cluster.
So the check is made on the addresses the connection actually uses, inside the connector
(`GuardedConnector`): a name is resolved, every address it resolves to is checked, and only
the checked addresses are connected to, so a name that resolves differently the second time
(DNS rebinding) gains nothing. Refused: loopback, link-local (169.254/16: cloud metadata),
private (10/8, 172.16/12, 192.168/16, fc00::/7), CGNAT 100.64/10 (the vendor's metadata
address 100.100.100.200 is in it), multicast, reserved and unspecified addresses, IPv4 inside
IPv6 (::ffff:a.b.c.d, 64:ff9b::/96) by the IPv4 address, and `denied_ranges` (the cluster's pod
and service ranges where they are not private).

`allowed_hosts` (RTCREC_RELAY_ALLOWED_HOSTS) names hosts (`hooks.example.com`, `*.example.com`)
and address ranges (`10.20.0.0/16`, `127.0.0.1`) that may be relayed to although internal:
whoever set the list chose them. With `only_allowed` (RTCREC_RELAY_ONLY_ALLOWED_HOSTS) nothing
else is relayed to, public or not. Denied ranges and the clouds' metadata addresses (`METADATA`)
are refused even then: an allowed name is trusted for its owner's intent, not for whatever a DNS
answer for it says.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

import aiohttp
from yarl import URL

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
CGNAT = ipaddress.ip_network("100.64.0.0/10")
NAT64 = ipaddress.ip_network("64:ff9b::/96")
# Never relayed to, allow-list or not: link-local (AWS, GCP, Azure, Alibaba Cloud's ECS 169.254.169.254,
# fe80::/10), AWS's IPv6 metadata fd00:ec2::254, and Alibaba Cloud's own metadata service.
METADATA = tuple(
    ipaddress.ip_network(n) for n in ("169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128", "100.100.100.200/32")
)


class Refused(aiohttp.ClientConnectionError):
    """The relay will not connect there; the text says why, in terms the user may read."""


class Guard:
    def __init__(
        self, allowed_hosts: Iterable[str] = (), denied_ranges: Iterable[str] = (), only_allowed: bool = False
    ):
        self.only_allowed = only_allowed
        self.names: list[str] = []
        self.ranges: list[Network] = []
        for entry in (e.strip().lower().rstrip(".") for e in allowed_hosts):
            if not entry:
                continue
            try:
                self.ranges.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                self.names.append(entry)
        self.denied = [ipaddress.ip_network(r.strip(), strict=False) for r in denied_ranges if r.strip()]

    def named(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        return any(host == n or (n.startswith("*.") and host.endswith(n[1:])) for n in self.names)

    def check_url(self, url: str) -> URL:
        """The URL to connect to; raises Refused for what no address check could save."""
        try:
            parsed = URL(url)
        except (ValueError, TypeError):
            raise Refused("not a URL") from None
        if parsed.scheme not in ("http", "https") or not parsed.host:  # yarl lower-cases the scheme
            raise Refused("only http(s) URLs with a host are relayed to")
        if parsed.user is not None or parsed.password is not None:
            raise Refused("URLs with user information are not relayed to")
        return parsed

    def address_refused(self, host: str, address: str) -> str | None:
        """Why the relay will not connect to `address` (resolved from `host`), or None."""
        try:
            ip: Address = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return f"{address} is not an IP address"
        inner = _embedded_ipv4(ip)
        candidates = [c for c in (ip, inner) if c is not None]
        for candidate in candidates:
            if any(candidate in r for r in self.denied):
                return f"{host} resolves to a denied cluster address"
            if any(candidate in r for r in METADATA if candidate.version == r.version):
                return f"{host} resolves to a cloud metadata address"
        if self.named(host) or any(c in r for c in candidates for r in self.ranges if c.version == r.version):
            return None
        if self.only_allowed:
            return f"{host} is not among the hosts this operator relays to (RTCREC_RELAY_ALLOWED_HOSTS)"
        for candidate in [inner] if inner else [ip]:  # an IPv4 inside IPv6 is judged as that IPv4
            if not _public(candidate):
                return f"{host} resolves to an internal address ({_kind(candidate)})"
        return None

    def connector(self, **kwargs: Any) -> GuardedConnector:
        return GuardedConnector(self, **kwargs)

    def session(self, timeout: float) -> aiohttp.ClientSession:
        """A session that connects only where the guard allows, never through a proxy."""
        return aiohttp.ClientSession(
            connector=self.connector(), trust_env=False, timeout=aiohttp.ClientTimeout(total=timeout)
        )


class GuardedConnector(aiohttp.TCPConnector):
    """Checks every address a host resolves to, and connects only to the checked ones."""

    def __init__(self, guard: Guard, **kwargs: Any):
        kwargs.setdefault("use_dns_cache", False)
        super().__init__(**kwargs)
        self._guard = guard

    async def _resolve_host(self, host: str, port: int, traces: Any = None) -> list[Any]:
        results = await super()._resolve_host(host, port, traces=traces)
        reasons = [self._guard.address_refused(host, r["host"]) for r in results]
        allowed = [r for r, why in zip(results, reasons, strict=True) if why is None]
        if not allowed or len(allowed) != len(results):
            # One internal address among public ones is refused too: which one is used is not ours to pick.
            raise Refused(next(why for why in reasons if why) if reasons else f"{host} does not resolve")
        return allowed


def _embedded_ipv4(ip: Address) -> ipaddress.IPv4Address | None:
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped:
            return ip.ipv4_mapped
        if ip in NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if ip.sixtofour:
            return ip.sixtofour
    return None


def _public(ip: Address) -> bool:
    if isinstance(ip, ipaddress.IPv4Address) and ip in CGNAT:
        return False
    return ip.is_global and not ip.is_multicast and not ip.is_reserved


def _kind(ip: Address) -> str:
    for kind in ("loopback", "link_local", "multicast", "private", "reserved", "unspecified"):
        if getattr(ip, f"is_{kind}"):
            return kind.replace("_", "-")
    return "shared (CGNAT)" if isinstance(ip, ipaddress.IPv4Address) and ip in CGNAT else "not global"
