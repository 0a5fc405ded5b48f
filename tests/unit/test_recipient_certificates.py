"""The recipient's certificate must chain to the configured trust anchor and be fit for S/MIME
encryption; the development CA is accepted only in development mode."""

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from sais_delivery.adapters.smime import check_recipient_certificate
from sais_delivery.domain.errors import CertificateError
from sais_shared.devpki import DEV_CA_NAME, _cert, _key

pytestmark = pytest.mark.unit
NOW = datetime.now(UTC)
EMAIL = "ann.curzons@nhs.net"


@pytest.fixture(scope="module")
def cas():
    dev_key, other_key = _key(), _key()
    return {
        "dev": (_cert(DEV_CA_NAME, dev_key, None, None, ca=True, days=3650), dev_key),
        "nhs": (_cert("Test NHS S/MIME CA", other_key, None, None, ca=True, days=3650), other_key),
    }


def test_a_certificate_from_the_trusted_ca_is_accepted(cas):
    ca, ca_key = cas["nhs"]
    check_recipient_certificate(_cert(EMAIL, _key(), ca, ca_key, email=EMAIL), [ca], NOW, dev_mode=False)


def test_the_development_ca_is_refused_outside_development_mode(cas):
    ca, ca_key = cas["dev"]
    cert = _cert(EMAIL, _key(), ca, ca_key, email=EMAIL)
    check_recipient_certificate(cert, [ca], NOW, dev_mode=True)
    with pytest.raises(CertificateError, match="development CA"):
        check_recipient_certificate(cert, [ca], NOW, dev_mode=False)


def test_a_certificate_from_another_ca_is_refused(cas):
    dev, dev_key = cas["dev"]
    with pytest.raises(CertificateError, match="does not chain to a trusted CA"):
        check_recipient_certificate(
            _cert(EMAIL, _key(), dev, dev_key, email=EMAIL), [cas["nhs"][0]], NOW, dev_mode=True
        )


def test_a_self_signed_1024_bit_certificate_is_refused():
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, EMAIL)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(EMAIL)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    with pytest.raises(CertificateError):
        check_recipient_certificate(cert, [cert], NOW, dev_mode=True)


def test_a_certificate_not_for_email_protection_is_refused(cas):
    ca, ca_key = cas["nhs"]
    tls_only = _cert("mail.nhs.net", _key(), ca, ca_key, dns=["mail.nhs.net"])
    with pytest.raises(CertificateError, match=r"e-mail protection|extended key usage"):
        check_recipient_certificate(tls_only, [ca], NOW, dev_mode=False)
    assert ExtendedKeyUsageOID.SERVER_AUTH in tls_only.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
