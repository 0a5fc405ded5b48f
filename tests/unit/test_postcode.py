import pytest
from sais_shared.postcode import is_valid_postcode, normalise_postcode

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("raw", "norm"),
    [
        ("cv34 4rl", "CV34 4RL"),
        ("CV344RL", "CV34 4RL"),
        (" cv3 4 4rl ", "CV34 4RL"),
        ("EC1A1BB", "EC1A 1BB"),
        ("w1a 0ax", "W1A 0AX"),
        ("M11AE", "M1 1AE"),
        ("gir0aa", "GIR 0AA"),
    ],
)
def test_normalises_and_accepts_valid_postcodes(raw, norm):
    assert normalise_postcode(raw) == norm
    assert is_valid_postcode(norm)


@pytest.mark.parametrize(
    "bad",
    [
        "GIR 0AAJUNK",  # passes the published pattern with search(): its ^…$ binds only one branch
        "JUNKCV34 4RL",
        "CV34 ZZZ",
        "12345",
        "CV34",
        "CV34 4R",
        "ZZ99 3WZ",
        "ASCN 1ZZ",
        "",
    ],
)
def test_rejects_invalid_postcodes_including_the_anchoring_flaw(bad):
    assert not is_valid_postcode(normalise_postcode(bad))
