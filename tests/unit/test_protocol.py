from datetime import date

import pytest
import yaml
from sais_shared.protocol import (
    ProtocolError,
    bundled_protocol_path,
    load_protocol,
    parse_protocol,
    recipient_allowed,
)

pytestmark = pytest.mark.unit


def _doc() -> dict:
    return yaml.safe_load(bundled_protocol_path().read_text())


def test_bundled_protocol_is_the_2017_isp_v0_2():
    p = load_protocol()
    assert p.version == "0.2" and p.retention_months == 3 and p.staleness_months == 3
    assert set(p.sources) == {"summer-census", "autumn-census", "admissions-reception", "admissions-year3-transfer"}
    assert p.source("autumn-census").is_requested("8", "F")
    assert not p.source("autumn-census").is_requested("8", "M")
    assert p.source("summer-census").is_requested("3", "M")
    assert p.transfer.window("december").sources == ["autumn-census"]
    assert p.review_overdue(date(2018, 5, 1)) and not p.review_overdue(date(2017, 7, 1))


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d.pop("retention_months"), "retention_months"),
        (lambda d: d["sources"]["summer-census"]["requested"].update({"Y3": ["M"]}), "sources.summer-census.requested"),
        (lambda d: d["sources"].update({"spring-census": d["sources"]["summer-census"]}), "sources"),
        (lambda d: d["transfer"].update({"recipients": ["someone@gmail.com"]}), "transfer"),
        (lambda d: d["transfer"].update({"method": "ftp"}), "transfer.method"),
        (lambda d: d.update({"staleness_months": 0}), "staleness_months"),
    ],
)
def test_bad_protocol_file_fails_naming_the_field(mutate, field):
    d = _doc()
    mutate(d)
    with pytest.raises(ProtocolError) as exc:
        parse_protocol(yaml.safe_dump(d), "test.yaml")
    assert field in str(exc.value) and "test.yaml" in str(exc.value)


def test_recipient_allow_list_matches_domains_not_substrings():
    assert recipient_allowed("ann.curzons@nhs.net", ["nhs.net"])
    assert recipient_allowed("x@team.nhs.net", ["nhs.net"])
    assert not recipient_allowed("x@nhs.net.evil.com", ["nhs.net"])
    assert not recipient_allowed("x@notnhs.net", ["nhs.net"])
    assert not recipient_allowed("a@b@nhs.net", ["nhs.net"])


def test_unknown_source_is_refused_clearly():
    with pytest.raises(ProtocolError, match="not covered"):
        load_protocol().source("spring-census")


def test_ingest_refuses_a_protocol_that_does_not_allow_a_forwarded_field():
    from sais_ingest.service_layer.ingest_file import (
        FORWARDED_FIELDS,
        check_fields_allowed,
    )

    p = load_protocol()
    check_fields_allowed(p)
    assert {f.name for f in p.dataset} == FORWARDED_FIELDS
    d = _doc()
    d["dataset"] = [f for f in d["dataset"] if f["name"] != "gender"]
    with pytest.raises(ProtocolError, match="gender"):
        check_fields_allowed(parse_protocol(yaml.safe_dump(d), "x"))


def test_the_transfer_clause_is_kept_as_written_with_the_method_used_and_why():
    from sais_shared.protocol import load_protocol

    t = load_protocol().transfer
    assert "Egress" in t.as_written and "GCSx" in t.as_written
    assert t.method == "smime-email" and "2019" in t.method_reason


def test_a_method_the_software_does_not_implement_is_refused_by_name():
    doc = _doc()
    doc["transfer"]["method"] = "egress"
    with pytest.raises(ProtocolError, match="'egress' is not one this software implements"):
        parse_protocol(yaml.safe_dump(doc), "test")
    doc["transfer"]["method"] = "smime-email"
    doc["transfer"]["method_reason"] = None
    with pytest.raises(ProtocolError, match=r"say why in transfer\.method_reason"):
        parse_protocol(yaml.safe_dump(doc), "test")


def test_the_review_date_is_the_earlier_of_the_two_the_isp_gives_and_says_so():
    from sais_shared.protocol import load_protocol

    p = load_protocol()
    assert p.review_date.isoformat() == "2018-04-30"
    assert "April 2018" in p.review_date_basis and "§15.1" in p.review_date_basis


@pytest.mark.parametrize("version", ["0.1", "0.2", "0.3"])
def test_the_shipped_examples_name_no_real_person_and_no_recipient(version):
    path = bundled_protocol_path().with_name(f"warwickshire-cwpt-v{version}.yaml")
    p = load_protocol(path)
    contacts = [c for party in p.parties for c in party.contacts]
    assert contacts and all(c.email.endswith(".example.invalid") for c in contacts)  # a notice goes nowhere real
    assert p.transfer.recipients == [] and p.transfer.allowed_recipient_domains == ["nhs.net"]  # clause kept
    text = path.read_text()
    assert "warwickshire.gov.uk" not in text.replace("warwickshire.gscx.gov.uk", "")  # the ISP's own spelling stays
