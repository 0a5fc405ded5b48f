from datetime import date

import pytest
from sais_ingest.domain.headers import canonical_header, map_headers
from sais_ingest.domain.model import CleanRow, OutOfScope, Rejected
from sais_ingest.domain.validation import parse_date, parse_year_group, validate_row
from sais_shared.protocol import load_protocol

pytestmark = pytest.mark.unit
PROTOCOL = load_protocol()


@pytest.mark.parametrize(
    ("header", "field"),
    [
        ("School DfE Number", "school_dfe"),
        ("DfE No", "school_dfe"),
        ("LAESTAB", "school_dfe"),
        ("Legal Surname", "surname"),
        ("LegalSurname", "surname"),
        ("  legal   forename ", "forename"),
        ("First Name", "forename"),
        ("DOB", "date_of_birth"),
        ("Date of Birth", "date_of_birth"),
        ("Sex", "gender"),
        ("NC Year", "year_group"),
        ("NCyearActual", "year_group"),
        ("Year Group", "year_group"),
        ("Address Line 1", "address_1"),
        ("PAON", "paon"),
        ("Post Code", "postcode"),
        ("\ufeffUPN", None),
    ],
)
def test_header_aliases(header, field):
    mapping, dropped, _ = map_headers([header])
    assert mapping.get(0) == field
    assert (dropped == [header.strip()]) == (field is None)


def test_canonical_header_splits_camel_case_but_keeps_dfe():
    assert canonical_header("NCyearActual") == "ncyear actual"
    assert canonical_header("School_DfE-Number") == "school dfe number"


def test_missing_required_columns_are_named():
    _, _, missing = map_headers(["Surname", "Forename"])
    assert "school_dfe" in missing and "postcode" in missing and "address_1 (or BS7666 PAON/Street)" in missing


@pytest.mark.parametrize(
    ("raw", "yg"),
    [
        ("R", "R"),
        ("Reception", "R"),
        ("rec", "R"),
        ("Y3", "3"),
        ("Year 3", "3"),
        ("3", "3"),
        ("03", "3"),
        ("year 11", "11"),
        ("N2", "N2"),
        ("Y15", None),
        ("X", None),
        ("", None),
        ("Year", None),
    ],
)
def test_year_group_spellings(raw, yg):
    assert parse_year_group(raw) == yg


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("18/05/2012", date(2012, 5, 18)),
        ("1/9/2012", date(2012, 9, 1)),
        ("2012-05-18", date(2012, 5, 18)),
        ("2012-05-18 00:00:00", date(2012, 5, 18)),
    ],
)
def test_dates_accepted(raw, expected):
    assert parse_date(raw) == (expected, None)


@pytest.mark.parametrize("raw", ["01/01/15", "01/01/0015", "15-01-01", "31/02/2012", "2012/13/01", "soon", ""])
def test_dates_refused_never_guessed(raw):
    d, why = parse_date(raw)
    assert d is None and why


def _row(**over) -> dict[str, str]:
    base = {
        "school_dfe": "937/2001",
        "school_name": "Emscote Infant School",
        "year_group": "Year 2",
        "surname": "O'Brien-Núñez",
        "forename": "Zoë",
        "date_of_birth": "15/03/2010",
        "gender": "Female",
        "address_1": "1 High Street",
        "address_2": "Warwick",
        "postcode": "cv34 4rl",
    }
    return {**base, **over}


def _validate(row, source="summer-census", ref=date(2017, 5, 18)):
    return validate_row(row, 2, source=PROTOCOL.source(source), protocol=PROTOCOL, reference_date=ref)


def test_valid_row_is_cleaned():
    out = _validate(_row())
    assert isinstance(out, CleanRow)
    assert (out.school_dfe, out.year_group, out.gender, out.postcode) == ("9372001", "2", "F", "CV34 4RL")
    assert out.address_lines == ["1 High Street", "Warwick"]
    assert out.warnings == []


