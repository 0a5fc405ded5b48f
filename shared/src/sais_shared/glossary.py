"""What the codes an operator meets mean, in plain words, and what to do about each: the findings of the
quality view, the warnings of an ingest report, the retention rules and the protocol's coverage gaps.
The CLI shows these words beside the codes; ``docs/glossary.md`` is generated from here
(``sais docs glossary``), so the two never disagree."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DOC = Path("docs/glossary.md")


@dataclass(frozen=True)
class Term:
    code: str
    words: str  # a few words, for a table cell
    meaning: str  # what it is
    action: str  # what a person does about it

    def sentence(self) -> str:
        return f"{self.meaning} {self.action}"


TERMS: dict[str, tuple[str, list[Term]]] = {
    "findings": (
        "Data-quality findings (`sais eligibility quality`)",
        [
            Term(
                "school-not-yet-known",
                "school not yet known",
                "Rolled forward to the target year, the child is past the last year group their school teaches "
                "(an infant or middle school): the child has moved on, and the new school is not known yet. "
                "The child is still in the cohort, with no school; the table counts them at the school they left.",
                "Nothing is wrong with the data. The October census names the new school; until then the SAIS "
                "team sees the child without one.",
            ),
            Term(
                "unknown-sex",
                "sex not known",
                "A programme is for one sex only (HPV was for girls until 2019/20) and the record's sex is "
                "not known, so the child cannot be placed in it.",
                "Correct the sex in the school's record; the next extract brings it in.",
            ),
            Term(
                "out-of-year-group",
                "year group and birth date disagree",
                "The year group the school gives is not the one the date of birth implies for that year "
                "(children born 1 September to 31 August share a year). Held back or moved up a year, or a typing "
                "error.",
                "Check the child's record with the school; the year group the school gives is the one used.",
            ),
            Term(
                "matched-postcode-differs",
                "merged, postcode differs",
                "Two records with the same name and date of birth were taken to be one child, although the "
                "postcodes differ (a family that moved house).",
                "Look at both records; if they are two children, correct one of them at source.",
            ),
            Term(
                "ambiguous-match",
                "could be two children",
                "A record has the same name and date of birth as two or more children already known, so it "
                "was not merged with any of them.",
                "Look at the records; the child is sent as a child of its own until the data say which it is.",
            ),
        ],
    ),
    "warnings": (
        "Rows an ingest report names (`sais ingest file`)",
        [
            Term(
                "row.not-requested",
                "not requested (§6.1)",
                "A valid row for a child in a year group or of a sex the protocol does not request from this "
                "source: it is counted as out of scope and never shared.",
                "Nothing, if the protocol is right; if those children are needed, see `sais protocol check`.",
            ),
            Term(
                "row.repeated",
                "row repeated exactly",
                "The row repeats an earlier row of the same file exactly. It is one child, sent once.",
                "Nothing to do; tell whoever made the file if it happens often.",
            ),
            Term(
                "row.same-child",
                "maybe the same child twice",
                "Two rows share a name and date of birth but differ in other details. They are not merged.",
                "Check whether they are one child (twins never share a forename); correct the file at source if so.",
            ),
        ],
    ),
    "rules": (
        "Retention rules (`sais retention schedule`)",
        [
            Term(
                "isp-11.1-transfer-plus-retention",
                "3 months after transfer (§11.1)",
                "A batch sent to the SAIS team: its data are deleted the protocol's retention period (3 "
                "months) after the transfer.",
                "Nothing to do: `sais retention run` (or the service) deletes it on the day and keeps a certificate.",
            ),
            Term(
                "undelivered-extract-ingest-plus-retention",
                "if never sent: 3 months",
                "Every ingested extract has this entry: if no batch ever carries it, it is deleted the "
                "retention period after it was ingested. An extract a batch carried is listed too; its date "
                "coming deletes nothing the batch still needs, which goes with the batch's own deletion.",
                "Nothing to do.",
            ),
            Term(
                "isp-11.3-party-left",
                "a party left (§11.3)",
                "A party left the protocol: everything it shared is deleted at once.",
                "Confirm with the information-governance lead that the party has left.",
            ),
            Term(
                "unfinished-inbound-after-days",
                "unfinished upstream extract",
                "Records of an extract sent by an upstream system that never completed are deleted after a "
                "few days (SAIS_RETENTION_UNFINISHED_INBOUND_DAYS). Often there is nothing to delete, and so "
                "no certificate.",
                "Ask the upstream system to send the extract again, whole.",
            ),
            Term(
                "extract-refused-or-failed-at-once",
                "refused or failed: at once",
                "An extract that was refused or failed: nothing of it may be delivered, so it is deleted at once.",
                "Correct the file and ingest it again.",
            ),
        ],
    ),
    "gaps": (
        "Coverage gaps (`sais protocol check`)",
        [
            Term(
                "coverage-gap",
                "not requested",
                "A year's programme rules need children whom no source in the protocol requests (a year group "
                "or sex it does not ask for). Those rows are dropped at ingest as out of scope, and the "
                "cohort of that year will be short.",
                "Agree a revision of the protocol that requests them before that year's cohort is relied on; "
                "a year already in the past needs nothing.",
            ),
        ],
    ),
}


def explain(code: str) -> Term | None:
    """The term for a code; a code with a suffix (``unknown-sex:hpv-dose-1``) by its prefix."""
    base = code.split(":", 1)[0]
    for _, terms in TERMS.values():
        for t in terms:
            if t.code == base:
                return t
    return None


def words(code: str) -> str:
    term = explain(code)
    return term.words if term else code


def render() -> str:
    out = [
        "# Glossary",
        "",
        "What the codes in the CLI's screens mean and what to do about each. Generated by "
        "`sais docs glossary` from `sais_shared/glossary.py`, which the CLI uses for the same words.",
        "",
    ]
    for title, terms in TERMS.values():
        out += [f"## {title}", ""]
        for t in terms:
            out += [f"### `{t.code}`: {t.words}", "", t.meaning, "", f"**What to do:** {t.action}", ""]
    return "\n".join(out)
