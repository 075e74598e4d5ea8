"""The egress policy: where the service's outbound connections may go.

Every connection whose destination a client chooses (``http_request`` jobs, completion webhooks, and any
later one) is checked here, so that a token holder cannot make the service reach inside its own network
(server-side request forgery). Destinations the operator configures (the database, the SMTP server, the
OTLP collector) are not: they are trusted configuration.

By default an address is refused when it is loopback, private (RFC 1918, fc00::/7), link-local
(169.254/16, fe80::/10: cloud metadata endpoints live there), shared (carrier-grade NAT, 100.64/10),
multicast, unspecified or otherwise reserved, including the IPv6 forms that carry such an IPv4 address
(IPv4-mapped ``::ffff:a.b.c.d``, IPv4-compatible ``::a.b.c.d``, NAT64 ``64:ff9b::/96`` and 6to4
``2002::/16``). ``EGRESS_ALLOW_NETWORKS`` opens ranges on purpose (an internal webhook receiver); inside
them the service's own ports (``EGRESS_DENY_PORTS``) stay closed.

The check runs on the address actually connected to: ``egress_connector`` resolves a host name once,
drops the refused addresses and connects only to the ones left (no window for DNS rebinding), and
``check_url`` refuses hosts written as addresses, in any form the C library accepts (``2130706433``,
``0x7f000001``, ``127.1``, ``[::1]``, and ``localhost``), before each request and each redirect hop.

Errors:

    Exception
    └── EgressRefused     the destination is not allowed; retrying cannot help. The message says why,
                          without connecting anywhere: it never tells whether anything listens there.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

from shared.settings import Settings, setting

__all__ = [
    "DEFAULT_DENY_PORTS",
    "DEFAULT_POLICY",
    "EgressPolicy",
    "EgressRefused",
    "EgressResolver",
    "address_kind",
    "check_url",
    "egress_connector",
    "host_address",
]

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

# The service's own default ports: api gRPC and REST, executor and scheduler metrics, PostgreSQL and
# PgBouncer (tests/test_egress.py checks them against the services' settings).
DEFAULT_DENY_PORTS = frozenset({50051, 8000, 8001, 8002, 5432, 6432})
SCHEMES = ("http", "https")

_REFUSED: tuple[tuple[IPNetwork, str], ...] = tuple(
    (ip_network(network), kind)
    for network, kind in (
        ("0.0.0.0/8", "unspecified"),
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "shared (carrier-grade NAT)"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "reserved"),
        ("192.0.2.0/24", "reserved"),
        ("192.88.99.0/24", "reserved"),
        ("192.168.0.0/16", "private"),
        ("198.18.0.0/15", "reserved"),
        ("198.51.100.0/24", "reserved"),
        ("203.0.113.0/24", "reserved"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),  # 255.255.255.255 (broadcast) included
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("fc00::/7", "private"),
        ("fec0::/10", "private"),  # site-local, deprecated
        ("fe80::/10", "link-local"),
        ("ff00::/8", "multicast"),
        ("2001::/23", "reserved"),  # IETF protocol assignments, Teredo included
        ("2001:db8::/32", "reserved"),
        ("3fff::/20", "reserved"),
    )
)
_IPV6_GLOBAL_UNICAST = IPv6Network("2000::/3")
_IPV4_COMPATIBLE = IPv6Network("::/96")
_NAT64 = IPv6Network("64:ff9b::/96")
_SIX_TO_FOUR = IPv6Network("2002::/16")


class EgressRefused(Exception):
    """The destination is not allowed by the egress policy; retrying cannot help."""


def _embedded_ipv4(address: IPv6Address) -> IPv4Address | None:
    """The IPv4 address an IPv6 address carries and would reach (mapped, compatible, NAT64, 6to4)."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _IPV4_COMPATIBLE or address in _NAT64:
        return IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def address_kind(address: IPAddress) -> str | None:
    """None for an address on the public internet; otherwise what it is (``"a loopback address"``,
    ``"an IPv6 form of a private address"``), for messages."""
    # :: and ::1 are themselves, not IPv4-compatible forms of 0.0.0.0 and 0.0.0.1.
    embedded = _embedded_ipv4(address) if isinstance(address, IPv6Address) and int(address) > 1 else None
    if embedded is not None:
        inner = address_kind(embedded)
        return None if inner is None else f"an IPv6 form of {inner}"
    # The version check matters: ``in`` compares the integers, and 0.0.0.1 is the integer of ::1.
    kind = next((kind for net, kind in _REFUSED if net.version == address.version and address in net), None)
    if kind is None and isinstance(address, IPv6Address) and address not in _IPV6_GLOBAL_UNICAST:
        kind = "reserved"
    return None if kind is None else f"{'an' if kind[0] in 'aeiou' else 'a'} {kind} address"


def host_address(host: str) -> IPAddress | None:
    """The address a URL's host names literally, or None for a name that DNS resolves.

    Every form the C library reads as an address counts (``2130706433``, ``0x7f000001``, ``0177.1``,
    ``127.1``), as do ``localhost`` and ``*.localhost`` (always loopback, RFC 6761). A host that looks
    like an address and is none (``1.2.3.4.5``, ``::g``) is EgressRefused: HTTP clients would hand it to
    the operating system as an address anyway.
    """
    name = host.strip("[]").lower()
    if name.rstrip(".") == "localhost" or name.rstrip(".").endswith(".localhost"):
        return IPv4Address("127.0.0.1")
    if ":" in name:
        try:
            return ip_address(name)
        except ValueError:
            raise EgressRefused(f"{host} is not a valid IPv6 address") from None
    try:
        return IPv4Address(socket.inet_aton(name.rstrip(".")))
    except (OSError, ValueError):  # ValueError: not ASCII, or a NUL
        if name.replace(".", "").isdigit():
            raise EgressRefused(f"{host} is not a valid IPv4 address") from None
        return None


