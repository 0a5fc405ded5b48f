"""The mailer's line-ending pass gives exactly what aiosmtplib's own gives, on any bytes, and is the one
aiosmtplib uses when it sends DATA."""

import aiosmtplib.protocol
import aiosmtplib.smtp
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sais_delivery.adapters import mailer

pytestmark = pytest.mark.unit

ORIGINAL = mailer._normalize_line_endings
_pieces = st.sampled_from([b"\r\n", b"\r", b"\n", b"a", b".", b"\r\r\n", b"\n\r", b""])


@given(st.lists(_pieces, max_size=40).map(b"".join))
def test_the_same_bytes_as_aiosmtplib_on_any_message(message: bytes) -> None:
    assert mailer.normalize_line_endings(message) == ORIGINAL(message)


@pytest.mark.parametrize(
    "message",
    [b"", b"a", b"a\r\nb\r\n", b"a\r\nb", b"a\nb\r\n", b"a\rb\r\n", b"a\r\r\n", b"\r\n.\r\n", b"\n"],
)
def test_the_edges(message: bytes) -> None:
    assert mailer.normalize_line_endings(message) == ORIGINAL(message)


def test_a_crlf_message_is_returned_as_it_is() -> None:
    message = b"Subject: x\r\n\r\n" + b"QUJD\r\n" * 1000
    assert mailer.normalize_line_endings(message) is message


def test_aiosmtplib_counts_and_sends_data_through_it() -> None:
    assert aiosmtplib.protocol.normalize_message_line_endings is mailer.normalize_line_endings
    assert aiosmtplib.smtp.normalize_message_line_endings is mailer.normalize_line_endings  # the SIZE
    assert ORIGINAL is not mailer.normalize_line_endings  # aiosmtplib's own, not this wrapper
