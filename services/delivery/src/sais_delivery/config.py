from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from sais_shared.errors import ConfigurationError
from sais_shared.settings import CommonSettings, service_http_port

from .domain.parts import DEFAULT_MAX_MESSAGE_BYTES


class DeliverySettings(CommonSettings):
    """SMTP and S/MIME settings (``SAIS_DELIVERY_*``); certificates and keys are files."""

    http_port: int = service_http_port("delivery", 8083)

    delivery_group_id: str | None = Field(
        None,
        description="Delivery's Kafka consumer group; <SAIS_TOPIC_PREFIX>-delivery when unset (what its ACLs and `sais kafka lag` expect)",
    )
    delivery_smtp_host: str = Field("127.0.0.1", description="The mail relay (STARTTLS required, TLS 1.2+)")
    delivery_smtp_port: int = Field(587, description="The mail relay's submission port")
    delivery_smtp_ca_file: Path | None = Field(None, description="CA bundle that verifies the SMTP server")
    delivery_smtp_username: str | None = Field(None, description="SMTP AUTH user, when the relay asks for one")
    delivery_smtp_password_file: Path | None = Field(None, description="File holding the SMTP AUTH password")
    delivery_smtp_password: SecretStr | None = Field(None, description="SMTP AUTH password (development only)")
    delivery_smtp_timeout_s: float = Field(30.0, description="Seconds before an SMTP connection or reply times out")
    delivery_smtp_attempts: int = Field(4, ge=1, description="Tries per send, with exponential backoff")
    delivery_smtp_backoff_s: float = Field(2.0, description="First pause between tries, doubled each time")
    delivery_max_message_bytes: int = Field(
        DEFAULT_MAX_MESSAGE_BYTES,
        ge=1_000_000,
        description="Largest message sent, on the wire after signing, encryption and encoding; a bigger batch "
        "goes as parts. The default leaves room under NHSmail's 35 MB",
    )
    delivery_mavis_max_rows: int = Field(
        10_000,
        ge=1,
        le=20_000,
        description="Most rows in one Mavis cohort-import file (Mavis refuses more than 20,000; its guide says "
        "files over 10,000 can fail and should be split); a larger programme goes as files of whole schools",
    )
    delivery_sender_address: str | None = Field(
        None, description="The authority's mailbox the files come from (From:, and the sender certificate's)"
    )
    delivery_sender_cert: Path | None = Field(None, description="The authority's S/MIME signing certificate (PEM)")
    delivery_sender_key: Path | None = Field(None, description="Its private key (PEM, mode 600)")
    delivery_recipient_cert: Path | None = Field(
        None, description="S/MIME certificate of the recipient, or a folder of <address>.pem, one per recipient"
    )
    delivery_recipient_ca_file: Path | None = Field(
        None, description="CA bundle (PEM) that recipient certificates must chain to (the trust anchor)"
    )
    delivery_key_transport: Literal["rsa-pkcs1v15", "rsa-oaep"] = Field(
        "rsa-pkcs1v15",
        description="How the message key is encrypted to the recipient: PKCS#1 v1.5 (every S/MIME "
        "client) or RSAES-OAEP with SHA-256 (check the SAIS team's mail client first)",
    )
    delivery_recipient: str | None = Field(
        None,
        description="The SAIS team's mailbox (within the protocol's allowed domains); the protocol's first "
        "recipient when unset. The shipped example protocol names none",
    )
    delivery_schedule: bool = Field(False, description="Deliver each window by itself during its month")
    delivery_schedule_interval_s: float = Field(3600.0, description="How often the window scheduler looks")

    def smtp_password(self) -> str | None:
        if self.delivery_smtp_password_file:
            return self.delivery_smtp_password_file.read_text().strip()
        if self.delivery_smtp_password is None:
            return None
        if not self.dev_mode:
            raise ConfigurationError(
                "SAIS_DELIVERY_SMTP_PASSWORD puts the mail relay's password in the environment, which other "
                "processes and crash dumps can read: use SAIS_DELIVERY_SMTP_PASSWORD_FILE (the variable is "
                "accepted only with SAIS_DEV_MODE=true)"
            )
        return self.delivery_smtp_password.get_secret_value()
