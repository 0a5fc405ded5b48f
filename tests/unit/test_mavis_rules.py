"""``check-mavis`` agrees with Mavis: one hand-made file per rule and direction ("Mavis refuses, we refuse";
"Mavis accepts, we accept"), each citing the file and line of Mavis's source it follows
(NHSDigital/manage-vaccinations-in-schools at 5c39c85; the uk_postcode gem at v2.1.8)."""

from datetime import date

import pytest
from sais_delivery.domain import mavis_rules as rules
from sais_delivery.domain.mavis_rules import Team, check_file

pytestmark = pytest.mark.unit

COLUMNS = ["CHILD_FIRST_NAME", "CHILD_LAST_NAME", "CHILD_DATE_OF_BIRTH", "CHILD_YEAR_GROUP", "CHILD_GENDER",
           "CHILD_NHS_NUMBER", "CHILD_POSTCODE", "CHILD_SCHOOL_URN", "PARENT_1_NAME", "PARENT_1_RELATIONSHIP",
           "PARENT_1_EMAIL", "PARENT_1_PHONE"]  # fmt: skip
GOOD = {"CHILD_FIRST_NAME": "Ada", "CHILD_LAST_NAME": "Lovelace", "CHILD_DATE_OF_BIRTH": "2010-03-04",
        "CHILD_POSTCODE": "CV34 4RL", "CHILD_SCHOOL_URN": "700002"}  # fmt: skip
YEAR = 2017  # 2017/18: a child born 2010-03-04 is in Year 2
TEAM = Team(schools=frozenset({"700002", "700003", "700010A", "700010B"}))


def line(sep=",", **over) -> str:
    values = {**GOOD, **over}
    return sep.join(values.get(c, "") for c in COLUMNS)


def csv_of(*rows: str, header: str | None = None, eol="\r\n") -> bytes:
    return eol.join([header or ",".join(COLUMNS), *rows, ""]).encode()


def check(content: bytes, team: Team = TEAM, year: int = YEAR):
    return check_file(content, academic_year=year, team=team)


def problems(content: bytes, **kw) -> list[tuple[int, str, str]]:
    return check(content, **kw).problems


def refused(content: bytes, **kw) -> bool:
    return not check(content, **kw).ok


def test_a_good_file_passes():
    c = check(csv_of(line(), line(CHILD_FIRST_NAME="Grace", CHILD_LAST_NAME="Hopper")))
    assert c.ok and c.rows == 2


# --- the file as a whole -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        csv_of(line(CHILD_LAST_NAME='O"Hare')),  # a quote inside an unquoted field
        csv_of(line(CHILD_LAST_NAME='"Lee"x')),  # text after a closing quote
        csv_of(line(CHILD_LAST_NAME='"Lee')),  # an unclosed quote
        (",".join(COLUMNS) + "\r\n" + line() + "\n" + line() + "\r\n").encode(),  # mixed line endings
    ],
    ids=["stray-quote", "after-quote", "unclosed", "mixed-endings"],
)
def test_malformed_csv_refuses_the_file(content):
    """app/models/import/csv_data.rb:22 (CSV::MalformedCSVError → malformed), csv_importable.rb csv_is_valid."""
    [(_, col, why)] = problems(content)
    assert col == "" and "not a valid CSV" in why


def test_quoted_fields_with_commas_quotes_and_line_breaks_are_read():
    """The csv gem reads RFC 4180 quoting (app/lib/csv_parser.rb:8)."""
    content = csv_of(line(CHILD_LAST_NAME='"O\'Hare"'), line(CHILD_FIRST_NAME='"Grace"', CHILD_LAST_NAME='"Hop""per"'))
    c = check(content)
    assert [p for p in c.problems if "CHILD_LAST_NAME" in p[1]] == [
        (3, "CHILD_LAST_NAME", "includes invalid character(s)")
    ]


def test_lf_only_and_cr_only_files_are_read():
    """The csv gem detects the row separator from the data (csv_parser.rb:8, no row_sep given)."""
    assert check(csv_of(line(), eol="\n")).ok and check(csv_of(line(), eol="\r")).ok


def test_a_header_only_file_is_refused_and_so_is_an_empty_one():
    """csv_importable.rb:175 csv_has_records; a helper row alone counts as no records."""
    assert refused(csv_of()) and refused(b"") and refused(csv_of("Required," + "," * (len(COLUMNS) - 2)))


