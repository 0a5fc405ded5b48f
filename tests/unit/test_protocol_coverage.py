"""Do the data a protocol requests cover each year's programme rules? v0.2 (the 2017 ISP) covers
2017/18 only; the example v0.3 covers every year; each gap is named."""

import pytest
from sais_eligibility.adapters.rules_files import load_all_rules
from sais_eligibility.domain.coverage import Gap, coverage_gaps
from sais_shared.protocol import bundled_protocol_path, load_protocol

pytestmark = pytest.mark.unit
RULES = load_all_rules()
V02 = load_protocol()
V03 = load_protocol(bundled_protocol_path().with_name("warwickshire-cwpt-v0.3.yaml"))
JULY = ("summer-census", "admissions-reception", "admissions-year3-transfer")


def test_the_2017_isp_covers_its_own_year():
    assert coverage_gaps(RULES["2017/18"], V02) == []


@pytest.mark.parametrize("year", [y for y in sorted(RULES) if y != "2017/18"])
def test_the_2017_isp_leaves_gaps_in_every_later_year(year):
    assert coverage_gaps(RULES[year], V02) != []


def test_each_gap_names_programme_year_groups_sexes_and_sources():
    assert coverage_gaps(RULES["2018/19"], V02) == [Gap("flu", ("5",), ("M", "F", "U"), JULY)]
    gaps = coverage_gaps(RULES["2019/20"], V02)
    assert Gap("hpv-dose-1", ("8",), ("M",), ("autumn-census",)) in gaps  # boys' HPV: Year 8 boys not asked for
    assert Gap("flu", ("5", "6"), ("M", "F", "U"), JULY) in gaps


@pytest.mark.parametrize("year", sorted(RULES))
def test_the_example_revision_covers_every_year(year):
    assert coverage_gaps(RULES[year], V03) == []


async def test_a_new_protocol_version_in_force_is_handed_to_its_listeners(tmp_path):
    """What re-runs the coverage check (and refreshes the gauge) when ``sais protocol load`` puts v0.3 in force."""
    from sais_shared.protocol_registry import ProtocolRef

    seen = []

    async def listener(p):
        seen.append(p.version)

    class Registry:  # shared.protocols with v0.3 loaded last
        async def fetchrow(self, query):
            text = bundled_protocol_path().with_name("warwickshire-cwpt-v0.3.yaml").read_text()
            return {"content": text, "protocol_id": "x", "version": "0.3"}

    ref = ProtocolRef(V02, pool=Registry())
    ref.on_change(listener)
    await ref.refresh()
    await ref.refresh()  # unchanged: no second call
    assert seen == ["0.3"] and ref.current.version == "0.3"
