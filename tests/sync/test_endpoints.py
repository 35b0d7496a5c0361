"""The endpoint rules of rest-hook Subscriptions (SSRF): https to public addresses only, unless
the operator allows an origin; names are judged by every address they resolve to.

The resolver is a table here (a test has no DNS of its own); the real one, getaddrinfo, is
what `localhost` goes through in tests/sync/test_subscriptions.py.
"""

from __future__ import annotations

import pytest

from fhirsrv.settings import Settings, SettingsError, allowed_origins
from fhirsrv.sync.endpoints import EndpointRefused, check, refused_address

PUBLIC = "93.184.216.34"
DNS = {
    "hooks.example.org": [PUBLIC],
    "rebound.example.org": ["127.0.0.1"],
    "inside.example.org": [PUBLIC, "10.0.0.7"],  # one private answer among public ones is enough
    "metadata.example.org": ["169.254.169.254"],
    "six.example.org": ["2606:2800:220:1:248:1893:25c8:1946"],
    "six-local.example.org": ["::1"],
    "mapped.example.org": ["::ffff:192.168.1.1"],
}


def resolve(host: str, port: int) -> list[str]:
    if host not in DNS:
        raise OSError("no such name")
    return DNS[host]


def refusal(url: str, allowed: str = "") -> str:
    with pytest.raises(EndpointRefused) as caught:
        check(url, allowed_origins(allowed), resolve)
    return str(caught.value)


def test_an_https_endpoint_on_public_addresses_is_accepted() -> None:
    target = check("https://hooks.example.org/fhir/notify?tenant=3", frozenset(), resolve)
    assert (target.scheme, target.host, target.port, target.path) == (
        "https",
        "hooks.example.org",
        443,
        "/fhir/notify?tenant=3",
    )
    assert target.addresses == (PUBLIC,) and not target.allowed
    assert check(f"https://{PUBLIC}:8443/", frozenset(), resolve).addresses == (PUBLIC,)
    assert check("https://six.example.org/", frozenset(), resolve).addresses == (DNS["six.example.org"][0],)


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("https://127.0.0.1/hook", "loopback address (127.0.0.1)"),
        ("https://127.1.2.3:9000/hook", "loopback"),
        ("https://[::1]/hook", "loopback address (::1)"),
        ("https://[::ffff:127.0.0.1]/hook", "loopback address (127.0.0.1)"),
        ("https://[2002:7f00:1::1]/hook", "loopback address (127.0.0.1)"),  # 6to4
        ("https://[2002:a9fe:a9fe::]/hook", "link-local address (169.254.169.254)"),
        ("https://[2002:a00:1::1]/hook", "private address (10.0.0.1)"),
        ("https://10.1.2.3/hook", "private address (10.1.2.3)"),
        ("https://172.16.0.1/hook", "private"),
        ("https://192.168.0.10/hook", "private"),
        ("https://[fd00::1]/hook", "private"),
        ("https://169.254.169.254/latest/meta-data", "link-local address (169.254.169.254)"),
        ("https://[fe80::1]/hook", "link-local"),
        ("https://0.0.0.0/hook", "unspecified"),
        ("https://224.0.0.1/hook", "multicast"),
        ("https://100.64.0.1/hook", "reserved"),  # carrier-grade NAT: not global
        ("https://240.0.0.1/hook", "reserved"),
    ],
)
def test_literal_addresses_inside_a_network_are_refused(url: str, said: str) -> None:
    assert said in refusal(url)


@pytest.mark.parametrize(
    ("host", "said"),
    [
        ("rebound.example.org", "loopback address (127.0.0.1) (its host rebound.example.org resolves to it)"),
        ("inside.example.org", "private address (10.0.0.7)"),
        ("metadata.example.org", "link-local"),
        ("six-local.example.org", "loopback address (::1)"),
        ("mapped.example.org", "private address (192.168.1.1)"),
    ],
)
def test_a_name_is_judged_by_every_address_it_resolves_to(host: str, said: str) -> None:
    assert said in refusal(f"https://{host}/hook")


def test_other_endpoints_are_refused_with_the_reason() -> None:
    assert "must be https" in refusal("http://hooks.example.org/hook")
    assert "https URL" in refusal("ftp://hooks.example.org/hook")
    assert "https URL" in refusal("hooks.example.org/hook")
    assert "credentials" in refusal("https://user:pass@hooks.example.org/hook")
    assert "cannot be resolved" in refusal("https://unknown.example.org/hook")
    assert "no host" in refusal("https:///hook")
    assert "not a valid URL" in refusal("https://hooks.example.org:99999/hook")
    assert "empty" in refusal("  ")


def test_an_allowed_origin_may_be_http_and_inside_the_network() -> None:
    allowed = "http://127.0.0.1:8901, https://rebound.example.org"
    target = check("http://127.0.0.1:8901/receiver", allowed_origins(allowed), resolve)
    assert target.allowed and target.addresses == ("127.0.0.1",)
    assert check("https://rebound.example.org/x", allowed_origins(allowed), resolve).addresses == (
        "127.0.0.1",
    )
    # Origins are exact: another port, another scheme or another host is judged as any other.
    assert "must be https" in refusal("http://127.0.0.1:8902/receiver", allowed)
    assert "loopback" in refusal("https://127.0.0.1:8901/receiver", allowed)
    assert "must be https" in refusal("http://rebound.example.org/x", allowed)


def test_writing_a_subscription_does_not_resolve_an_allowed_origin() -> None:
    """The operator vouched for it; a delivery resolves it when it connects."""
    allowed = allowed_origins("https://receiver.internal")
    assert check("https://receiver.internal/x", allowed, resolve, resolve_allowed=False).addresses == ()
    with pytest.raises(EndpointRefused, match="cannot be resolved"):
        check("https://receiver.internal/x", allowed, resolve)


def test_refused_address_tells_public_from_the_rest() -> None:
    assert refused_address(PUBLIC) is None
    assert refused_address("2606:2800:220:1:248:1893:25c8:1946") is None
    assert refused_address("2002:808:808::1") is None  # 6to4 of a public address
    assert refused_address("fe80::1%eth0") is not None
    assert refused_address("not an address") is not None


@pytest.mark.parametrize(
    "value",
    ["127.0.0.1:8080", "ftp://x", "http://x/path", "http://x?q=1", "http://u:p@x", "https://", "http://x:0x"],
)
def test_the_allow_list_setting_takes_origins_only(value: str) -> None:
    with pytest.raises(SettingsError, match="FHIRSRV_SUBSCRIPTION_ALLOWED_ENDPOINTS"):
        Settings("sqlite://", subscription_allowed_endpoints=value)


def test_the_allow_list_setting_spells_each_origin_once() -> None:
    assert allowed_origins(" HTTP://Receiver.LAN , https://hooks.example.org:443/, http://[::1]:9 ") == {
        "http://receiver.lan:80",
        "https://hooks.example.org:443",
        "http://[::1]:9",
    }
