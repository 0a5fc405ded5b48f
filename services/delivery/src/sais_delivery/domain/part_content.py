"""What one part's message holds, built row by row as its members stream past: the programme files,
the Mavis cohort-import files and the rows left out of them, the sources, the field definitions and the
manifest, the subject and the body. Pure: the members come opened, the register and coverage read."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sais_shared.protocol import Protocol

from . import mavis
from .batch import Batch, Part
from .member import Member
from .parts import part_suffix
from .render import RenderedFile, Row, body_text, field_definitions, keyed_line, manifest, programme_file_from_lines


@dataclass
class PartContent:
    """``upload``: the Mavis import the part's files are for (None: the window sends none)."""

    upload: mavis.Upload | None
    register: dict[str, tuple[str, str]] = field(default_factory=dict)  # DfE → (URN, status)
    by_programme: dict[str, list[bytes]] = field(default_factory=dict)
    for_mavis: dict[str, list[bytes]] = field(default_factory=dict)
    left_out: dict[tuple[str, str, str], int] = field(default_factory=dict)  # (programme, school, why) → rows
    sources: dict[tuple[str, date], set[str]] = field(default_factory=dict)  # (source, reference date) → extracts

    def add(self, m: Member, row: Row) -> None:
        self.by_programme.setdefault(m.programme_key, []).append(keyed_line(row))
        self.sources.setdefault((m.source, m.reference_date), set()).update(str(x) for x in m.extract_ids)
        if self.upload is None:
            return
        v = mavis.verdict(row, self.register, self.upload)
        if v.line is not None:
            self.for_mavis.setdefault(m.programme_key, []).append(v.line)
        else:
            self._leave_out(m.programme_key, m.school_dfe, v.reason or "")

    def _leave_out(self, programme: str, school: str, why: str) -> None:
        k = (programme, school, why)
        self.left_out[k] = self.left_out.get(k, 0) + 1

    def counts(self) -> dict[str, int]:
        return {key: len(lines) for key, lines in sorted(self.by_programme.items())}

    def cohort_files(self, stem_suffix: str) -> list[RenderedFile]:
        """The programme files, then the Mavis files; the lines they were made of are let go (take counts()
        first)."""
        files = [
            programme_file_from_lines(f"{key}-{stem_suffix}.csv", lines)
            for key, lines in sorted(self.by_programme.items())
        ]
        self.by_programme = {}
        if self.upload is None:
            return files
        for key, lines in sorted(self.for_mavis.items()):
            written, repeated = mavis.files_from_lines(f"mavis-cohort-{key}-{stem_suffix}", lines, self.upload.max_rows)
            files += [RenderedFile(name, content, rows) for name, content, rows in written]
            for school in repeated:
                self._leave_out(key, school, mavis.SAME_CHILD)
        self.for_mavis = {}
        return files

    def mavis_report(self, files: list[RenderedFile], sent: date) -> dict[str, Any] | None:
        if self.upload is None:
            return None
        first, last = self.upload.upload_window(sent)
        team = self.upload.team
        return {
            "academic_year": self.upload.label,
            "upload_from": first.isoformat(),
            "upload_until": last.isoformat(),
            "team": {
                "schools": sorted(team.schools) if team.schools is not None else None,
                "schools_checked_against": "the SAIS team's schools (protocol)"
                if team.schools is not None
                else "the schools register (GIAS): the protocol names no team schools",
                "year_groups": sorted(team.year_groups),
            },
            "max_rows_per_file": self.upload.max_rows,
            "rows": sum(f.rows for f in files if f.name.startswith("mavis-")),
            "left_out": [
                {"programme": k, "school_dfe": school, "reason": why, "rows": rows}
                for (k, school, why), rows in sorted(self.left_out.items())
            ],
        }

    def source_list(self) -> list[dict[str, Any]]:
        return [
            {"source": s, "reference_date": d.isoformat(), "extracts": sorted(x)}
            for (s, d), x in sorted(self.sources.items())
        ]


@dataclass(frozen=True)
class PartMessage:
    """A part, ready to be signed and encrypted."""

    subject: str
    body: str
    files: list[RenderedFile]
    counts: dict[str, int]
    mavis: dict[str, Any] | None

    def meta_files(self) -> list[dict[str, Any]]:
        return [{"name": f.name, "sha256": f.sha256, "rows": f.rows} for f in self.files]


def subject_of(protocol: Protocol, b: Batch, part_no: int) -> str:
    n = b.part_count
    return (
        f"[{protocol.protective_marking}] School immunisation cohort data {b.academic_year} "
        f"({b.window}) batch {str(b.batch_id)[:8]}" + (f" part {part_no} of {n}" if n > 1 else "")
    )


def compose(
    protocol: Protocol, b: Batch, part: Part, content: PartContent, gaps: list[str] | None, now: datetime
) -> PartMessage:
    """Every file of the part, its manifest last (which lists them all), and the message text around them."""
    stem_suffix = b.academic_year.replace("/", "-") + part_suffix(part.part_no, b.part_count)
    counts = content.counts()
    files = content.cohort_files(stem_suffix)
    report = content.mavis_report(files, now.date())
    files.append(field_definitions(protocol))
    files.append(
        manifest(
            batch_id=str(b.batch_id),
            protocol=protocol,
            window=b.window,
            academic_year=b.academic_year,
            files=files,
            sources=content.source_list(),
            counts=counts,
            delete_by=b.delete_by,
            prepared_at=b.prepared_at.isoformat(),
            replaces_batch=str(b.replaces_batch) if b.replaces_batch else None,
            part={
                "number": part.part_no,
                "of": b.part_count,
                "message_id": part.message_id,
                "batch_counts": b.counts,
                "schools": part.schools,
            },
            coverage_gaps=gaps,
            mavis=report,
        )
    )
    body = body_text(
        protocol,
        window=b.window,
        academic_year=b.academic_year,
        counts=counts,
        delete_by=b.delete_by,
        batch_id=str(b.batch_id),
        part_no=part.part_no,
        part_count=b.part_count,
    )
    return PartMessage(subject_of(protocol, b, part.part_no), body, files, counts, report)
