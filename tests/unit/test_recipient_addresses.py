"""The allow-list reads each recipient with a real RFC 5322 parser and accepts only one plain
address: nothing it accepts can reach another domain at RCPT TO or inject a header."""

import pytest
import yaml
from aiosmtplib.email import quote_address
from hypothesis import given
from hypothesis import strategies as st
from sais_shared.protocol import (
    ProtocolError,
    bundled_protocol_path,
    normalise_address,
    parse_protocol,
    recipient_allowed,
)

pytestmark = pytest.mark.unit
NHS = ["nhs.net"]
BYPASSES = [
    "evil@evil.com,x.nhs.net",
    "Evil <evil@evil.com> x.nhs.net",
    "evil@evil.com (x.nhs.net",
    "evil@evil.com;x.nhs.net",
    "evil@evil.com\r\nBcc: x.nhs.net",
    "evil@evil.com\nx.nhs.net",
    "<evil@evil.com>@x.nhs.net",
    '"evil@evil.com"@x.nhs.net',
    "evil(x)@x.nhs.net",
    "evil@evil.com x.nhs.net",
    "evil@evil.com\tx.nhs.net",
    "evil@[127.0.0.1]",
    "evil%evil.com@x.nhs.net.",
    "a@b@nhs.net",
    "x@nhs.net.evil.com",
    "x@notnhs.net",
    "ann.curzons@nhs.net\x00",
]


@pytest.mark.parametrize("address", BYPASSES)
def test_address_tricks_are_refused(address):
    assert not recipient_allowed(address, NHS)


@pytest.mark.parametrize(
    "address", ["ann.curzons@nhs.net", "x@team.nhs.net", "Ann.Curzons@NHS.NET", "o'brien-smith+sais@nhs.net"]
)
def test_plain_addresses_in_the_domain_are_allowed_and_normalised(address):
    assert recipient_allowed(address, NHS)
    local, domain = normalise_address(address).split("@")
    assert domain.endswith("nhs.net") and local == address.split("@")[0]


_TRICKY = [*list('ab.-_+<>(),;:"\\ \t\r\n[]%!x@'), "evil.com", "nhs.net", "evil@evil.com"]
ADDRESSES = st.builds(
    lambda local, domain: f"{local}@{domain}",
    st.lists(st.sampled_from([*_TRICKY, "ann", "o'brien", "curzons"]), min_size=1, max_size=6).map("".join),
    st.sampled_from(
        [
            "nhs.net",
            "team.nhs.net",
            "NHS.NET",
            "evil.com",
            "nhs.net.evil.com",
            "nhs.net,evil.com",
            "nhs.net>",
            "evil.com (nhs.net",
            "nhs.net\r\nBcc: evil@evil.com",
            "[127.0.0.1]",
        ]
    ),
)


@given(ADDRESSES)
def test_nothing_the_allow_list_accepts_reaches_another_domain_at_rcpt(address):
    if not recipient_allowed(address, NHS):
        return
    rcpt = quote_address(normalise_address(address))  # what aiosmtplib puts in RCPT TO:<...>
    assert rcpt.startswith("<") and rcpt.endswith(">") and rcpt.count("@") == 1
    domain = rcpt[1:-1].split("@")[1]
    assert domain == "nhs.net" or domain.endswith(".nhs.net")
    assert not any(c in rcpt for c in "\r\n ,;")


def test_the_property_above_is_not_vacuous():
    """Its strategy reaches addresses the allow-list accepts, and tricks it refuses."""
    from hypothesis import find

    assert recipient_allowed(find(ADDRESSES, lambda a: recipient_allowed(a, NHS) and "'" in a), NHS)
    assert not recipient_allowed(find(ADDRESSES, lambda a: "nhs.net" in a and not recipient_allowed(a, NHS)), NHS)


@pytest.mark.parametrize("address", BYPASSES[:5])
def test_a_protocol_file_naming_a_trick_address_does_not_load(address):
    doc = yaml.safe_load(bundled_protocol_path().read_text())
    doc["transfer"]["recipients"] = [address]
    with pytest.raises(ProtocolError):
        parse_protocol(yaml.safe_dump(doc))
