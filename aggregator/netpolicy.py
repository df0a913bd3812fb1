"""Which network addresses the fetcher may connect to (SSRF protection).

Owns the address policy only: classifying an IP as public or not, and the checks on a URL
that can be made without DNS (scheme, host, IP-literal hosts). The fetcher applies
`AddressPolicy.is_allowed` to every address DNS returns and to every redirect hop.
No network access happens here.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from urllib.parse import urlsplit

from yarl import URL

from aggregator.exceptions import BlockedAddressError, FetchError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

ALLOWED_SCHEMES = ("http", "https")
CGNAT = ipaddress.ip_network("100.64.0.0/10")  # RFC 6598 shared address space
NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052 well-known prefix, embeds IPv4
# Kinds refused even when private addresses are allowed: no feed server lives there.
ALWAYS_REFUSED = ("unspecified", "multicast")


def classify(ip: str | IPAddress) -> str | None:
    """Say why an address is not public.

    Args:
        ip: an IPv4/IPv6 address or its text (an IPv6 zone id like `%eth0` is accepted).

    Returns:
        None for a public (globally routable) address, else the kind: "unspecified",
        "loopback", "link-local", "multicast", "shared address space", "reserved",
        "private", "site-local" or "not global". IPv4 addresses embedded in IPv6
        (IPv4-mapped, 6to4, Teredo, NAT64) are judged by the embedded address too.

    Raises:
        ValueError: `ip` is not an IP address.
    """
    addr = ipaddress.ip_address(ip) if isinstance(ip, str) else ip
    if isinstance(addr, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(addr)
        if addr.ipv4_mapped is not None:
            return classify(addr.ipv4_mapped)
        for inner in embedded:
            kind = classify(inner)
            if kind is not None:
                return kind
        if embedded and addr in NAT64:
            return None  # NAT64 of a public IPv4: ipaddress calls the prefix reserved
    return _own_kind(addr)


def _embedded_ipv4(addr: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    found: list[ipaddress.IPv4Address] = []
    if addr.sixtofour is not None:
        found.append(addr.sixtofour)
    if addr.teredo is not None:
        found.extend(addr.teredo)
    if addr in NAT64:
        found.append(ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF))
    return found


def _own_kind(addr: IPAddress) -> str | None:
    checks: tuple[tuple[str, bool], ...] = (
        ("unspecified", addr.is_unspecified),
        ("loopback", addr.is_loopback),
        ("link-local", addr.is_link_local),
        ("multicast", addr.is_multicast),
        ("shared address space", isinstance(addr, ipaddress.IPv4Address) and addr in CGNAT),
        ("reserved", addr.is_reserved),
        ("site-local", isinstance(addr, ipaddress.IPv6Address) and addr.is_site_local),
        ("private", addr.is_private),
        ("not global", not addr.is_global),
    )
    for kind, hit in checks:
        if hit:
            return kind
    return None


class AddressPolicy:
    """Decides which IP addresses may be connected to.

    Public addresses are always allowed. Every other address is refused unless
    `allow_private` is true (then everything but unspecified and multicast addresses is
    allowed) or it lies inside one of `allowed_networks`.

    Args:
        allow_private: allow private, loopback, link-local, ... addresses.
        allowed_networks: CIDRs ("192.168.1.0/24", "127.0.0.1/32") allowed regardless.

    Raises:
        ValueError: a network is not a valid CIDR.
    """

    def __init__(self, allow_private: bool = False, allowed_networks: Sequence[str] = ()) -> None:
        self.allow_private = allow_private
        self.allowed_networks: tuple[IPNetwork, ...] = tuple(
            ipaddress.ip_network(n, strict=False) for n in allowed_networks
        )

    def __repr__(self) -> str:
        nets = [str(n) for n in self.allowed_networks]
        return f"AddressPolicy(allow_private={self.allow_private}, allowed_networks={nets})"

    def refusal(self, ip: str | IPAddress) -> str | None:
        """Return why `ip` is refused (its kind, e.g. "loopback"), or None if allowed.

        Text that is not an IP address is refused as "invalid address".
        """
        try:
            addr = ipaddress.ip_address(ip) if isinstance(ip, str) else ip
        except ValueError:
            return "invalid address"
        if self._in_allowed_network(addr):
            return None
        kind = classify(addr)
        if kind is None or (self.allow_private and kind not in ALWAYS_REFUSED):
            return None
        return kind

    def is_allowed(self, ip: str | IPAddress) -> bool:
        """True if the fetcher may connect to `ip`."""
        return self.refusal(ip) is None

    def _in_allowed_network(self, addr: IPAddress) -> bool:
        candidates: list[IPAddress] = [addr]
        if isinstance(addr, ipaddress.IPv6Address):
            if addr.scope_id:
                candidates.append(ipaddress.IPv6Address(str(addr).split("%", 1)[0]))
            if addr.ipv4_mapped is not None:
                candidates.append(addr.ipv4_mapped)
        return any(
            c.version == net.version and c in net
            for c in candidates
            for net in self.allowed_networks
        )

    def check_ip(self, ip: str, url: str) -> None:
        """Raise BlockedAddressError if `ip` (reached for `url`) is refused."""
        kind = self.refusal(ip)
        if kind is not None:
            raise BlockedAddressError(url, f"fetch: refused address {ip} ({kind})")

    def check_url(self, url: str) -> str:
        """Check what can be checked about `url` before any DNS lookup or connection.

        Args:
            url: an absolute URL.

        Returns:
            The URL's host (lower-case, without brackets).

        Raises:
            FetchError: the scheme is not http/https, the URL has no host or is malformed.
            BlockedAddressError: the host is an IP literal the policy refuses.
        """
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - validates the port
        except ValueError as exc:
            raise FetchError(url, f"fetch: invalid URL ({exc})") from exc
        scheme = parts.scheme.lower()
        if scheme not in ALLOWED_SCHEMES:
            shown = scheme or "none"
            raise FetchError(url, f"fetch: unsupported URL scheme {shown!r} (http/https only)")
        if not parts.hostname:
            raise FetchError(url, "fetch: URL has no host")
        # the host as the HTTP client will connect to it: yarl maps a Unicode host to
        # IDNA after NFKC, so "127。0。0。1" or circled digits become an IP literal that
        # the client connects to without a DNS lookup (and so without the resolver's check)
        try:
            host = (URL(url).raw_host or "").rstrip(".")
        except ValueError as exc:
            raise FetchError(url, f"fetch: invalid URL ({exc})") from exc
        if not host:
            raise FetchError(url, "fetch: URL has no host")
        if is_ip_literal(host):
            self.check_ip(host, url)
        return host


def is_ip_literal(host: str) -> bool:
    """True if `host` is an IPv4 or IPv6 address (an IPv6 zone id is allowed)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