@pytest.mark.parametrize(
    ("over", "field", "code"),
    [
        ({"school_dfe": "93720011"}, "school_dfe", "school_dfe.format"),
        ({"school_dfe": "8882001"}, "school_dfe", "school_dfe.la"),
        ({"surname": ""}, "surname", "surname.missing"),
        ({"forename": '=HYPERLINK("x")'}, "forename", "forename.characters"),
        ({"forename": "J0hn"}, "forename", "forename.characters"),
        ({"date_of_birth": "01/01/15"}, "date_of_birth", "date_of_birth.format"),
        ({"date_of_birth": "01/01/1990"}, "date_of_birth", "date_of_birth.school_age"),
        ({"gender": "Q"}, "gender", "gender.format"),
        ({"postcode": "CV34 ZZZ"}, "postcode", "postcode.format"),
        ({"address_1": "", "address_2": ""}, "address_1", "address.missing"),
        ({"year_group": "Y99"}, "year_group", "year_group.format"),
    ],
)
def test_each_rule_rejects_with_field_and_reason_without_the_value(over, field, code):
    out = _validate(_row(**over))
    assert isinstance(out, Rejected)
    assert (field, code) in {(p.field, p.code) for p in out.problems}
    value = next(iter(over.values()))
    if value:
        assert all(value not in p.reason for p in out.problems)


def test_out_of_scope_year_group_and_sex_are_not_errors():
    assert isinstance(_validate(_row(year_group="4", date_of_birth="15/03/2008")), OutOfScope)
    boy_y8 = _row(year_group="8", gender="M", date_of_birth="15/03/2005")
    assert isinstance(_validate(boy_y8, "autumn-census", date(2017, 10, 5)), OutOfScope)
    girl_y8 = _row(year_group="8", gender="F", date_of_birth="15/03/2005")
    assert isinstance(_validate(girl_y8, "autumn-census", date(2017, 10, 5)), CleanRow)


def test_unknown_gender_is_a_warning_not_a_rejection():
    out = _validate(_row(gender=""))
    assert isinstance(out, CleanRow) and out.gender == "U"
    assert [w.code for w in out.warnings] == ["gender.unknown"]


def test_year_group_inconsistent_with_dob_is_a_warning():
    out = _validate(_row(year_group="1"))  # born 2010 → Year 2 in 2016/17, Year 3 in 2017/18
    assert isinstance(out, CleanRow)
    assert "year_group.out_of_year_group" in [w.code for w in out.warnings]


def test_admissions_offer_is_for_the_coming_september():
    # A reception offer made in April 2017 for a child born 2012/13 is Reception in 2017/18.
    out = _validate(_row(year_group="Reception", date_of_birth="01/01/2013"), "admissions-reception", date(2017, 4, 18))
    assert isinstance(out, CleanRow) and out.warnings == []


def test_bs7666_address_fields_become_lines():
    row = _row(address_1="", address_2="", saon="Flat 2", paon="14", street="Mill Lane", town="Warwick")
    out = _validate(row)
    assert isinstance(out, CleanRow)
    assert out.address_lines == ["Flat 2", "14 Mill Lane", "Warwick"]


def test_a_file_without_a_header_row_is_refused_without_echoing_the_childs_details():
    from sais_ingest.domain.extract import header_mapping
    from sais_ingest.domain.model import ExtractFileError

    first_row = [
        "A937351242975",
        "Ó Súilleabháin",
        "Harry",
        "15/01/2012",
        "M",
        "R",
        "9372006",
        "Woodloes Primary School",
        "63 Station Road",
        "Warwick",
        "Warwickshire",
        "CV34 4FL",
    ]
    with pytest.raises(ExtractFileError) as exc:
        header_mapping(first_row)
    message = str(exc.value)
    assert "12 column(s)" in message and "header row" in message
    assert not any(v in message for v in ("Harry", "Súilleabháin", "15/01/2012", "Station", "CV34", "A937"))


def test_ingest_keeps_the_children_mavis_accepts():
    """Pseudo-postcodes (with no address), forces addresses, a leading apostrophe, 937-2001 (issue 25)."""
    nfa = _validate(_row(postcode="zz99 3vz", address_1="", address_2=""))
    assert isinstance(nfa, CleanRow) and nfa.postcode == "ZZ99 3VZ" and nfa.address_lines == []
    assert "postcode.pseudo" in [w.code for w in nfa.warnings]
    forces = _validate(_row(postcode="BFPO 123"))
    assert isinstance(forces, CleanRow) and forces.postcode == "BFPO 123"
    assert "postcode.bfpo" in [w.code for w in forces.warnings]
    assert isinstance(_validate(_row(surname="'t Hooft", school_dfe="937-2001")), CleanRow)
    assert not isinstance(_validate(_row(postcode="QQ99 9QQ", address_1="", address_2="")), CleanRow)
