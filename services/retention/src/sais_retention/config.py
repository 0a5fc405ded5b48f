from __future__ import annotations

from pydantic import Field
from sais_shared.settings import CommonSettings, service_http_port


class RetentionSettings(CommonSettings):
    http_port: int = service_http_port("retention", 8084)
    retention_group_id: str | None = Field(
        None,
        description="Retention's Kafka consumer group; <SAIS_TOPIC_PREFIX>-retention when unset (what its ACLs and `sais kafka lag` expect)",
    )
    retention_interval_s: float = Field(300.0, description="How often the scheduler looks for due deletions")
    retention_unfinished_inbound_days: int = Field(
        7,
        ge=1,
        le=92,
        description="Days after it last changed that an inbound extract which never completed (or was refused) is "
        "deleted with its staged records (they are sealed to ingest's long-lived inbound key); the inbound "
        "topic keeps its messages 7 days too",
    )
    retention_confirmation_timeout_s: float = Field(
        3600.0,
        description="How long an owning service may take to confirm a deletion request before "
        "sais_retention_confirmations_overdue counts it (an alert)",
    )
