"""The SCRAM-SHA-256 verifier `sais db migrate` sends instead of a password (RFC 5802 / RFC 7677)."""

import base64
import hashlib
import hmac

import pytest

from sais.dbadmin import _saslprep, scram_matches, scram_verifier

pytestmark = pytest.mark.unit


def test_the_verifier_is_rfc_7677s_for_its_test_vector():
    # RFC 7677 §3: user "user", password "pencil", salt W22ZaJ0SNY7soEsUEjb6gQ==, 4096 iterations; the
    # server signature there is HMAC(ServerKey, AuthMessage), so check the keys the verifier is made of.
    salt = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
    verifier = scram_verifier("pencil", salt)
    method, rest = verifier.split("$", 1)
    params, keys = rest.split("$")
    stored_key, server_key = (base64.b64decode(k) for k in keys.split(":"))
    salted = hashlib.pbkdf2_hmac("sha256", b"pencil", salt, 4096)
    assert (method, params) == ("SCRAM-SHA-256", "4096:W22ZaJ0SNY7soEsUEjb6gQ==")
    assert stored_key == hashlib.sha256(hmac.digest(salted, b"Client Key", "sha256")).digest()
    assert server_key == hmac.digest(salted, b"Server Key", "sha256")
    auth_message = (
        b"n=user,r=rOprNGfwEbeRWgbNEkqO,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
        b"s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
    )
    assert base64.b64encode(hmac.digest(server_key, auth_message, "sha256")) == (
        b"6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
    )  # the v= of RFC 7677's server-final-message


def test_a_verifier_matches_its_password_only():
    v = scram_verifier("s3cret")
    assert scram_matches(v, "s3cret") and not scram_matches(v, "s3cret ")
    assert scram_verifier("s3cret") != v  # a fresh salt each time
    assert not scram_matches("md5abcdef", "s3cret") and not scram_matches("", "s3cret")


def test_saslprep_as_postgresql_applies_it():
    assert _saslprep("I\u00adX") == "IX"  # soft hyphen mapped to nothing
    assert _saslprep("\ufb01") == "fi"  # NFKC
    assert _saslprep("a\u00a0b") == "a b"  # non-ASCII space mapped to space
    assert _saslprep("a\u0007b") == "a\u0007b"  # ASCII: as it is
    assert _saslprep("a\u0080b") == "a\u0080b"  # a prohibited control: the original
