"""Development PKI: a throwaway CA, an SMTP server certificate, S/MIME certificates for the
LA sender and the SAIS recipient, and a key-encryption key. For demos and tests only; production
certificates and keys come from the organisations' own PKI and are mounted as files.
"""

from __future__ import annotations

import base64
import ipaddress
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class DevPki:
    root: Path

    ca_cert = property(lambda self: self.root / "ca.pem")
    smtp_cert = property(lambda self: self.root / "smtp-server.pem")
    smtp_key = property(lambda self: self.root / "smtp-server.key")
    sender_cert = property(lambda self: self.root / "sender.pem")
    sender_key = property(lambda self: self.root / "sender.key")
    recipient_cert = property(lambda self: self.root / "recipient.pem")
    recipient_key = property(lambda self: self.root / "recipient.key")
    kek = property(lambda self: self.root / "kek.b64")
    inbound_key = property(lambda self: self.root / "inbound.key")
    inbound_pub = property(lambda self: self.root / "inbound.pub.pem")
    publisher_key = property(lambda self: self.root / "publisher.key")  # a dev upstream system's signing key
    publishers = property(lambda self: self.root / "publishers.yaml")  # ingest's registry of publishers
    kafka_keystore = property(lambda self: self.root / "kafka-broker.pem")  # the broker's key and certificate