def _network(raw: str) -> IPNetwork:
    try:
        return ip_network(raw)
    except ValueError as error:
        raise ValueError(f"is not a network in CIDR form (like 10.20.0.0/16 or fd00::/8): {error}") from None


def _port(raw: str) -> int:
    if not raw.isdigit() or not 1 <= int(raw) <= 65535:
        raise ValueError("is not a port (1-65535)")
    return int(raw)


@dataclass(frozen=True)
class EgressPolicy(Settings):
    """Which destinations outbound connections may reach; see the module docstring. The api's and the
    executor's settings carry one (their own listening ports closed too: ``closing``)."""

    allow_networks: tuple[IPNetwork, ...] = setting(
        "EGRESS_ALLOW_NETWORKS",
        (),
        "comma-separated CIDRs (10.20.0.0/16,fd00::/8) that http_request jobs and webhooks may reach, and a "
        "callback_url may name as an address, although they are internal; by default loopback, private, "
        "link-local, CGNAT, multicast and reserved addresses are refused (docs/security.md). The api and the "
        "executors need the same value",
        parse=_network,
    )
    deny_ports: frozenset[int] = setting(
        "EGRESS_DENY_PORTS",
        DEFAULT_DENY_PORTS,
        "ports refused even inside EGRESS_ALLOW_NETWORKS; the process's own listening ports (GRPC_PORT and "
        "HTTP_PORT, METRICS_PORT) are added",
        parse=_port,
    )

    def closing(self, *ports: int) -> EgressPolicy:
        """This policy with ``ports`` (a process's own listening ports; 0 is none) refused too."""
        return replace(self, deny_ports=self.deny_ports | {port for port in ports if port})

    def allows(self, address: IPAddress) -> bool:
        """Whether EGRESS_ALLOW_NETWORKS opens this address (or the IPv4 address it carries)."""
        candidates: list[IPAddress] = [address]
        if isinstance(address, IPv6Address):
            embedded = _embedded_ipv4(address)
            if embedded is not None:
                candidates.append(embedded)
        return any(
            candidate in network
            for network in self.allow_networks
            for candidate in candidates
            if candidate.version == network.version
        )

    def refusal(self, address: IPAddress, port: int) -> str | None:
        """Why a connection to ``address:port`` is refused, or None when it is allowed."""
        kind = address_kind(address)
        if kind is None:
            return None
        if not self.allows(address):
            return f"{address} is {kind}, which the egress policy refuses (EGRESS_ALLOW_NETWORKS opens ranges)"
        if port in self.deny_ports:
            return f"port {port} of {address} is one of the service's own ports (EGRESS_DENY_PORTS)"
        return None

    def check_host(self, host: str, port: int) -> None:
        """EgressRefused when ``host`` is written as an address the policy refuses; a name passes (it is
        checked when it resolves, see ``egress_connector``)."""
        address = host_address(host)
        if address is not None:
            reason = self.refusal(address, port)
            if reason is not None:
                raise EgressRefused(reason)


DEFAULT_POLICY = EgressPolicy()


def check_url(url: str | URL, policy: EgressPolicy) -> URL:
    """``url`` parsed as aiohttp parses it; EgressRefused unless it is an http(s) URL whose host, when
    written as an address, the policy allows. Call it before every request and every redirect hop, and
    request the URL it returns (one parse: no parser differential between the check and the client)."""
    try:
        parsed = URL(url)
        port = parsed.port
    except (TypeError, ValueError) as error:
        raise EgressRefused(f"not a valid URL: {error}") from None
    if parsed.scheme.lower() not in SCHEMES:
        raise EgressRefused(f"only http:// and https:// URLs are followed, not {parsed.scheme or 'relative'}:")
    if not parsed.raw_host or port is None:
        raise EgressRefused("the URL has no host")
    policy.check_host(parsed.raw_host, port)
    return parsed


class EgressResolver(AbstractResolver):
    """Resolves with aiohttp's default resolver and keeps only the addresses the policy allows; when
    none is left, EgressRefused. aiohttp connects to exactly the addresses returned, so the checked
    address is the one connected to."""

    def __init__(self, policy: EgressPolicy, resolver: AbstractResolver | None = None) -> None:
        self.policy = policy
        self._resolver = resolver or DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.policy.check_host(host, port)
        found = await self._resolver.resolve(host, port, family)
        allowed = [entry for entry in found if self.policy.refusal(ip_address(entry["host"]), port) is None]
        if not allowed:
            raise EgressRefused(
                f"{host} resolves only to addresses the egress policy refuses (internal ranges, or the "
                "service's own ports; EGRESS_ALLOW_NETWORKS opens ranges)"
            )
        return allowed

    async def close(self) -> None:
        await self._resolver.close()


def egress_connector(policy: EgressPolicy, **options: Any) -> aiohttp.TCPConnector:
    """A connector for one aiohttp session whose every connection obeys ``policy``. Hosts written as
    addresses skip resolvers in aiohttp: call ``check_url`` on every URL too."""
    return aiohttp.TCPConnector(resolver=EgressResolver(policy), **options)
