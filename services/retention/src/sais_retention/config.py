from __future__ import annotations

from pydantic import Field
from sais_shared.settings import CommonSettings


class RetentionSettings(CommonSettings):
    http_port: int = 8084
    retention_group_id: str = "sais-retention"
    retention_interval_s: float = Field(300.0, description="How often the scheduler looks for due deletions")
