import base64
import os
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sais_shared.crypto import (
    DataKey,
    DecryptionError,
    KeyEncryptionKey,
    derive_index_key,
    kek_fingerprint,
    normalise_for_matching,
)
from sais_shared.errors import ConfigurationError, MissingKeyEncryptionKeyError
from sais_shared.settings import CommonSettings

pytestmark = pytest.mark.unit


def test_sealed_value_opens_only_with_its_key_and_context():
    key = DataKey.generate(uuid.uuid4())
    sealed = key.seal(b"Siobhan O'Neill", b"ctx-1")
    assert b"Siobhan" not in sealed.model_dump_json().encode()
    assert key.open(sealed, b"ctx-1") == b"Siobhan O'Neill"
    with pytest.raises(DecryptionError):
        key.open(sealed, b"ctx-2")
    other = DataKey(key.key_id, os.urandom(32))
    with pytest.raises(DecryptionError):
        other.open(sealed, b"ctx-1")


def test_wrapped_data_key_unwraps_only_with_the_same_kek():
    kek, other = KeyEncryptionKey(os.urandom(32)), KeyEncryptionKey(os.urandom(32))
    key = DataKey.generate(uuid.uuid4())
    wrapped = kek.wrap(key)
    assert kek.unwrap(key.key_id, wrapped).secret == key.secret
    with pytest.raises(DecryptionError):
        other.unwrap(key.key_id, wrapped)
    with pytest.raises(DecryptionError):
        kek.unwrap(uuid.uuid4(), wrapped)  # bound to its key id


def test_blind_index_folds_case_accents_spacing_and_hyphens():
    kek = KeyEncryptionKey(os.urandom(32))
    assert kek.blind_index("Zoë", "Smith-Jones") == kek.blind_index("ZOE", "smith jones")
    assert kek.blind_index("Zoë", "Smith") != kek.blind_index("Zoe", "Smyth")
    assert normalise_for_matching("O’Brien-Núñez") == "obriennunez"
    assert KeyEncryptionKey(os.urandom(32)).blind_index("Zoe") != kek.blind_index("Zoe")


def test_missing_kek_fails_fast_with_a_clear_message(tmp_path):
    with pytest.raises(MissingKeyEncryptionKeyError, match="SAIS_KEK_FILE"):
        CommonSettings(kek_file=None, kek=None).key_encryption_key_bytes()
    with pytest.raises(MissingKeyEncryptionKeyError, match="cannot read"):
        CommonSettings(kek_file=tmp_path / "absent").key_encryption_key_bytes()
    short = tmp_path / "short"
    short.write_text(base64.b64encode(os.urandom(16)).decode())
    with pytest.raises(ConfigurationError, match="32 bytes"):
        CommonSettings(kek_file=short).key_encryption_key_bytes()


def test_repr_never_shows_key_material():
    key = DataKey.generate(uuid.uuid4())
    assert key.secret.hex() not in repr(key)


@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=40))
def test_the_ascii_fast_path_of_matching_normalisation_equals_the_general_rule(value):
    import unicodedata

    general = "".join(c for c in unicodedata.normalize("NFKD", value) if c.isalnum()).casefold()
    assert normalise_for_matching(value) == general


def test_development_settings_are_refused_outside_development_mode(monkeypatch):
    monkeypatch.delenv("SAIS_DEV_MODE", raising=False)
    with pytest.raises(ConfigurationError, match="SAIS_AS_OF"):
        CommonSettings(as_of="2017-07-10")
    with pytest.raises(ConfigurationError, match="SAIS_KEK_FILE"):
        CommonSettings(kek=base64.b64encode(os.urandom(32)).decode()).key_encryption_key_bytes()
    dev = CommonSettings(as_of="2017-07-10", dev_mode=True, kek=base64.b64encode(os.urandom(32)).decode())
    assert len(dev.key_encryption_key_bytes()) == 32


@pytest.mark.parametrize(
    ("setting", "refused"),
    [
        ({"kafka_security_protocol": "PLAINTEXT"}, "PLAINTEXT sends pupils' events unencrypted"),
        ({"database_url": "postgresql://db.example/sais"}, "sslmode=unset"),
        ({"database_url": "postgresql://db.example/sais?sslmode=require"}, "sslmode=require"),
        ({"database_url": "postgresql://db.example/sais?sslmode=verify-ca"}, "sslmode=verify-ca"),
    ],
)
def test_a_development_switch_is_refused_outside_development_mode(monkeypatch, setting, refused):
    monkeypatch.delenv("SAIS_DEV_MODE", raising=False)
    monkeypatch.delenv("PGSSLMODE", raising=False)
    with pytest.raises(ConfigurationError, match=refused):
        CommonSettings(**setting)
    CommonSettings(**setting, dev_mode=True)  # accepted on a development machine


def test_outside_development_a_service_logs_in_as_its_own_role_and_mail_passwords_come_from_files(
    monkeypatch, tmp_path
):
    from sais_delivery.config import DeliverySettings

    monkeypatch.delenv("SAIS_DEV_MODE", raising=False)
    verified = "postgresql://db.example/sais?sslmode=verify-full&sslrootcert=/ca.pem"
    with pytest.raises(ConfigurationError, match="connects as its own role sais_eligibility"):
        CommonSettings(database_url=verified).database_login("eligibility")  # not the administrator's DSN
    (tmp_path / "postgres-sais_eligibility").write_text("pw\n")
    login = CommonSettings(database_url=verified, credentials_dir=tmp_path).database_login("eligibility")
    assert login["user"] == "sais_eligibility" and login["password"] == "pw"
    assert CommonSettings(dev_mode=True).database_login("eligibility") == {"dsn": CommonSettings().database_url}
    with pytest.raises(ConfigurationError, match="SAIS_DELIVERY_SMTP_PASSWORD_FILE"):
        DeliverySettings(delivery_smtp_password="relay-secret").smtp_password()
    (tmp_path / "smtp").write_text("relay-secret\n")
    assert DeliverySettings(delivery_smtp_password_file=tmp_path / "smtp").smtp_password() == "relay-secret"
    assert DeliverySettings(delivery_smtp_password="relay-secret", dev_mode=True).smtp_password() == "relay-secret"


