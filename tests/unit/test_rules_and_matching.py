import uuid
from datetime import UTC, date, datetime

import pytest
from sais_eligibility.adapters.rules_files import load_all_rules
from sais_eligibility.domain.model import (
    Candidate,
    Record,
    match,
    memberships,
    unknown_sex_findings,
)
from sais_eligibility.domain.rules import RulesError, parse_rules

pytestmark = pytest.mark.unit
RULES = load_all_rules()


def test_rules_exist_for_every_year_2017_to_2027():
    assert sorted(RULES) == [f"{y}/{(y + 1) % 100:02d}" for y in range(2017, 2027)]


def test_2017_18_is_exactly_the_isp():
    r = {p.key: p for p in RULES["2017/18"].programmes}
    assert r["flu"].year_groups == ["R", "1", "2", "3", "4"]
    assert (r["hpv-dose-1"].year_groups, r["hpv-dose-1"].sexes) == (["8"], ["F"])
    assert (r["hpv-dose-2"].year_groups, r["hpv-dose-2"].sexes) == (["9"], ["F"])
    assert r["td-ipv"].year_groups == r["menacwy"].year_groups == ["9"]


def test_later_years_follow_the_facts():
    assert "M" in {p.key: p for p in RULES["2019/20"].programmes}["hpv-dose-1"].sexes
    keys_2023 = {p.key for p in RULES["2023/24"].programmes}
    assert "hpv-dose-1" in keys_2023 and "hpv-dose-2" not in keys_2023
    assert {p.key: p for p in RULES["2021/22"].programmes}["flu"].year_groups[-1] == "11"


PRIMARY = ["R", "1", "2", "3", "4", "5", "6"]
TO_Y11 = [*PRIMARY, "7", "8", "9", "10", "11"]
ALL, GIRLS = ["M", "F", "U"], ["F"]
# Each year as docs/domain.md §4 states it, from the public sources: programme → (year groups, sexes).
EXPECTED = {
    "2017/18": {"flu": (PRIMARY[:5], ALL), "hpv-dose-1": (["8"], GIRLS), "hpv-dose-2": (["9"], GIRLS)},
    "2018/19": {"flu": (PRIMARY[:6], ALL), "hpv-dose-1": (["8"], GIRLS), "hpv-dose-2": (["9"], GIRLS)},
    "2019/20": {"flu": (PRIMARY, ALL), "hpv-dose-1": (["8"], ALL), "hpv-dose-2": (["9"], GIRLS)},
    "2020/21": {"flu": ([*PRIMARY, "7"], ALL), "hpv-dose-1": (["8"], ALL), "hpv-dose-2": (["9"], ALL)},
    "2021/22": {"flu": (TO_Y11, ALL), "hpv-dose-1": (["8"], ALL), "hpv-dose-2": (["9"], ALL)},
    "2022/23": {"flu": ([*PRIMARY, "7", "8", "9"], ALL), "hpv-dose-1": (["8"], ALL), "hpv-dose-2": (["9"], ALL)},
    **{y: {"flu": (TO_Y11, ALL), "hpv-dose-1": (["8"], ALL)} for y in ("2023/24", "2024/25", "2025/26", "2026/27")},
}


@pytest.mark.parametrize("year", sorted(EXPECTED))
def test_each_year_has_exactly_its_programmes_year_groups_and_sexes(year):
    got = {p.key: (p.year_groups, p.sexes) for p in RULES[year].programmes}
    expected = {**EXPECTED[year], "td-ipv": (["9"], ALL), "menacwy": (["9"], ALL)}
    assert {k: (v[0], sorted(v[1])) for k, v in got.items()} == {k: (v[0], sorted(v[1])) for k, v in expected.items()}
    flu = next(p for p in RULES[year].programmes if p.key == "flu")
    secondary = any(g not in PRIMARY for g in flu.year_groups)
    assert ("autumn-census" in flu.sources) == secondary  # secondary pupils are known from the October census


def test_bad_rules_file_names_the_field():
    with pytest.raises(RulesError, match=r"programmes.0.year_groups"):
        parse_rules(
            'academic_year: "2030/31"\nprogrammes:\n  - {id: flu, name: F, year_groups: [Y1], '
            "sexes: [M], sources: [summer-census]}\n",
            "x.yaml",
        )
    with pytest.raises(RulesError, match="listed twice"):
        parse_rules(
            'academic_year: "2030/31"\nprogrammes:\n' + '  - {id: flu, name: F, year_groups: ["1"], '
            "sexes: [M], sources: [summer-census]}\n" * 2,
            "x.yaml",
        )