def test_headers_are_read_as_mavis_normalises_them():
    """csv_parser.rb:120 header_converters: case, spaces and hyphens do not matter; unknown columns are
    ignored; a duplicated column uses the first."""
    header = "child first name,Child-Last-Name,CHILD_DATE_OF_BIRTH,child_postcode,Child School URN,SCHOOL,NOTES"
    assert check(csv_of("Ada,Lee,2010-03-04,CV34 4RL,700002,x,y", header=header)).ok
    dup = "CHILD_FIRST_NAME,CHILD_LAST_NAME,CHILD_LAST_NAME,CHILD_DATE_OF_BIRTH,CHILD_POSTCODE,CHILD_SCHOOL_URN"
    assert check(csv_of("Ada,Lee,J0hn!,2010-03-04,CV34 4RL,700002", header=dup)).ok  # the second is never read
    assert refused(csv_of("Ada,J0hn!,Lee,2010-03-04,CV34 4RL,700002", header=dup))


def test_a_missing_required_column_fails_every_row():
    """patient_import_row.rb:209 and cohort_import_row.rb:36/49: "<code>COLUMN</code> is required"."""
    header = "CHILD_FIRST_NAME,CHILD_LAST_NAME,CHILD_DATE_OF_BIRTH,CHILD_POSTCODE"
    assert problems(csv_of("Ada,Lee,2010-03-04,CV34 4RL", header=header)) == [(2, "", "CHILD_SCHOOL_URN is required")]


def test_windows_1252_and_a_bom_are_read():
    """csv_parser.rb:98 detect_encoding (ICU finds Windows-1252) and csv_importable.rb csv= (BOM)."""
    assert check(csv_of(line(CHILD_FIRST_NAME="Zoë")).decode().encode("cp1252")).ok
    assert check(b"\xef\xbb\xbf" + csv_of(line(CHILD_FIRST_NAME="Zoë"))).ok


def test_bytes_no_encoding_reads_refuse_the_file():
    assert refused(csv_of(line()).replace(b"Ada", b"A\x81da"))  # 0x81: undefined in Windows-1252, not UTF-8


def test_the_helper_row_is_skipped_and_counted_in_row_numbers():
    """csv_data.rb:36 has_instruction_row?; csv_importable.rb:191 row_offset 3 with it."""
    helper = "Required," + ",".join("Optional" for _ in COLUMNS[1:])
    c = check(csv_of(helper, line(), line(CHILD_POSTCODE="nope")))
    assert c.rows == 2 and c.problems == [(4, "CHILD_POSTCODE", "should be a postcode, like SW1A 1AA")]


def test_trailing_blank_rows_are_dropped_but_a_blank_row_in_the_middle_fails():
    """csv_data.rb:42 remove_trailing_blank_rows; a middle row of empty cells is a row with nothing in it."""
    blank = "," * (len(COLUMNS) - 1)
    assert check(csv_of(line(), blank, blank)).ok
    assert refused(csv_of(line(), blank, line()))


def test_an_empty_line_is_skipped_and_row_numbers_follow_mavis():
    """csv_parser.rb:16 skip_blanks: the csv gem drops an empty line, so Mavis's row numbers after it are
    one less than the spreadsheet's."""
    content = csv_of(line(), "", line(CHILD_POSTCODE="nope"))
    assert problems(content) == [(3, "CHILD_POSTCODE", "should be a postcode, like SW1A 1AA")]


def test_more_than_20000_rows_refuse_the_file():
    """csv_importable.rb:6 MAX_CSV_ROWS and csv_is_not_too_large."""
    assert refused(csv_of(*[line()] * 20_001))
    assert not any("at most" in p[2] for p in problems(csv_of(*[line()] * 3)))


def test_extra_and_missing_cells_are_not_errors():
    """A CSV::Row ignores cells past the header and reads missing ones as nil."""
    assert check(csv_of(line() + ",extra,cells")).ok
    short = "CHILD_FIRST_NAME,CHILD_LAST_NAME,CHILD_DATE_OF_BIRTH,CHILD_POSTCODE,CHILD_SCHOOL_URN,CHILD_GENDER"
    assert check(csv_of("Ada,Lee,2010-03-04,CV34 4RL,700002", header=short)).ok


# --- names (app/validators/name_validator.rb:4, patient_import_row.rb:228) ---------------------------------


@pytest.mark.parametrize("name", ["Nguyễn", "Ștefan", "Țuca", "Иван", "Ʃara", "Ann–Marie", "Jose\u0301", "Ann;"])
def test_names_mavis_refuses(name):
    assert problems(csv_of(line(CHILD_FIRST_NAME=name))) == [(2, "CHILD_FIRST_NAME", "includes invalid character(s)")]