def test_a_kek_file_others_can_read_is_warned_about(tmp_path):
    from structlog.testing import capture_logs

    kek = tmp_path / "kek.b64"
    kek.write_text(base64.b64encode(os.urandom(32)).decode())
    kek.chmod(0o644)
    with capture_logs() as logs:
        CommonSettings(kek_file=kek).key_encryption_key_bytes()
    assert [e["event"] for e in logs] == ["key_file.readable_by_others"]
    kek.chmod(0o600)
    with capture_logs() as logs:
        CommonSettings(kek_file=kek).key_encryption_key_bytes()
    assert logs == []


def test_a_ring_wraps_with_the_kek_in_force_and_opens_with_a_retired_one():
    import os
    from uuid import uuid4

    from sais_shared.crypto import DataKey, DecryptionError, KeyEncryptionKey

    old_secret, new_secret = os.urandom(32), os.urandom(32)
    old = KeyEncryptionKey(old_secret, "kek-1", b"i" * 32)
    ring = KeyEncryptionKey(new_secret, "kek-2", b"i" * 32, retired={"kek-1": old_secret})
    key = DataKey.generate(uuid4())
    under_old = old.wrap(key)
    assert ring.unwrap_with_id(key.key_id, under_old) == (key, "kek-1")
    under_new = ring.wrap(key)
    assert ring.unwrap_with_id(key.key_id, under_new)[1] == "kek-2"
    with pytest.raises(DecryptionError, match="kek-1"):
        old.unwrap(key.key_id, under_new)  # a writer on the old KEK alone cannot open the new wrapping
    assert ring.retired_ids == ["kek-1"] and ring.blind_index("a", "b") == old.blind_index("a", "b")


def test_a_ring_refuses_a_retired_kek_under_the_id_in_force_or_the_kek_in_force_under_another_id():
    old, new = os.urandom(32), os.urandom(32)
    with pytest.raises(ConfigurationError, match="has the id of the KEK in force"):
        KeyEncryptionKey(new, "kek-1", b"i" * 32, retired={"kek-1": old})  # a new KEK left under the old id
    with pytest.raises(ConfigurationError, match=r"retired KEK kek-0 is the KEK in force \(kek-1\)"):
        KeyEncryptionKey(old, "kek-1", b"i" * 32, retired={"kek-0": old})


def test_a_kek_fingerprint_names_the_key_and_reveals_neither_it_nor_the_index_key():
    secret = os.urandom(32)
    ring = KeyEncryptionKey(secret, "kek-2", retired={"kek-1": os.urandom(32)})
    assert ring.fingerprint == kek_fingerprint(secret) == KeyEncryptionKey(secret, "other-id").fingerprint
    assert len(ring.fingerprint) == 32 and int(ring.fingerprint, 16) >= 0
    assert ring.fingerprint_of("kek-1") not in (None, ring.fingerprint) and ring.fingerprint_of("kek-9") is None
    assert bytes.fromhex(ring.fingerprint) not in (secret[:16], derive_index_key(secret)[:16])


def test_a_stable_id_is_the_uuid5_of_its_parts():
    import uuid as uuid_module

    from sais_shared.events import _NS, stable_id

    x = uuid_module.uuid4()
    for parts in [("pupil", x, 12), ("cohort", "2017/18", "hpv-dose-1", x, 3), ("é", 0), ()]:
        want = uuid_module.uuid5(_NS, "/".join(str(p) for p in parts))
        got = stable_id(*parts)
        assert (got, got.version, got.variant, str(got), hash(got)) == (want, 5, want.variant, str(want), hash(want))


def test_blind_and_exact_indices_keep_the_values_already_stored():
    # computed before the indices were made faster (commit 8e6205d): match keys, postcode keys and content
    # keys are stored and compared with new rows, so a new way of computing them must give the same bytes
    kek = KeyEncryptionKey(bytes(range(32)), index_key=bytes(range(32, 64)))
    assert kek.blind_index("Zoë", "Smith-Jones", "2010-03-01") == "196dccf916f42585a5bcda8c818160b9"
    assert kek.blind_index('{"forename":"Amelia","postcode":"CV34 4RL"}') == "ae4fb389442d4e40e7670cd6a6bcf88a"
    assert kek.exact_index("row:v1", "9372001", "R", '{"a":1}') == "fe3a869f13377b0133e71b72fbde2ea1"


@given(st.lists(st.text(max_size=30), min_size=1, max_size=4))
def test_a_blind_index_is_the_keyed_hash_of_the_normalised_parts(parts):
    import hashlib
    import hmac

    kek = KeyEncryptionKey(bytes(range(32)), index_key=bytes(range(32, 64)))
    msg = "\x1f".join(normalise_for_matching(p) for p in parts).encode()
    assert kek.blind_index(*parts) == hmac.new(bytes(range(32, 64)), msg, hashlib.sha256).hexdigest()[:32]
