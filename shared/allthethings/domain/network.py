"""Which network addresses a fetch may reach, and the one spelling of a numeric host.

A user's URL must never reach our own network: loopback, private ranges, link-local
(169.254.169.254 is the cloud's metadata service), CGNAT, multicast, reserved and
documentation ranges, IPv6 unique-local and link-local, and IPv6 forms that carry one of
those IPv4 addresses inside them (IPv4-mapped, IPv4-compatible, 6to4, NAT64).

Numeric hosts have many spellings (`2130706433`, `0x7f.1`, `0177.0.0.1`, `127.1` are all
127.0.0.1 to the C resolver); `canonical_host` turns them into the one dotted form so the
duplicate check and the address check both see what the network will see.
"""

from __future__ import annotations

import ipaddress

_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_DIGITS = {8: "01234567", 10: "0123456789", 16: "0123456789abcdef"}


def ipv4_spelling(host: str) -> ipaddress.IPv4Address | None:
    """The address of a host written the way inet_aton reads it (1 to 4 parts, each decimal,
    0-prefixed octal or 0x-prefixed hex; the last part fills the remaining bytes), else None."""
    parts = host.split(".") if host else []
    if not 1 <= len(parts) <= 4:
        return None
    values = []
    for part in parts:
        base, digits = (16, part[2:]) if part[:2].lower() == "0x" else (8, part[1:]) if part[:1] == "0" else (10, part)
        if not digits and base == 8:
            base, digits = 10, "0"  # a plain 0
        if not digits or any(c not in _DIGITS[base] for c in digits.lower()):
            return None
        values.append(int(digits, base))
    *leading, last = values
    if any(v > 255 for v in leading) or last >= 256 ** (4 - len(leading)):
        return None
    number = last
    for i, v in enumerate(leading):
        number += v << (8 * (3 - i))
    return ipaddress.IPv4Address(number)


def literal_address(host: str) -> IPAddress | None:
    """The address a host names without any lookup (an IP in any spelling), else None. Only an
    IPv6 literal has a zone (`fe80::1%eth0`); a `%` anywhere else is not a separator."""
    bare = host.strip("[]")
    if ":" in bare:
        bare = bare.split("%", 1)[0]
    try:
        return ipaddress.ip_address(bare)
    except ValueError:
        return ipv4_spelling(bare) if all(c.isalnum() or c == "." for c in bare) else None


def canonical_host(host: str) -> str:
    """A numeric host in its one standard spelling (an IPv4-mapped IPv6 address in its IPv4 form,
    where it delivers); any other host unchanged."""
    address = literal_address(host)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return host if address is None else address.compressed


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries and would deliver to, if any."""
    if address.ipv4_mapped:
        return address.ipv4_mapped
    if address.sixtofour:
        return address.sixtofour
    if any(address in net for net in _NAT64) or address in _IPV4_COMPATIBLE:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_public_address(address: str | IPAddress) -> bool:
    """Whether the address is on the public internet (and so safe to fetch from)."""
    ip = address if not isinstance(address, str) else ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped:
            return is_public_address(ip.ipv4_mapped)
        if embedded_ipv4(ip) is not None or ip.teredo:
            return False  # tunnels and translators: where they deliver is not ours to vet
    return ip.is_global and not ip.is_multicast and not ip.is_reserved
