"""Realistic but entirely fictional LA extracts.

A "world" of schools and children is generated from a seed; the four extracts of an ISP year
(May census, reception admissions, Year 3 transfers, October census) are cut from it, so the
same child appears in several sources as in life (a Year 2 infant in May is a Year 3 transfer
at a junior school). Names include apostrophes, hyphens and accents; DfE numbers are 937xxxx;
postcodes have the right format; dates of birth fit the year groups. Extra columns (UPN,
ethnicity, SEN) are included so minimisation can be seen working.

    python -m tests.synthetic --out data/samples --seed 2017
"""

from __future__ import annotations

import argparse
import csv
import random
from dataclasses import dataclass, replace
from datetime import date, timedelta
from pathlib import Path

from sais_shared.schoolyear import year_index

FORENAMES_F = [
    "Olivia",
    "Amelia",
    "Isla",
    "Ava",
    "Zoë",
    "Chloé",
    "Aoife",
    "Siân",
    "Maryam",
    "Priya",
    "Ruby",
    "Grace",
    "Freya",
    "Anna-Marie",
    "Niamh",
    "Léa",
    "Hannah",
    "Amira",
    "Ella",
    "Sophie",
]
FORENAMES_M = [
    "Oliver",
    "George",
    "Harry",
    "Noah",
    "Jack",
    "Leo",
    "Muhammad",
    "Oscar",
    "Seán",
    "José",
    "Jean-Luc",
    "Rhys",
    "Kacper",
    "Arjun",
    "Tomás",
    "Charlie",
    "Alfie",
    "Ethan",
    "Reuben",
    "Yusuf",
]
SURNAMES = [
    "Smith",
    "Jones",
    "Taylor",
    "O'Brien",
    "Williams",
    "Brown",
    "Davies",
    "Evans",
    "Patel",
    "Khan",
    "Smith-Jones",
    "Nowak",
    "Wilson",
    "Thomas",
    "D'Arcy",
    "MacDonald",
    "Müller",
    "Núñez",
    "Roberts",
    "Wright",
    "Walker",
    "Hughes",
    "Green",
    "Lewis",
    "Ó Súilleabháin",
    "Begum",
    "Kowalski",
    "Hall",
]
STREETS = [
    "High Street",
    "Church Lane",
    "Station Road",
    "Warwick Road",
    "Coventry Road",
    "Mill Lane",
    "Avon Crescent",
    "Kenilworth Road",
    "Priory Walk",
    "Leamington Road",
    "St John's Close",
]
TOWNS = [
    ("Warwick", "CV34"),
    ("Leamington Spa", "CV32"),
    ("Kenilworth", "CV8"),
    ("Rugby", "CV21"),
    ("Nuneaton", "CV11"),
    ("Stratford-upon-Avon", "CV37"),
    ("Bedworth", "CV12"),
    ("Atherstone", "CV9"),
]
INWARD_LETTERS = "ABDEFGHJLNPQRSTUWXYZ"


@dataclass(frozen=True)
class School:
    dfe: str
    name: str
    phase: str  # infant, junior, primary, secondary


@dataclass(frozen=True)
class Child:
    surname: str
    forename: str
    dob: date
    gender: str
    address: tuple[str, ...]
    postcode: str
    upn: str


def _postcode(rng: random.Random, outward: str) -> str:
    return f"{outward} {rng.randint(1, 9)}{rng.choice(INWARD_LETTERS)}{rng.choice(INWARD_LETTERS)}"


def _dob_for(rng: random.Random, year_group: str, academic_start: int) -> date:
    # Born 1 Sep .. 31 Aug of the cohort: NCY = Y - birth_year - 4 - (month>=9)
    first = date(academic_start - year_index(year_group) - 5, 9, 1)
    return first + timedelta(days=rng.randrange(365))


_USED: set[tuple[str, str, date]] = set()


def _child(rng: random.Random, year_group: str, academic_start: int) -> Child:
    """A new child; never the same forename, surname and date of birth as another (twins differ by forename)."""
    while True:
        c = _draw_child(rng, year_group, academic_start)
        if (c.forename, c.surname, c.dob) not in _USED:
            _USED.add((c.forename, c.surname, c.dob))
            return c


# Surnames drawn from; a county-sized world (see write_samples) adds double-barrelled ones, so that
# hundreds of thousands of children never run out of distinct (forename, surname, date of birth).
_SURNAME_POOL: list[str] = SURNAMES