@pytest.mark.parametrize("name", ["St. John", "J.", "Henry 8", "'t Hooft", "O’Neil", "Ŵyn", "Łukasz", "Zoë", "Mc_Kay"])
def test_names_mavis_accepts(name):
    assert check(csv_of(line(CHILD_LAST_NAME=name))).ok


def test_a_required_name_that_is_empty_or_too_long():
    """patient_import_row.rb:229-236: nil, blank (a Field of white space Mavis removes), > 300 characters."""
    assert problems(csv_of(line(CHILD_FIRST_NAME=""))) == [(2, "", "CHILD_FIRST_NAME is required")]
    assert problems(csv_of(line(CHILD_FIRST_NAME="\u00a0"))) == [(2, "CHILD_FIRST_NAME", "Enter a first name.")]
    [(_, _, why)] = problems(csv_of(line(CHILD_LAST_NAME="a" * 301)))
    assert why == "is greater than 300 characters long"
    assert check(csv_of(line(CHILD_LAST_NAME="a" * 300))).ok


# --- dates and year groups (csv_parser.rb:86, patient_import_row.rb:207, 405) ---------------------------


@pytest.mark.parametrize("dob", ["20100304", "2010-03-04", "04/03/2010", "4/3/2010", "2010-3-4"])
def test_dates_mavis_reads(dob):
    assert check(csv_of(line(CHILD_DATE_OF_BIRTH=dob))).ok


@pytest.mark.parametrize("dob", ["2010/03/04", "04-03-2010", "31/02/2010", "4 March 2010", "04/03/10"])
def test_dates_mavis_cannot_read(dob):
    assert (2, "CHILD_DATE_OF_BIRTH", "should be formatted as YYYY-MM-DD") in problems(
        csv_of(line(CHILD_DATE_OF_BIRTH=dob))
    )


def test_born_before_2000_is_refused():
    """patient_import_row.rb:214."""
    assert (2, "CHILD_DATE_OF_BIRTH", "is too old to still be in school") in problems(
        csv_of(line(CHILD_DATE_OF_BIRTH="1999-12-31", CHILD_YEAR_GROUP="11"))
    )


@pytest.mark.parametrize(("value", "ok"), [("0", True), ("11", True), ("7", True), ("010", True), ("08", False),
                                           ("R", False), ("Year 3", False), ("12", False), ("-1", False)])  # fmt: skip
def test_year_groups_as_ruby_reads_them_against_the_team(value, ok):
    """csv_parser.rb:33 to_i is Integer(): "08" is a bad octal, "010" is 8; patient_import_row.rb:405 checks
    the year group against the team's (0-11 here)."""
    assert check(csv_of(line(CHILD_YEAR_GROUP=value))).ok is ok


def test_years_12_and_13_pass_only_for_a_team_that_has_them():
    """team.rb year_groups: the year groups of the team's programmes."""
    sixth = csv_of(line(CHILD_YEAR_GROUP="12"))
    assert refused(sixth) and check(sixth, team=Team(TEAM.schools, frozenset(range(0, 14)))).ok


def test_without_a_year_group_the_date_of_birth_decides_for_the_import_year():
    """patient_import_row.rb:167 birth_academic_year_value: from the date of birth; 2017/18 makes a child
    born 2012-11-20 a Reception child, 2016/17 makes them a year too young for the team."""
    row = csv_of(line(CHILD_DATE_OF_BIRTH="2012-11-20"))
    assert check(row, year=2017).ok
    assert problems(row, year=2016) == [(2, "CHILD_DATE_OF_BIRTH", "is not part of this programme")]


def test_the_import_year_turns_on_1_august():
    """app/lib/academic_year.rb:9 pending, with settings.yml's 31 days of preparation before 1 September."""
    assert rules.import_academic_year(date(2017, 7, 31)) == 2016
    assert rules.import_academic_year(date(2017, 8, 1)) == 2017
    assert rules.import_academic_year(date(2017, 12, 12)) == 2017
    assert rules.import_academic_year(date(2018, 7, 31)) == 2017


# --- postcodes (cohort_import_row.rb:35, postcode_validator.rb, uk_postcode geographic_postcode.rb) ---------


@pytest.mark.parametrize("pc", ["CV34 4XC", "SW1A 1AI", "QA1 1AA", "ABC 1AA", "BFPO 123", "CV34", "zz99 3cz"])
def test_postcodes_mavis_refuses(pc):
    assert problems(csv_of(line(CHILD_POSTCODE=pc))) == [(2, "CHILD_POSTCODE", "should be a postcode, like SW1A 1AA")]


@pytest.mark.parametrize("pc", ["cv34 4rl", "CV344RL", "GIR 0AA", "ZZ99 3VZ", "ZZ99 3WZ", "ZZ99 3CZ", "W1A 0AX",
                                "EC1A 1BB", "SO1O 1AA"])  # fmt: skip
