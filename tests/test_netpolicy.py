"""aggregator.netpolicy: address classification and URL checks (S1, S4 URL side)."""

from __future__ import annotations

import pytest

from aggregator.exceptions import BlockedAddressError, FetchError
from aggregator.netpolicy import AddressPolicy, classify, is_ip_literal

REFUSED = {
    "127.0.0.1": "loopback",
    "127.0.0.2": "loopback",
    "::1": "loopback",
    "10.0.0.1": "private",
    "172.16.5.4": "private",
    "192.168.1.1": "private",
    "169.254.169.254": "link-local",
    "fe80::1%eth0": "link-local",
    "100.64.0.1": "shared address space",
    "0.0.0.0": "unspecified",
    "::": "unspecified",
    "224.0.0.1": "multicast",
    "ff02::1": "multicast",
    "240.0.0.1": "reserved",
    "255.255.255.255": "reserved",
    "fc00::1": "private",
    "fec0::1": "site-local",
    "::ffff:127.0.0.1": "loopback",
    "::ffff:10.1.2.3": "private",
    "2002:7f00:1::": "loopback",  # 6to4 of 127.0.0.1
    "2002:a00:1::": "private",  # 6to4 of 10.0.0.1
    "64:ff9b::7f00:1": "loopback",  # NAT64 of 127.0.0.1
    "::127.0.0.1": "reserved",  # IPv4-compatible (deprecated)
    "2001:db8::1": "private",  # documentation
}
PUBLIC = ["8.8.8.8", "1.1.1.1", "2606:4700::1111", "::ffff:8.8.8.8", "2002:808:808::"]


@pytest.mark.parametrize(("ip", "kind"), sorted(REFUSED.items()))
def test_non_public_addresses_are_classified_and_refused(ip: str, kind: str) -> None:
    assert classify(ip) == kind
    assert not AddressPolicy().is_allowed(ip)


@pytest.mark.parametrize("ip", PUBLIC)
def test_public_addresses_are_allowed(ip: str) -> None:
    assert classify(ip) is None
    assert AddressPolicy().is_allowed(ip)


def test_teredo_embedding_a_private_client_is_refused() -> None:
    # Teredo 2001:0::/32 with the obfuscated client 10.0.0.1 (bits inverted).
    assert not AddressPolicy().is_allowed("2001:0:4136:e378:8000:63bf:f5ff:fffe")


def test_allowed_networks() -> None:
    policy = AddressPolicy(False, ["127.0.0.1/32", "192.168.0.0/16"])
    assert policy.is_allowed("127.0.0.1") and policy.is_allowed("192.168.7.7")
    assert policy.is_allowed("::ffff:127.0.0.1")
    assert not policy.is_allowed("127.0.0.2")
    assert policy.refusal("127.0.0.2") == "loopback"
    assert not policy.is_allowed("10.0.0.1")


def test_allow_private_allows_all_but_unspecified_and_multicast() -> None:
    policy = AddressPolicy(allow_private=True)
    for ip in ("127.0.0.1", "10.0.0.1", "169.254.169.254", "100.64.0.1", "::1"):
        assert policy.is_allowed(ip), ip
    for ip in ("0.0.0.0", "::", "224.0.0.1"):
        assert not policy.is_allowed(ip), ip


def test_invalid_network_raises() -> None:
    with pytest.raises(ValueError):
        AddressPolicy(False, ["not-a-network"])


def test_garbage_is_refused() -> None:
    assert AddressPolicy(allow_private=True).refusal("nope") == "invalid address"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("file:///etc/passwd", "fetch: unsupported URL scheme 'file' (http/https only)"),
        ("gopher://example.com/", "fetch: unsupported URL scheme 'gopher' (http/https only)"),
        ("/etc/passwd", "fetch: unsupported URL scheme 'none' (http/https only)"),
        ("feed.xml", "fetch: unsupported URL scheme 'none' (http/https only)"),
        ("http:///feed", "fetch: URL has no host"),
        ("http://example.com:99999/", "fetch: invalid URL (Port out of range 0-65535)"),
    ],
)
def test_check_url_rejects_bad_urls(url: str, message: str) -> None:
    with pytest.raises(FetchError) as info:
        AddressPolicy().check_url(url)
    assert info.value.message == message
    assert not isinstance(info.value, BlockedAddressError)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://[::1]:8080/",
        "http://[::ffff:127.0.0.1]/",
        "https://169.254.169.254/latest/",
        "http://10.0.0.1/",
        "http://100.64.0.1/",
        "http://0.0.0.0/",
        # written with Unicode that the HTTP client normalises to an IP literal
        "http://127\u30020\u30020\u30021:8099/",  # ideographic full stops
        "http://\u2460\u2461\u2466.0.0.1/",  # circled digits: 127.0.0.1
        "http://\uff11\uff10.0.0.1/",  # full-width digits: 10.0.0.1
        "http://\u2460\u2465\u2468.\u2461\u2464\u2463.\u2460\u2465\u2468.\u2461\u2464\u2463/",
    ],
)
def test_check_url_refuses_ip_literals(url: str) -> None:
    with pytest.raises(BlockedAddressError) as info:
        AddressPolicy().check_url(url)
    assert info.value.message.startswith("fetch: refused address ")


def test_check_url_returns_the_host() -> None:
    policy = AddressPolicy(False, ["127.0.0.1/32"])
    assert policy.check_url("HTTPS://Example.COM./feed") == "example.com"
    assert policy.check_url("http://127.0.0.1:8080/") == "127.0.0.1"
    assert policy.check_url("http://[2606:4700::1111]/") == "2606:4700::1111"
    assert policy.check_url("http://b\u00fccher.example/") == "xn--bcher-kva.example"
    with pytest.raises(BlockedAddressError):  # allowed: 127.0.0.1 only
        policy.check_url("http://127\u30020\u30020\u30022/")


def test_is_ip_literal() -> None:
    assert is_ip_literal("127.0.0.1") and is_ip_literal("::1")
    assert not is_ip_literal("example.com") and not is_ip_literal("127.1")
