"""S/MIME (CMS) with the ``cryptography`` library: sign with the sender's certificate, then
encrypt (AES-256) to the recipient's. The stock ``openssl cms`` decrypts and verifies it.
"""

from __future__ import annotations

import base64
import secrets
import subprocess
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import ExtensionPolicy, PolicyBuilder, Store, VerificationError
from sais_shared.devpki import DEV_CA_NAME

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


def _load_anchors(path: Path | None) -> list[x509.Certificate]:
    if path is None:
        raise CertificateError(
            "no trust anchor for recipient certificates: set SAIS_DELIVERY_RECIPIENT_CA_FILE to "
            "the CA bundle that issues the recipients' S/MIME certificates"
        )
    try:
        return x509.load_pem_x509_certificates(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise CertificateError(f"cannot load the recipient CA bundle {path}: {exc}") from None


def check_recipient_certificate(
    cert: x509.Certificate, anchors: list[x509.Certificate], now: datetime, *, dev_mode: bool
) -> None:
    """The recipient's certificate chains to a configured trust anchor and is fit to encrypt mail to:
    keyEncipherment, emailProtection, RSA of 2048 bits or more (or EC). Dev certificates only in dev mode."""
    try:
        chain = (
            PolicyBuilder()
            .store(Store(anchors))
            .time(now)
            .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=ExtensionPolicy.permit_all())
            .build_client_verifier()
            .verify(cert, [])
            .chain
        )
    except (VerificationError, ValueError) as exc:
        raise CertificateError(f"the recipient certificate does not chain to a trusted CA: {exc}") from None
    if not dev_mode and any(c.subject.rfc4514_string() == f"CN={DEV_CA_NAME}" for c in chain):
        raise CertificateError(
            "the recipient certificate was issued by the development CA: refused outside "
            "development mode (SAIS_DEV_MODE)"
        )
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise CertificateError(
                f"the recipient certificate has a {key.key_size}-bit RSA key: at least 2048 bits are required"
            )
    elif not isinstance(key, ec.EllipticCurvePublicKey):
        raise CertificateError("the recipient certificate's key is neither RSA nor EC: it cannot receive S/MIME")
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        if isinstance(key, rsa.RSAPublicKey) and not usage.key_encipherment:
            raise CertificateError("the recipient certificate does not allow keyEncipherment (key usage)")
    except x509.ExtensionNotFound:
        raise CertificateError("the recipient certificate has no key usage extension") from None
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        raise CertificateError("the recipient certificate has no extended key usage (emailProtection)") from None
    if ExtendedKeyUsageOID.EMAIL_PROTECTION not in eku:
        raise CertificateError("the recipient certificate is not for e-mail protection (extended key usage)")


KEY_TRANSPORTS = ("rsa-pkcs1v15", "rsa-oaep")


