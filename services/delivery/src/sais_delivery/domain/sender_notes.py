"""What the person sending must be told about a batch that went: the cohort's completeness under the
protocol, the rows left out of the Mavis files, and when those files may be uploaded."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def coverage_warnings(academic_year: str, protocol_version: str, gaps: list[str] | None) -> list[str]:
    if gaps is None:
        return [
            f"eligibility has not reported its coverage check of {academic_year} under protocol "
            f"v{protocol_version}: the cohort may be incomplete (sais protocol check)"
        ]
    return [
        f"cohort incomplete under protocol v{protocol_version}: {g} (the protocol does not request these "
        "children; a revision that does is needed)"
        for g in gaps
    ]


def mavis_warnings(left_out: Iterable[dict[str, Any]]) -> list[str]:
    """One line per (programme, school, reason) of rows left out of the Mavis files."""
    return [
        f"{r['rows']} {r['programme']} row(s) of school {r['school_dfe'] or '(not yet known)'} left out of the Mavis "
        f"file: {r['reason']} (they are in the programme file; see the manifest)"
        for r in left_out
    ]


def mavis_upload_note(academic_year: str, upload_from: str) -> str:
    """When the Mavis files may be uploaded (year groups are read against the academic year of the day of
    upload)."""
    return (
        f"the Mavis files are for {academic_year}: upload them on or after {upload_from} (Mavis reads year groups "
        f"against the academic year of the upload day; from 1 August that is the coming year; choose "
        f"{academic_year} if Mavis asks)"
    )


def mavis_notes(reports: Iterable[dict[str, Any] | None]) -> list[str]:
    """The notes of the parts' Mavis reports (None: a part without Mavis files)."""
    sent = [r for r in reports if r]
    notes = mavis_warnings(x for r in sent for x in r["left_out"])
    if sent:
        notes.append(mavis_upload_note(sent[-1]["academic_year"], sent[-1]["upload_from"]))
    return notes
