from __future__ import annotations

from pathlib import Path

from pydantic import Field
from sais_shared.settings import CommonSettings, service_http_port


class EligibilitySettings(CommonSettings):
    http_port: int = service_http_port("eligibility", 8082)

    eligibility_rules_dir: Path | None = Field(None, description="Rules files; the bundled ones when unset")
    eligibility_release_check_s: float = Field(
        60.0,
        gt=0,
        description="How often eligibility's releaser looks at every academic year with an extract not yet "
        "released or walked, besides releasing each one as soon as its last record is in (one that "
        "another instance's consumer completed, or that a failure interrupted)",
    )
    eligibility_group_id: str | None = Field(
        None,
        description="Eligibility's Kafka consumer group; <SAIS_TOPIC_PREFIX>-eligibility when unset (what its ACLs and `sais kafka lag` expect)",
    )
