from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field
from sais_shared.settings import CommonSettings, service_http_port

if TYPE_CHECKING:  # the readers (openpyxl, defusedxml) load only when an extract is read
    from .domain.files import ReadLimits


class IngestSettings(CommonSettings):
    """ingest's settings (``SAIS_*``); the inbound consumer runs when its private key is configured."""

    http_port: int = service_http_port("ingest", 8081)

    ingest_group_id: str | None = Field(
        None,
        description="Ingest's Kafka consumer group (the inbound topic); <SAIS_TOPIC_PREFIX>-ingest when unset (what its ACLs and `sais kafka lag` expect)",
    )
    ingest_inbound_private_key: Path | None = Field(
        None,
        description="RSA private key (PEM) that opens extracts published on the inbound topic, or a folder of "
        "them (*.pem, *.key): while publishers move to a new key, both open extracts",
    )
    ingest_inbound_max_extract_bytes: int = Field(
        4 << 30,
        gt=0,
        description="Most bytes of sealed records staged for one inbound extract (4 GiB: England's 9 million pupils "
        "fit); a record beyond it is not staged, and the extract completes as incomplete",
    )
    ingest_replacement_max_withdrawn: float = Field(
        0.10,
        ge=0,
        le=1,
        description="A replacement dataset (ISP §9.6) that would withdraw more than this share of the children "
        "of the extract it supersedes is refused unless the operator says --replace",
    )
    ingest_reference_date_tolerance_days: int = Field(
        14,
        ge=0,
        le=92,
        description="Days either side of a source's window (a census month, admissions before September) that a "
        "reference date may fall; outside it, an extract is refused unless the operator says --force-date",
    )
    ingest_sweep_interval_s: float = Field(
        30.0,
        gt=0,
        description="How often the ingest service ends extracts a killed process left unfinished and announces "
        "endings not yet on Kafka",
    )
    ingest_max_file_bytes: int = Field(1 << 30, gt=0, description="Largest extract file read, in bytes")
    ingest_max_rows: int = Field(2_000_000, gt=0, description="Most rows (or CTF pupils) in one extract")
    ingest_max_columns: int = Field(200, gt=0, description="Most columns in a row of an extract")
    ingest_max_field_chars: int = Field(
        32_767, gt=0, description="Longest cell of an extract, in characters (Excel's own limit on a cell)"
    )
    ingest_max_line_chars: int = Field(1_000_000, gt=0, description="Longest line of a CSV extract, in characters")
    ingest_header_lookahead_rows: int = Field(
        100, gt=0, description="Rows read (blank ones too) looking for the header row of an extract"
    )
    ingest_max_blank_run: int = Field(100_000, gt=0, description="Most blank rows in a row within an extract")
    ingest_max_xlsx_member_bytes: int = Field(
        512 << 20, gt=0, description="Largest part of an .xlsx workbook, unpacked, in bytes"
    )
    ingest_max_xlsx_ratio: int = Field(
        100, gt=0, description="Most an .xlsx part over 1 MiB may unpack beyond its stored size (a zip bomb's ratio)"
    )
    ingest_max_shared_strings_bytes: int = Field(
        24 << 20, gt=0, description="Largest table of text values of an .xlsx workbook (held in memory), in bytes"
    )
    ingest_max_xml_depth: int = Field(64, gt=0, description="Deepest nesting of an XML extract (CTF) or workbook part")
    ingest_publishers_file: Path | None = Field(
        None,
        description="Registry of upstream publishers (YAML: id, Ed25519 public key, sources each may send); "
        "inbound extracts from anyone else are refused",
    )

    def read_limits(self) -> ReadLimits:
        from .domain.files import ReadLimits

        return ReadLimits(
            max_file_bytes=self.ingest_max_file_bytes,
            max_rows=self.ingest_max_rows,
            max_columns=self.ingest_max_columns,
            max_field_chars=self.ingest_max_field_chars,
            max_line_chars=self.ingest_max_line_chars,
            header_lookahead_rows=self.ingest_header_lookahead_rows,
            max_blank_run=self.ingest_max_blank_run,
            max_xlsx_member_bytes=self.ingest_max_xlsx_member_bytes,
            max_xlsx_ratio=self.ingest_max_xlsx_ratio,
            max_shared_strings_bytes=self.ingest_max_shared_strings_bytes,
            max_xml_depth=self.ingest_max_xml_depth,
        )
