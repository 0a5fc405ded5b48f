"""SMTP submission with STARTTLS required (TLS 1.2+, server certificate verified against the
configured CA), authentication when configured. A server that does not offer STARTTLS is
refused before any message data is sent.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import aiosmtplib

from ..domain.errors import (
    MessageMayHaveBeenSentError,
    SmtpRejectedError,
    SmtpTransientError,
    TransferMethodNotAllowedError,
)

__all__ = ["Mailer", "MessageMayHaveBeenSentError", "SmtpConfig", "SmtpRejectedError", "SmtpTransientError"]

# aiosmtplib's own function (kept across a reload of this module, which must not wrap itself)
_normalize_line_endings = getattr(
    aiosmtplib.protocol.normalize_message_line_endings,
    "aiosmtplib_original",
    aiosmtplib.protocol.normalize_message_line_endings,
)


def normalize_line_endings(message: bytes) -> bytes:
    """aiosmtplib's ``normalize_message_line_endings``, the same bytes out, without its regex where there is
    nothing to change. A message we build is CRLF throughout, and rewriting every CRLF of a 20 MB part as
    CRLF was an eighth of ``sais delivery send`` (issue 28). Three counts tell whether any CR or LF stands
    alone; only then does aiosmtplib's own function run. A test holds the two equal on any bytes."""
    crlf = message.count(b"\r\n")
    if message.count(b"\r") == crlf == message.count(b"\n") and message.endswith(b"\r\n"):
        return message
    return _normalize_line_endings(message)


# aiosmtplib calls it by its module-level name twice per message: to count the SIZE it announces
# (aiosmtplib.smtp, SMTP.sendmail) and to send DATA (aiosmtplib.protocol, execute_data_command). Both
# names are replaced, and nothing else.
normalize_line_endings.aiosmtplib_original = _normalize_line_endings  # type: ignore[attr-defined]
aiosmtplib.protocol.normalize_message_line_endings = normalize_line_endings
aiosmtplib.smtp.normalize_message_line_endings = normalize_line_endings


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    ca_file: Path | None
    username: str | None = None
    password: str | None = None
    timeout_s: float = 30.0


def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


class Mailer:
    def __init__(self, config: SmtpConfig) -> None:
        self.config = config

    async def send(self, message: bytes, *, sender: str, recipient: str) -> str:
        """Send; returns the server's reply. Raises a transient, a permanent or an uncertain error."""
        client = await self._open()
        try:
            if client.is_ehlo_or_helo_needed:
                await client.ehlo()
            limit = int(client.esmtp_extensions.get("size") or 0)
            if limit and len(message) > limit:
                raise SmtpRejectedError(
                    f"the message is {len(message)} bytes, over the server's limit of {limit} bytes (SIZE); "
                    "lower SAIS_DELIVERY_MAX_MESSAGE_BYTES below it"
                )
            _errors, reply = await client.sendmail(sender, [recipient], message)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            raise SmtpRejectedError(f"recipient refused: {exc.recipients[0].code}") from None
        except aiosmtplib.SMTPResponseException as exc:
            if 400 <= exc.code < 500:
                raise SmtpTransientError(f"SMTP server deferred the message: {exc.code}") from None
            size = " (message too large)" if exc.code == 552 else ""
            raise SmtpRejectedError(
                f"SMTP server refused the message of {len(message)} bytes: {exc.code}{size}"
            ) from None
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, OSError) as exc:
            raise MessageMayHaveBeenSentError(f"connection lost during the send: {type(exc).__name__}") from None
        finally:
            try:
                await client.quit()
            except (aiosmtplib.SMTPException, OSError):
                client.close()
        return reply

    async def _open(self) -> aiosmtplib.SMTP:
        """A connection upgraded to TLS (a server without STARTTLS is refused before anything is sent), and
        logged in where a login is configured."""
        c = self.config
        client = aiosmtplib.SMTP(
            hostname=c.host,
            port=c.port,
            timeout=c.timeout_s,
            start_tls=False,
            use_tls=False,
            tls_context=tls_context(c.ca_file),
        )
        try:
            await client.connect()
            await client.ehlo()
            if not client.supports_extension("starttls"):
                raise TransferMethodNotAllowedError(
                    f"SMTP server {c.host}:{c.port} does not offer STARTTLS; refusing to send in clear text (ISP §8.2)"
                )
            await client.starttls()
            if c.username:
                await client.login(c.username, c.password or "")
        except TransferMethodNotAllowedError:
            client.close()
            raise
        except aiosmtplib.SMTPAuthenticationError as exc:
            client.close()
            raise SmtpRejectedError(f"SMTP authentication failed: {exc.code}") from None
        except (aiosmtplib.SMTPException, OSError, ssl.SSLError) as exc:
            client.close()
            raise SmtpTransientError(
                f"SMTP connection to {c.host}:{c.port} failed: {type(exc).__name__}: {exc}"
            ) from None
        return client
