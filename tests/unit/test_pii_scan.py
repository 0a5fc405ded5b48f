"""The personal-data scan the integration and e2e tests rely on: it catches a value planted in clear
text, wherever in an event it is, and is never set off by ciphertext, keys or hashes."""

import base64
import json
import os
import uuid

import pytest
from sais_shared.crypto import DataKey

from tests.pii import PersonalDataScan

pytestmark = pytest.mark.unit
NEEDLES = {"Noah", "Jack", "Ó Súilleabháin", "15/01/2012", "2012-01-15", "CV34 4FL", "63 Station Road"}


def sealed_event(**clear) -> bytes:
    key = DataKey.generate(uuid.uuid4())
    personal = key.seal(json.dumps({"forename": "Noah", "surname": "Jack"}).encode(), b"ctx").model_dump(mode="json")
    return json.dumps({"event_id": str(uuid.uuid4()), "year_group": "3", "personal": personal, **clear}).encode()


@pytest.mark.parametrize(
    "field,value",
    [
        ("forename_in_clear", "Noah"),
        ("note", "row 12: Noah Jack, born 15/01/2012"),
        ("school", "Ó Súilleabháin"),
        ("nested", {"address": ["63 Station Road", "Warwick"], "postcode": "CV34 4FL"}),
        ("dob", "2012-01-15"),
    ],
)
def test_a_value_planted_in_clear_text_is_caught(field, value):
    found = PersonalDataScan(NEEDLES).in_event(sealed_event(**{field: value}))
    assert found and found <= NEEDLES


def test_a_clean_event_with_sealed_personal_fields_passes():
    assert PersonalDataScan(NEEDLES).in_event(sealed_event(programme="flu")) == set()


def test_a_name_inside_base64_or_hex_is_not_a_finding():
    # Random base64 holds any short name sooner or later; build the worst case on purpose.
    for needle in ("Noah", "Jack"):
        blob = base64.b64encode(os.urandom(9)).decode() + needle + base64.b64encode(os.urandom(9)).decode()
        assert PersonalDataScan(NEEDLES).in_text(f'{{"ciphertext": "{blob}", "k": "x/{needle}+y"}}') == set()
    assert PersonalDataScan({"beef", "cafe"}).in_text(r"(\x0beefcafe00,deadbeef)") == set()


def test_only_whole_tokens_count():
    scan = PersonalDataScan({"Jack", "Ann"})
    assert scan.in_text("Jackson, Annabel") == set()
    assert scan.in_text('{"surname": "Jack"}, Ann.') == {"Jack", "Ann"}


def test_sealed_parts_are_skipped_but_not_their_neighbours():
    raw = json.dumps({"encryption": {"wrapped_key": "Noah", "recipient_key_id": "Jack"}, "nonce": "CV34 4FL"}).encode()
    assert PersonalDataScan(NEEDLES).in_event(raw) == {"Jack"}


def test_a_scan_for_nothing_is_refused():
    with pytest.raises(ValueError):
        PersonalDataScan(set())


def test_a_dead_letter_reason_never_quotes_the_value_it_refused():
    """Pydantic's messages can quote the input ("Input tag '…' found"); the reason keeps field names and
    error types only."""
    import json as _json

    from pydantic import ValidationError
    from sais_shared.inbound import inbound_adapter
    from sais_shared.kafka import describe_validation_error

    secret = "Quentina Zyxwabc 03/02/2010 CV1 1AA"
    for doc in ({"type": secret}, {"type": "record", "extract_ref": "x", "seq": secret, "nonce": "", "ciphertext": ""}):
        with pytest.raises(ValidationError) as err:
            inbound_adapter.validate_json(_json.dumps(doc))
        reason = describe_validation_error(err.value)
        assert reason and "Quentina" not in reason and "CV1" not in reason and "2010" not in reason, reason