def _draw_child(rng: random.Random, year_group: str, academic_start: int) -> Child:
    gender = rng.choice("MF")
    town, outward = rng.choice(TOWNS)
    return Child(
        surname=rng.choice(_SURNAME_POOL),
        forename=rng.choice(FORENAMES_F if gender == "F" else FORENAMES_M),
        dob=_dob_for(rng, year_group, academic_start),
        gender=gender,
        address=(f"{rng.randint(1, 180)} {rng.choice(STREETS)}", town, "Warwickshire"),
        postcode=_postcode(rng, outward),
        upn=f"A937{rng.randint(10**8, 10**9 - 1)}",
    )


def make_schools(rng: random.Random, scale: int = 1) -> dict[str, list[School]]:
    """9 schools, or 9 × ``scale`` (at most 110) for a county-sized world."""
    names = [
        "St Mary's",
        "Woodloes",
        "Coten End",
        "Emscote",
        "Myton",
        "Brookhurst",
        "Clapham Terrace",
        "Telford",
        "Westgate",
        "Briar Hill",
        "Milverton",
        "Lillington",
        "Whitnash",
        "Bishopton",
    ]
    rng.shuffle(names)
    quarters = ("", "North", "South", "East", "West", "Park", "Hill", "Green", "Vale", "Court")
    pool = (
        names
        if scale == 1
        else [
            " ".join(x for x in (names[i % 14], quarters[i // 14 % 10], str(i // 140 + 1) if i >= 140 else "") if x)
            for i in range(9 * scale)
        ]
    )
    it = iter(range(2000, 2999))
    schools: dict[str, list[School]] = {"infant": [], "junior": [], "primary": [], "secondary": []}
    for phase, count, suffix in (
        ("infant", 2, "Infant School"),
        ("junior", 2, "Junior School"),
        ("primary", 3, "Primary School"),
        ("secondary", 2, "School"),
    ):
        for _ in range(count * scale):
            n = next(it) if phase != "secondary" else 4000 + next(it) % 1000
            schools[phase].append(School(f"937{n:04d}", f"{pool.pop()} {suffix}", phase))
    schools["secondary"][0] = replace(schools["secondary"][0], name="Aylesford School & Sixth Form College")
    return schools


HEADER_MAY = [
    "UPN",
    "Legal Surname",
    "Legal Forename",
    "DOB",
    "Gender",
    "NCyearActual",
    "School DfE Number",
    "School Name",
    "Address Line 1",
    "Address Line 2",
    "Address Line 3",
    "Postcode",
    "Ethnicity",
    "SEN",
]
HEADER_ADM = [
    "Surname",
    "Forename",
    "Date of Birth",
    "Sex",
    "Year Group",
    "DfE No",
    "School",
    "PAON",
    "Street",
    "Town",
    "County",
    "Post Code",
    "Parent Email",
]
HEADER_OCT = [
    "LAESTAB",
    "School Name",
    "NC Year",
    "Surname",
    "First Name",
    "DOB",
    "Gender",
    "Address 1",
    "Address 2",
    "Address 3",
    "Postcode",
    "UPN",
    "FSM",
]


def _yg_text(rng: random.Random, yg: str) -> str:
    if yg == "R":
        return rng.choice(["R", "Reception", "R"])
    return rng.choice([yg, f"Y{yg}", f"Year {yg}", yg])


def write_samples(out: Path, seed: int = 2017, per_year: int = 12, academic_start: int = 2016) -> dict[str, Path]:
    """Write the four extracts of the 2017 ISP cycle; returns source → path."""
    global _SURNAME_POOL
    rng = random.Random(seed)
    _USED.clear()
    out.mkdir(parents=True, exist_ok=True)
    county = per_year > 2000  # a county-sized world: more schools, more surnames (small worlds are unchanged)
    _SURNAME_POOL = SURNAMES if not county else [f"{a}-{b}" if a != b else a for a in SURNAMES for b in SURNAMES]
    schools = make_schools(rng, scale=min(110, max(1, per_year // 1000)) if county else 1)
    paths: dict[str, Path] = {}

    # May census (2016/17): current R, 1, 2, 3 (+ one Year 4 child: out of scope, not forwarded).
    may_rows, transfers = [], []
    for yg in ("R", "1", "2", "3"):
        for _ in range(per_year):
            c = _child(rng, yg, academic_start)
            phase = rng.choice(["infant", "primary"]) if yg in ("R", "1", "2") else rng.choice(["junior", "primary"])
            s = rng.choice(schools[phase])
            may_rows.append((c, yg, s))
            if yg == "2" and phase == "infant":
                transfers.append(c)
    may_rows.append((_child(rng, "4", academic_start), "4", schools["junior"][0]))
    # Twins: same surname, DOB and address, different forenames.
    twin = may_rows[0][0]
    may_rows.append(
        (
            replace(
                twin,
                forename="Evie" if twin.forename != "Evie" else "Mia",
                gender="F",
                upn=f"A937{rng.randint(10**8, 10**9 - 1)}",
            ),
            may_rows[0][1],
            may_rows[0][2],
        )
    )
    p = out / "may-census-2017.csv"
    with open(p, "w", newline="", encoding="utf-8-sig") as f:
        w = csv.writer(f, lineterminator="\r\n")
        w.writerow(HEADER_MAY)
        for c, yg, s in may_rows:
            w.writerow(
                [
                    c.upn,
                    c.surname,
                    c.forename,
                    c.dob.strftime("%d/%m/%Y"),
                    c.gender,
                    _yg_text(rng, yg),
                    s.dfe,
                    s.name,
                    *c.address,
                    c.postcode,
                    rng.choice(["WBRI", "ABAN", "MWBC", "REFU"]),
                    rng.choice(["N", "N", "K"]),
                ]
            )
        # Rows a data officer must fix: each has one precise problem.
        w.writerow(
            [
                "A937000000001",
                "Hughes",
                "Tom",
                "01/01/15",
                "M",
                "2",
                schools["infant"][0].dfe,
                schools["infant"][0].name,
                "3 Mill Lane",
                "Warwick",
                "Warwickshire",
                "CV34 5AB",
                "WBRI",
                "N",
            ]
        )
        w.writerow(
            [
                "A937000000002",
                "Green",
                "Lily",
                "12/03/2012",
                "F",
                "1",
                schools["infant"][0].dfe,
                schools["infant"][0].name,
                "8 Mill Lane",
                "Warwick",
                "Warwickshire",
                "CV34 ZZZ",
                "WBRI",
                "N",
            ]
        )
    paths["summer-census"] = p

    # Reception admissions offers for September 2017 (children now in nursery: reception next year).
    p = out / "admissions-reception-2017.csv"
    with open(p, "w", newline="", encoding="cp1252") as f:  # Excel on Windows
        w = csv.writer(f, lineterminator="\r\n")
        w.writerow(HEADER_ADM)
        for _ in range(per_year * 2):
            c = _child(rng, "R", academic_start + 1)
            s = rng.choice(schools[rng.choice(["infant", "primary"])])
            num, street = c.address[0].split(" ", 1)
            w.writerow(
                [
                    c.surname,
                    c.forename,
                    c.dob.strftime("%d/%m/%Y"),
                    {"M": "Male", "F": "Female"}[c.gender],
                    "Reception",
                    f"{s.dfe[:3]}/{s.dfe[3:]}",
                    s.name,
                    num,
                    street,
                    c.address[1],
                    c.address[2],
                    c.postcode.replace(" ", "").lower(),
                    "parent@example.org",
                ]
            )
    paths["admissions-reception"] = p

    # Year 3 transfers: this year's infant Year 2 children, offered a junior school place.
    p = out / "admissions-year3-transfer-2017.csv"
    with open(p, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(HEADER_ADM)
        for c in transfers:
            s = rng.choice(schools["junior"])
            num, street = c.address[0].split(" ", 1)
            w.writerow(
                [
                    c.surname,
                    c.forename,
                    c.dob.isoformat(),
                    c.gender,
                    "Y3",
                    s.dfe,
                    s.name,
                    num,
                    street,
                    c.address[1],
                    c.address[2],
                    c.postcode,
                    "",
                ]
            )
    paths["admissions-year3-transfer"] = p

    # October census (2017/18): secondary Y7–Y10; only Y8 girls and Y9 are requested.
    p = out / "october-census-2017.csv"
    with open(p, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\r\n")
        w.writerow(HEADER_OCT)
        for yg in ("7", "8", "9", "10"):
            for _ in range(per_year):
                c = _child(rng, yg, academic_start + 1)
                s = rng.choice(schools["secondary"])
                w.writerow(
                    [
                        s.dfe,
                        s.name,
                        yg,
                        c.surname,
                        c.forename,
                        c.dob.strftime("%d/%m/%Y"),
                        c.gender,
                        *c.address,
                        c.postcode,
                        c.upn,
                        rng.choice(["true", "false"]),
                    ]
                )
    paths["autumn-census"] = p
    return paths


REFERENCE_DATES = {
    "summer-census": date(2017, 5, 18),
    "admissions-reception": date(2017, 4, 18),
    "admissions-year3-transfer": date(2017, 4, 18),
    "autumn-census": date(2017, 10, 5),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=2017)
    ap.add_argument("--per-year", type=int, default=12)
    a = ap.parse_args()
    for source, path in write_samples(a.out, a.seed, a.per_year).items():
        print(f"{source:28} {path}")


if __name__ == "__main__":
    main()


__all__ = ["REFERENCE_DATES", "write_samples"]
