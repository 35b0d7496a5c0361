"""Where a Subscription may send notifications: the endpoint rules against server-side request
forgery (SSRF).

A Subscription makes the server POST to a URL of the client's choosing, from inside the
deployment's network. Without rules, any client could make it reach what only the server can:
a database's HTTP port on loopback, a cloud's metadata service (169.254.169.254), an admin page
on the private network. So an endpoint must be:
- https, to a host whose every address is public (not loopback, private, link-local, shared,
  multicast, unspecified or reserved; an IPv4 address written as IPv6, mapped or 6to4, is
  judged as IPv4);
- or on an origin the operator allows (FHIRSRV_SUBSCRIPTION_ALLOWED_ENDPOINTS, e.g. a
  receiver on the deployment's own network, or a test's on loopback), in http or https.
A name is resolved when the Subscription is written (a refusal says so at once) and again at
every delivery, and the notification is sent to an address that delivery's check accepted,
never resolved a second time: a name whose DNS answer changes to 127.0.0.1 after the first
check (DNS rebinding) is refused at the next delivery, not followed. Redirects are never
followed (sync/sender.py): a 3xx from the receiver is a failed delivery.

The reasons given are fixed words about the endpoint the client wrote itself; no header value
of the Subscription is ever part of one.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from fhirsrv.settings import origin

# (host, port) -> the addresses it resolves to, in order. Raises OSError when it does not.
Resolver = Callable[[str, int], list[str]]
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class EndpointRefused(ValueError):
    """The endpoint may not be used; the message says why, in words fit for the client."""


@dataclass(frozen=True)
class Target:
    """An endpoint that passed the rules, with the addresses a delivery may connect to."""

    scheme: str
    host: str  # the name (or literal address) the client wrote: the Host header and TLS name
    port: int
    path: str  # path and query, the request's target
    addresses: tuple[str, ...]
    allowed: bool  # on an origin FHIRSRV_SUBSCRIPTION_ALLOWED_ENDPOINTS lists


def system_resolver(host: str, port: int) -> list[str]:
    """The system's resolver (getaddrinfo), each address once, in its order."""
    found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in found))


def check(
    url: str, allowed: frozenset[str], resolve: Resolver = system_resolver, *, resolve_allowed: bool = True
) -> Target:
    """The endpoint `url` as a Target, or EndpointRefused saying why not.

    `allowed`: settings.allowed_origins(FHIRSRV_SUBSCRIPTION_ALLOWED_ENDPOINTS). An allowed
    origin's name is resolved only when `resolve_allowed` (a delivery connects to it; writing
    the Subscription does not need to: the operator vouched for that receiver)."""
    if not isinstance(url, str) or not url.strip():
        raise EndpointRefused("the endpoint is empty")
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise EndpointRefused("the endpoint is not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise EndpointRefused("a rest-hook endpoint is an https URL")
    if parts.username is not None or parts.password is not None:
        raise EndpointRefused("the endpoint may not hold credentials (send them in channel.header)")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise EndpointRefused("the endpoint names no host")
    port = port or (443 if scheme == "https" else 80)
    on_allowed = origin(scheme, host, port) in allowed
    if scheme != "https" and not on_allowed:
        raise EndpointRefused(
            "the endpoint must be https (plain http only on an origin the server's operator allows, "
            "FHIRSRV_SUBSCRIPTION_ALLOWED_ENDPOINTS)"
        )
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    literal = _literal(host)
    if literal is not None:
        addresses = [str(literal)]
    elif on_allowed and not resolve_allowed:
        addresses = []
    else:
        try:
            addresses = resolve(host, port)
        except (OSError, UnicodeError):
            raise EndpointRefused(f"the endpoint's host {host} cannot be resolved") from None
        if not addresses:
            raise EndpointRefused(f"the endpoint's host {host} cannot be resolved")
    if not on_allowed:
        for address in addresses:
            reason = refused_address(address)
            if reason is not None:
                named = "" if literal is not None else f" (its host {host} resolves to it)"
                raise EndpointRefused(
                    f"the endpoint reaches {reason}{named}: not allowed for a Subscription unless the "
                    "server's operator allows its origin (FHIRSRV_SUBSCRIPTION_ALLOWED_ENDPOINTS)"
                )
    return Target(scheme, host, port, path, tuple(addresses), on_allowed)


def refused_address(text: str) -> str | None:
    """Why a delivery may not connect to this address (None: a public address)."""
    try:
        address: Address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return "an address that is not one"
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    elif isinstance(address, ipaddress.IPv6Address) and address.sixtofour is not None:
        # 6to4 (2002::/16) carries an IPv4 address its relay reaches: 2002:a9fe:a9fe:: is
        # 169.254.169.254 for a host that routes 6to4, and the standard library finds it global.
        address = address.sixtofour
    if address.is_loopback:
        return f"a loopback address ({address})"
    if address.is_unspecified:
        return f"the unspecified address ({address})"
    if address.is_link_local:
        return f"a link-local address ({address})"
    if address.is_multicast:
        return f"a multicast address ({address})"
    if address.is_reserved:
        return f"a reserved address ({address})"
    if address.is_private:
        return f"a private address ({address})"
    if not address.is_global:
        return f"a reserved address ({address})"
    return None


def _literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None