def _rec(source="summer-census", yg="3", gender="F", ref=date(2017, 5, 18), school="9372001", pupil=None):
    return Record(
        uuid.uuid4(),
        uuid.uuid4(),
        pupil or uuid.uuid4(),
        source,
        ref,
        datetime(2017, 6, 1, tzinfo=UTC),
        school,
        "School",
        yg,
        gender,
        uuid.uuid4(),
    )


def test_match_one_candidate_merges_even_after_a_move_and_flags_the_postcode_for_a_person_to_check():
    c = Candidate(uuid.uuid4(), frozenset({"pc1"}), frozenset({uuid.uuid4()}))
    moved = match([c], "pc-other", uuid.uuid4())
    assert moved.pupil_id == c.pupil_id and moved.postcode_differs
    stayed = match([c], "pc1", uuid.uuid4())
    assert stayed.pupil_id == c.pupil_id and not stayed.postcode_differs


def test_match_never_merges_two_rows_of_one_extract():
    ex = uuid.uuid4()
    c = Candidate(uuid.uuid4(), frozenset({"pc1"}), frozenset({ex}))
    assert match([c], "pc1", ex).pupil_id is None


def test_match_postcode_breaks_ties_else_ambiguous():
    a = Candidate(uuid.uuid4(), frozenset({"pc1"}), frozenset({uuid.uuid4()}))
    b = Candidate(uuid.uuid4(), frozenset({"pc2"}), frozenset({uuid.uuid4()}))
    assert match([a, b], "pc2", uuid.uuid4()).pupil_id == b.pupil_id
    m = match([a, b], "pc3", uuid.uuid4())
    assert m.pupil_id is None and m.ambiguous


def test_transfer_junior_school_wins_over_may_census_infant_school():
    pupil = uuid.uuid4()
    may = _rec("summer-census", "3", school="9372000", pupil=pupil)
    transfer = _rec("admissions-year3-transfer", "3", school="9372002", ref=date(2017, 4, 18), pupil=pupil)
    m = memberships([may, transfer], RULES["2017/18"])
    assert m["flu"].record.school_dfe == "9372002"


def test_sex_specific_programmes_and_unknown_sex():
    girl9 = _rec("autumn-census", "9", "F", date(2017, 10, 5))
    boy9 = _rec("autumn-census", "9", "M", date(2017, 10, 5))
    unknown8 = _rec("autumn-census", "8", "U", date(2017, 10, 5))
    assert set(memberships([girl9], RULES["2017/18"])) == {"hpv-dose-2", "td-ipv", "menacwy"}
    assert set(memberships([boy9], RULES["2017/18"])) == {"td-ipv", "menacwy"}
    # 2019/20: boys offered HPV from Year 8 only; a Year 9 boy had no first dose, so no second
    assert set(memberships([boy9], RULES["2019/20"])) == {"td-ipv", "menacwy"}
    assert set(memberships([boy9], RULES["2020/21"])) == {"hpv-dose-2", "td-ipv", "menacwy"}
    assert memberships([unknown8], RULES["2017/18"]) == {}
    assert unknown_sex_findings([unknown8], RULES["2017/18"]) == ["hpv-dose-1"]


def test_programme_draws_only_from_its_sources():
    # A Year 4 child known only from the October census is not in 2017/18 flu (drawn from May/admissions).
    assert "flu" not in memberships([_rec("autumn-census", "4", ref=date(2017, 10, 5))], RULES["2017/18"])


def test_twins_never_share_a_match_key_but_name_variants_do():
    import os

    from sais_shared.crypto import KeyEncryptionKey

    kek = KeyEncryptionKey(os.urandom(32))
    dob = "2012-03-01"
    assert kek.blind_index("Evie", "Smith-Jones", dob) != kek.blind_index("Mia", "Smith-Jones", dob)
    assert kek.blind_index("Anna-Marie", "O'Brien", dob) == kek.blind_index("anna marie", "OBRIEN", dob)
    assert kek.blind_index("Siân", "Núñez", dob) == kek.blind_index("Sian", "Nunez", dob)


def test_a_child_who_moved_school_between_censuses_is_at_the_later_school():
    pupil = uuid.uuid4()
    may = _rec("summer-census", "5", school="9372001", ref=date(2021, 5, 20), pupil=pupil)
    october = _rec("autumn-census", "5", school="9372005", ref=date(2021, 10, 7), pupil=pupil)
    m = memberships([may, october], RULES["2021/22"])
    assert m["flu"].record.school_dfe == "9372005"