class Smime:
    """Holds the sender's key and certificate and the recipient's certificate, all checked."""

    def __init__(
        self,
        sender_cert: Path | None,
        sender_key: Path | None,
        recipient_cert: Path | None,
        *,
        sender: str,
        recipient: str,
        recipient_ca: Path | None = None,
        dev_mode: bool = False,
        key_transport: str = "rsa-pkcs1v15",
    ) -> None:
        if key_transport not in KEY_TRANSPORTS:
            raise CertificateError(f"key transport {key_transport!r} is not one of {KEY_TRANSPORTS}")
        self.key_transport = key_transport
        now = datetime.now(UTC)
        self.sender_cert = _load_cert(sender_cert, "sender")
        self.recipient_cert = _load_cert(recipient_cert, "recipient")
        assert recipient_cert is not None  # _load_cert refused a missing one
        self.recipient_cert_path: Path = recipient_cert
        _check_valid(self.sender_cert, "sender", now)
        _check_valid(self.recipient_cert, "recipient", now)
        check_recipient_certificate(self.recipient_cert, _load_anchors(recipient_ca), now, dev_mode=dev_mode)
        if recipient.lower() not in _emails(self.recipient_cert):
            raise CertificateError(
                f"the recipient certificate is for {sorted(_emails(self.recipient_cert))}, not {recipient}"
            )
        if sender_key is None:
            raise CertificateError("no sender private key configured")
        try:
            key = serialization.load_pem_private_key(sender_key.read_bytes(), None)
        except (OSError, ValueError, TypeError) as exc:
            raise CertificateError(f"cannot load the sender key {sender_key}: {exc}") from None
        if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise CertificateError(f"the sender key {sender_key} is neither RSA nor EC: S/MIME cannot sign with it")
        self.sender_key = key
        spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        if key.public_key().public_bytes(*spki) != self.sender_cert.public_key().public_bytes(*spki):
            raise CertificateError("the sender key does not belong to the sender certificate")
        self.sender, self.recipient = sender, recipient

    def _encrypt(self, signed: bytes) -> bytes:
        if self.key_transport == "rsa-oaep":
            return _oaep_envelope(signed, self.recipient_cert_path)
        return (
            pkcs7.PKCS7EnvelopeBuilder()
            .set_data(signed)
            .set_content_encryption_algorithm(algorithms.AES256)
            .add_recipient(self.recipient_cert)
            .encrypt(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary])
        )

    def build(self, *, subject: str, message_id: str, body: str, files: list[RenderedFile], date: datetime) -> bytes:
        """Sign (multipart/signed, detached SHA-256 signature), then encrypt (AES-256, enveloped-data).

        The MIME entities are assembled as bytes here and only the signature and the encryption are
        left to ``cryptography`` (in DER), so that each stage's input can be let go as soon as the next
        exists: a 30 MB part costs a few times its size in memory, not ten."""
        inner = _mime_mixed(body, files)
        signature = (
            pkcs7.PKCS7SignatureBuilder()
            .set_data(inner)
            .add_signer(self.sender_cert, self.sender_key, hashes.SHA256())
            .sign(serialization.Encoding.DER, [pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.Binary])
        )
        boundary = "=_sais_signed_" + secrets.token_hex(16)
        signed = b"".join(
            [
                (
                    f'Content-Type: multipart/signed; protocol="application/pkcs7-signature"; micalg="sha-256"; '
                    f'boundary="{boundary}"\r\nMIME-Version: 1.0\r\n\r\n'
                    f"This is an S/MIME signed message\r\n\r\n--{boundary}\r\n"
                ).encode(),
                inner,  # exactly the bytes signed (CRLF line ends throughout)
                (
                    f'\r\n--{boundary}\r\nContent-Type: application/pkcs7-signature; name="smime.p7s"\r\n'
                    'Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename="smime.p7s"\r\n\r\n'
                ).encode(),
                _base64_lines(signature),
                f"\r\n--{boundary}--\r\n".encode(),
            ]
        )
        del inner
        enveloped = self._encrypt(signed)
        del signed
        head = (
            f"From: {self.sender}\r\nTo: {self.recipient}\r\nSubject: {subject}\r\n"
            f"Date: {format_datetime(date)}\r\nMessage-ID: {message_id}\r\nMIME-Version: 1.0\r\n"
            'Content-Disposition: attachment; filename="smime.p7m"\r\n'
            'Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name="smime.p7m"\r\n'
            "Content-Transfer-Encoding: base64\r\n\r\n"
        ).encode()
        out = bytearray(head)
        out += _base64_lines(enveloped)
        del enveloped
        return bytes(out)


def _oaep_envelope(signed: bytes, recipient_cert: Path) -> bytes:
    """AES-256 enveloped-data with RSAES-OAEP (SHA-256) key transport, by the stock openssl CLI:
    ``cryptography`` builds PKCS#1 v1.5 key transport only."""
    done = subprocess.run(
        [
            "openssl",
            "cms",
            "-encrypt",
            "-binary",
            "-aes256",
            "-outform",
            "DER",
            "-recip",
            str(recipient_cert),
            "-keyopt",
            "rsa_padding_mode:oaep",
            "-keyopt",
            "rsa_oaep_md:sha256",
            "-keyopt",
            "rsa_mgf1_md:sha256",
        ],
        input=signed,
        capture_output=True,
    )
    if done.returncode:
        raise CertificateError(f"openssl could not encrypt with RSA-OAEP: {done.stderr.decode(errors='replace')[:300]}")
    return done.stdout


def _base64_lines(data: bytes) -> bytearray:
    """base64 in lines of 76 characters ending CRLF, built block by block (no whole-size copies)."""
    out = bytearray()
    view = memoryview(data)
    block = 57 * 1024  # a whole number of 57-byte (76-character) lines
    for i in range(0, len(data), block):
        out += base64.encodebytes(view[i : i + block]).replace(b"\n", b"\r\n")
    return out


def _mime_mixed(body: str, files: list[RenderedFile]) -> bytes:
    """multipart/mixed: the body, then each file as a base64 attachment; CRLF line ends throughout."""
    boundary = "=_sais_" + secrets.token_hex(16)
    out = [f'Content-Type: multipart/mixed; boundary="{boundary}"\r\nMIME-Version: 1.0\r\n\r\n'.encode()]

    def part(headers: str, payload: bytes) -> None:
        out.append(f"--{boundary}\r\n{headers}Content-Transfer-Encoding: base64\r\n\r\n".encode())
        out.append(base64.encodebytes(payload).replace(b"\n", b"\r\n"))

    part('Content-Type: text/plain; charset="utf-8"\r\n', body.encode("utf-8"))
    for f in files:
        subtype = "json" if f.name.endswith(".json") else "csv"
        part(
            f'Content-Type: application/{subtype}\r\nContent-Disposition: attachment; filename="{f.name}"\r\n',
            f.content,
        )
    out.append(f"--{boundary}--\r\n".encode())
    return b"".join(out)
