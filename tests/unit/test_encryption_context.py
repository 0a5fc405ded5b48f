"""A sealed value opens only with the clear fields it was sealed with: changing who a child is matched
to, their year group, sex, school, programme or revision in an event makes it refuse to open."""

import uuid
from datetime import UTC, date, datetime

import pytest
from sais_shared.crypto import DataKey, Sealed, SealedValueError
from sais_shared.events import CohortMemberAdded, PupilPersonal, PupilRecorded

pytestmark = pytest.mark.unit
KEY = DataKey.generate(uuid.uuid4())
CHILD = PupilPersonal(
    surname="Khan",
    forename="Amira",
    date_of_birth=date(2010, 3, 4),
    address_lines=["1 Mill Lane", "Warwick"],
    postcode="CV34 5AB",
)
PLACEHOLDER = Sealed(key_id=KEY.key_id, nonce="", ciphertext="")


def sealed(event):
    return event.model_copy(update={"personal": KEY.seal_model(CHILD, event.aad())})


def pupil() -> PupilRecorded:
    extract = uuid.uuid4()
    return sealed(
        PupilRecorded(
            event_id=uuid.uuid4(),
            occurred_at=datetime(2017, 6, 1, tzinfo=UTC),
            extract_id=extract,
            record_id=uuid.uuid4(),
            source="summer-census",
            reference_date=date(2017, 5, 18),
            row_number=2,
            originator="Warwickshire County Council",
            protocol_version="0.2",
            school_dfe="9372001",
            school_name="Emscote Infant School",
            year_group="2",
            gender="F",
            match_key="a" * 32,
            personal=PLACEHOLDER,
        )
    )


def cohort() -> CohortMemberAdded:
    at = datetime(2017, 6, 1, 9, tzinfo=UTC)
    return sealed(
        CohortMemberAdded(
            event_id=uuid.uuid4(),
            occurred_at=at,
            academic_year="2017/18",
            programme="hpv",
            dose=1,
            pupil_id=uuid.uuid4(),
            school_dfe="9374001",
            school_name="Myton School",
            year_group="8",
            gender="F",
            source="autumn-census",
            reference_date=date(2017, 10, 5),
            received_at=at,
            extract_ids=[uuid.uuid4()],
            revision=1,
            personal=PLACEHOLDER,
        )
    )


def test_untouched_events_open():
    for e in (pupil(), cohort()):
        assert KEY.open_model(e.personal, PupilPersonal, e.aad()) == CHILD


@pytest.mark.parametrize(
    "change",
    [
        {"match_key": "b" * 32},
        {"year_group": "3"},
        {"gender": "M"},
        {"school_dfe": "9372002"},
        {"school_name": "Other School"},
        {"source": "autumn-census"},
        {"reference_date": date(2017, 5, 19)},
    ],
)
def test_a_pupil_event_with_a_changed_decision_field_does_not_open(change):
    e = pupil()
    forged = e.model_copy(update=change)
    with pytest.raises(SealedValueError):
        KEY.open_model(forged.personal, PupilPersonal, forged.aad())


@pytest.mark.parametrize(
    "change",
    [
        {"revision": 2},
        {"programme": "menacwy"},
        {"dose": 2},
        {"year_group": "9"},
        {"gender": "M"},
        {"school_dfe": "9374002"},
        {"extract_ids": []},
        {"received_at": datetime(2017, 9, 1, tzinfo=UTC)},
    ],
)
def test_a_cohort_record_with_a_changed_field_or_a_later_revision_does_not_open(change):
    e = cohort()
    forged = e.model_copy(update=change)
    with pytest.raises(SealedValueError):
        KEY.open_model(forged.personal, PupilPersonal, forged.aad())


def test_a_cohort_context_is_the_same_bytes_whatever_the_order_of_its_lineage_and_however_often_made():
    """Stored members were sealed under these bytes, so the context must not change: the digest of the clear
    fields, joined by the unit separator, the lineage sorted (made once per lineage since 4 December)."""
    import hashlib
    import random

    from sais_shared.events import cohort_aad

    rng = random.Random(28)
    for _ in range(200):
        ids = [uuid.UUID(int=rng.getrandbits(128)) for _ in range(rng.randint(1, 4))]
        pupil_id = uuid.UUID(int=rng.getrandbits(128))
        received = datetime(2017, 6, 1, rng.randint(0, 23), tzinfo=UTC)
        fields = dict(
            programme=rng.choice(["flu", "hpv", "td-ipv"]),
            dose=rng.choice([None, 1, 2]),
            revision=rng.randint(1, 9),
            school_dfe="9372001",
            school_name=rng.choice(["Castle Primary", "St Mary's"]),
            year_group=rng.choice(["R", "3", "8"]),
            gender=rng.choice("MFU"),
            source="summer-census",
            reference_date=date(2017, 5, 18),
            received_at=received,
        )
        parts = [
            *(fields[k] for k in ("programme", "dose", "revision", "school_dfe", "school_name", "year_group")),
            fields["gender"],
            fields["source"],
            "2017-05-18",
            round(received.timestamp() * 1_000_000),
            ",".join(sorted(str(x) for x in ids)),
        ]
        digest = hashlib.sha256("\x1f".join("" if p is None else str(p) for p in parts).encode()).hexdigest()
        expected = f"cohort:v2:2017/18:{pupil_id}:{digest}".encode()
        shuffled = rng.sample(ids, len(ids))
        assert cohort_aad("2017/18", pupil_id, **fields, extract_ids=ids) == expected
        assert cohort_aad("2017/18", pupil_id, **fields, extract_ids=shuffled) == expected
