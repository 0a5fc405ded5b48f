from __future__ import annotations

from pathlib import Path

from pydantic import Field
from sais_shared.settings import CommonSettings


class IngestSettings(CommonSettings):
    """ingest's settings (``SAIS_*``); the inbound consumer runs when its private key is configured."""

    http_port: int = 8081

    ingest_group_id: str = Field("sais-ingest", description="Ingest's Kafka consumer group (the inbound topic)")
    ingest_inbound_private_key: Path | None = Field(
        None,
        description="RSA private key (PEM) that opens extracts published on the inbound topic, or a folder of "
        "them (*.pem, *.key): while publishers move to a new key, both open extracts",
    )
    ingest_publishers_file: Path | None = Field(
        None,
        description="Registry of upstream publishers (YAML: id, Ed25519 public key, sources each may send); "
        "inbound extracts from anyone else are refused",
    )