# Development mailboxes (the local SMTP server keeps what is sent to them): no real person's address.
SENDER_EMAIL = "sais-datashare@la.example.invalid"
RECIPIENT_EMAIL = "sais-dev-recipient@nhs.net"
DEV_PUBLISHER = "dev-upstream"


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _write_key(path: Path, key: rsa.RSAPrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    path.chmod(0o600)


def _key_usage(*, ca: bool, signs_mail: bool) -> x509.KeyUsage:
    """A CA signs certificates and lists; an end entity signs and receives keys (and signs mail: non-repudiation)."""
    return x509.KeyUsage(
        digital_signature=True,
        key_cert_sign=ca,
        crl_sign=ca,
        content_commitment=signs_mail and not ca,
        key_encipherment=not ca,
        data_encipherment=False,
        key_agreement=False,
        encipher_only=False,
        decipher_only=False,
    )


def _cert(
    subject_cn: str,
    key,
    issuer_cert,
    issuer_key,
    *,
    ca=False,
    days=825,
    email=None,
    dns=None,
    not_before: datetime | None = None,
    client_auth: bool = False,
):
    now = not_before or datetime.now(UTC) - timedelta(days=1)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_cert.subject if issuer_cert else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    builder = builder.add_extension(_key_usage(ca=ca, signs_mail=bool(email)), critical=True)
    sans: list[x509.GeneralName] = []
    if email:
        sans.append(x509.RFC822Name(email))
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
    if dns:
        sans += [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        usages = [ExtendedKeyUsageOID.SERVER_AUTH] + ([ExtendedKeyUsageOID.CLIENT_AUTH] if client_auth else [])
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(issuer_key or key, hashes.SHA256())


# The dev CA's name: a certificate issued under it is refused outside development mode.
DEV_CA_NAME = "SAIS datashare dev CA"


def issue_email_cert(
    ca_cert_path: Path,
    ca_key_path: Path,
    email: str,
    out_cert: Path,
    out_key: Path,
    *,
    days: int = 825,
    not_before: datetime | None = None,
) -> None:
    """An S/MIME certificate for ``email`` signed by the dev CA (tests use it for expired certs too)."""
    ca_cert = x509.load_pem_x509_certificate(ca_cert_path.read_bytes())
    ca_key = serialization.load_pem_private_key(ca_key_path.read_bytes(), None)
    key = _key()
    cert = _cert(email, key, ca_cert, ca_key, email=email, days=days, not_before=not_before)
    _write_key(out_key, key)
    out_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def ensure_dev_pki(root: Path) -> DevPki:
    """Create the dev PKI under ``root`` unless it is already there."""
    pki = DevPki(root)
    if pki.kek.exists() and pki.recipient_cert.exists():
        _ensure_inbound(pki)
        _ensure_kafka_broker(pki)
        _ensure_credentials(pki)
        return pki
    root.mkdir(parents=True, exist_ok=True)
    ca_key = _key()
    ca = _cert(DEV_CA_NAME, ca_key, None, None, ca=True, days=3650)
    pki.ca_cert.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    _write_key(root / "ca.key", ca_key)
    leaves: tuple[tuple[Path, Path, dict[str, Any]], ...] = (
        (pki.smtp_cert, pki.smtp_key, {"dns": ["localhost", "smtp", "mailpit", "postgres"]}),
        (pki.sender_cert, pki.sender_key, {"email": SENDER_EMAIL}),
        (pki.recipient_cert, pki.recipient_key, {"email": RECIPIENT_EMAIL}),
    )
    for cert_path, key_path, kwargs in leaves:
        key = _key()
        cn = kwargs.get("email") or "localhost"
        cert = _cert(cn, key, ca, ca_key, **kwargs)
        _write_key(key_path, key)
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pki.kek.write_text(base64.b64encode(os.urandom(32)).decode() + "\n")
    pki.kek.chmod(0o600)
    _ensure_inbound(pki)
    _ensure_kafka_broker(pki)
    _ensure_credentials(pki)
    return pki


KAFKA_BROKER_CN = "kafka-broker"


def _ensure_kafka_broker(pki: DevPki) -> None:
    """The Kafka broker's TLS key and certificate in one PEM file (Kafka's PEM keystore). The broker
    also presents it to its own controller listener (mutual TLS), as principal ``User:kafka-broker``."""
    if pki.kafka_keystore.exists():
        return
    ca_key = serialization.load_pem_private_key((pki.root / "ca.key").read_bytes(), password=None)
    ca = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    key = _key()
    cert = _cert(KAFKA_BROKER_CN, key, ca, ca_key, dns=["localhost", "kafka"], client_auth=True)
    pki.kafka_keystore.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        + cert.public_bytes(serialization.Encoding.PEM)
    )
    pki.kafka_keystore.chmod(0o600)


def _ensure_credentials(pki: DevPki) -> None:
    """Random passwords, mode 600: the service roles (credentials/postgres-sais_<service>), the
    services' and the upstream publisher's Kafka users (kafka-sais-<service>) and Kafka's administrator."""
    import secrets

    from .settings import KAFKA_ADMIN, SERVICES, kafka_user, service_principal

    folder = pki.root / "credentials"
    folder.mkdir(mode=0o700, exist_ok=True)
    names = [f"postgres-{service_principal(s)}" for s in SERVICES]
    names += [f"kafka-{kafka_user(s)}" for s in (*SERVICES, "publisher")] + [f"kafka-{KAFKA_ADMIN}"]
    for name in names:
        path = folder / name
        if not path.exists():
            path.write_text(secrets.token_urlsafe(24) + "\n")
            path.chmod(0o600)


def _ensure_inbound(pki: DevPki) -> None:
    """The key pair upstream systems encrypt inbound extracts to (public half given to them), and a
    dev upstream system's signing key, registered for every source."""
    if not pki.publishers.exists():
        signing = Ed25519PrivateKey.generate()
        pki.publisher_key.write_bytes(
            signing.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        pki.publisher_key.chmod(0o600)
        public = (
            signing.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode()
        )
        pki.publishers.write_text(
            yaml.safe_dump(
                {
                    "publishers": [
                        {
                            "id": DEV_PUBLISHER,
                            "public_key": public,
                            "sources": [
                                "summer-census",
                                "autumn-census",
                                "admissions-reception",
                                "admissions-year3-transfer",
                            ],
                        }
                    ]
                }
            )
        )
    if pki.inbound_key.exists():
        return
    key = _key()
    _write_key(pki.inbound_key, key)
    pki.inbound_pub.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
