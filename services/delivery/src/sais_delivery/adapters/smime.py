"""S/MIME (CMS) with the ``cryptography`` library: sign with the sender's certificate, then
encrypt (AES-256) to the recipient's. The stock ``openssl cms`` decrypts and verifies it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import SMTP
from email.utils import format_datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.serialization import pkcs7

from ..domain.errors import CertificateError
from ..domain.render import RenderedFile


def _load_cert(path: Path | None, what: str) -> x509.Certificate:
    if path is None:
        raise CertificateError(f"no {what} certificate configured")
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise CertificateError(f"cannot load the {what} certificate {path}: {exc}") from None


def _emails(cert: x509.Certificate) -> set[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        return {e.lower() for e in san.get_values_for_type(x509.RFC822Name)}
    except x509.ExtensionNotFound:
        return set()


def _check_valid(cert: x509.Certificate, what: str, now: datetime) -> None:
    if now < cert.not_valid_before_utc:
        raise CertificateError(f"the {what} certificate is not valid until {cert.not_valid_before_utc:%Y-%m-%d}")
    if now > cert.not_valid_after_utc:
        raise CertificateError(f"the {what} certificate expired on {cert.not_valid_after_utc:%Y-%m-%d}")


class Smime:
    """Holds the sender's key and certificate and the recipient's certificate, all checked."""

    def __init__(self, sender_cert: Path | None, sender_key: Path | None, recipient_cert: Path | None,
                 *, sender: str, recipient: str) -> None:
        now = datetime.now(UTC)
        self.sender_cert = _load_cert(sender_cert, "sender")
        self.recipient_cert = _load_cert(recipient_cert, "recipient")
        _check_valid(self.sender_cert, "sender", now)
        _check_valid(self.recipient_cert, "recipient", now)
        if recipient.lower() not in _emails(self.recipient_cert):
            raise CertificateError(
                f"the recipient certificate is for {sorted(_emails(self.recipient_cert))}, not {recipient}")
        if sender_key is None:
            raise CertificateError("no sender private key configured")
        try:
            self.sender_key = serialization.load_pem_private_key(sender_key.read_bytes(), None)
        except (OSError, ValueError, TypeError) as exc:
            raise CertificateError(f"cannot load the sender key {sender_key}: {exc}") from None
        if self.sender_key.public_key().public_numbers() != self.sender_cert.public_key().public_numbers():
            raise CertificateError("the sender key does not belong to the sender certificate")
        self.sender, self.recipient = sender, recipient

    def build(self, *, subject: str, message_id: str, body: str, files: list[RenderedFile],
              date: datetime) -> bytes:
        inner = MIMEMultipart("mixed")
        inner.attach(MIMEText(body, "plain", "utf-8"))
        for f in files:
            subtype = "json" if f.name.endswith(".json") else "csv"
            part = MIMEApplication(f.content, subtype)
            part.add_header("Content-Disposition", "attachment", filename=f.name)
            inner.attach(part)
        inner_bytes = inner.as_bytes(policy=SMTP)
        signed = (
            pkcs7.PKCS7SignatureBuilder()
            .set_data(inner_bytes)
            .add_signer(self.sender_cert, self.sender_key, hashes.SHA256())
            .sign(serialization.Encoding.SMIME, [pkcs7.PKCS7Options.DetachedSignature])
        )
        enveloped = (
            pkcs7.PKCS7EnvelopeBuilder()
            .set_data(signed)
            .set_content_encryption_algorithm(algorithms.AES256)
            .add_recipient(self.recipient_cert)
            .encrypt(serialization.Encoding.SMIME, [])
        )
        headers = (
            f"From: {self.sender}\r\nTo: {self.recipient}\r\nSubject: {subject}\r\n"
            f"Date: {format_datetime(date)}\r\nMessage-ID: {message_id}\r\n"
        ).encode()
        return headers + enveloped.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