def test_postcodes_mavis_accepts(pc):
    assert check(csv_of(line(CHILD_POSTCODE=pc))).ok


def test_a_postcode_as_mavis_stores_it():
    assert rules.mavis_postcode("so1o 1aa") == "SO10 1AA" and rules.mavis_postcode("cv344rl") == "CV34 4RL"


# --- schools (cohort_import_row.rb:48-77) -------------------------------------------------------------------


def test_a_school_outside_the_team_is_refused_and_the_generic_urns_pass():
    assert problems(csv_of(line(CHILD_SCHOOL_URN="123456"))) == [
        (2, "CHILD_SCHOOL_URN", "The school URN is not recognised (not one of the team's schools).")
    ]
    assert check(csv_of(line(CHILD_SCHOOL_URN="888888"), line(CHILD_SCHOOL_URN="999999", CHILD_FIRST_NAME="B"))).ok


def test_a_school_split_into_sites_needs_its_site_letter():
    """cohort_import_row.rb:56: the plain URN of a split school is refused; URN + site passes."""
    [(_, _, why)] = problems(csv_of(line(CHILD_SCHOOL_URN="700010")))
    assert why == "The URN has been split into sites. Use 700010A or 700010B instead."
    assert check(csv_of(line(CHILD_SCHOOL_URN="700010B"))).ok


def test_without_the_team_s_list_the_register_decides():
    team = Team(known_urns=frozenset({"700002"}))
    assert check(csv_of(line()), team=team).ok
    assert refused(csv_of(line(CHILD_SCHOOL_URN="700099")), team=team)


# --- NHS numbers, gender, parents (patient_import_row.rb:247, 307, 317-355; nhs_number_validator.rb) --------


def test_nhs_numbers_by_modulus_11_and_once_per_file():
    assert check(csv_of(line(CHILD_NHS_NUMBER="943 476 5919"))).ok
    assert refused(csv_of(line(CHILD_NHS_NUMBER="9434765918")))  # wrong check digit
    assert refused(csv_of(line(CHILD_NHS_NUMBER="94347659")))
    twice = problems(
        csv_of(line(CHILD_NHS_NUMBER="9434765919"), line(CHILD_NHS_NUMBER="9434765919", CHILD_FIRST_NAME="B"))
    )
    assert [(r, why) for r, _, why in twice] == [(2, "The same NHS number appears multiple times in this file."),
                                                 (3, "The same NHS number appears multiple times in this file.")]  # fmt: skip


@pytest.mark.parametrize(("gender", "ok"), [("Male", True), ("FEMALE", True), ("not known", True), ("not_known", True),
                                            ("Not specified", True), ("M", False), ("Boy", False)])  # fmt: skip
def test_gender_codes(gender, ok):
    assert check(csv_of(line(CHILD_GENDER=gender))).ok is ok


@pytest.mark.parametrize(
    ("over", "ok"),
    [
        ({"PARENT_1_NAME": "Jo Lee", "PARENT_1_EMAIL": "jo.lee@example.com", "PARENT_1_PHONE": "01926 412345",
          "PARENT_1_RELATIONSHIP": "Mum"}, True),
        ({"PARENT_1_EMAIL": "jo..lee@example.com"}, False),
        ({"PARENT_1_EMAIL": "jo@localhost"}, False),
        ({"PARENT_1_PHONE": "12345"}, False),
        ({"PARENT_1_PHONE": "07700 900982"}, False),  # Ofcom's drama range: Mavis allows it in development only
        ({"PARENT_1_NAME": "Иван"}, False),
        ({"PARENT_1_RELATIONSHIP": "Mum"}, False),  # no parent: the relationship must be blank
    ],
)  # fmt: skip
def test_parent_details(over, ok):
    assert check(csv_of(line(**over))).ok is ok


def test_the_same_child_twice_fails_after_tracing_but_twins_do_not():
    """patient_import.rb:79 validate_changeset_uniqueness!: two rows that trace to one child fail the import."""
    assert refused(csv_of(line(), line(CHILD_FIRST_NAME="ADA")))
    assert check(csv_of(line(), line(CHILD_FIRST_NAME="Ava"))).ok


def test_problems_never_repeat_the_value():
    for p in problems(csv_of(line(CHILD_FIRST_NAME="Иван", CHILD_POSTCODE="QQ1 1QQ", CHILD_SCHOOL_URN="123456"))):
        assert "Иван" not in p[2] and "QQ1" not in p[2] and "123456" not in p[2]
