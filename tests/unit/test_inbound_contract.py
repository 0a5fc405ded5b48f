"""The inbound contract's signatures (security review, finding 6): a start is signed on its own, so ingest
can refuse an unsigned or altered one on arrival, and neither signature stands in for the other."""

import base64
from datetime import date

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sais_shared.inbound import (
    InboundAuthenticationError,
    InboundExtractWriter,
    Publisher,
    PublisherRegistry,
)

pytestmark = pytest.mark.unit

SIGNER = Ed25519PrivateKey.generate()
INBOUND = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def writer(ref="sims-1", source="summer-census", signer=SIGNER) -> InboundExtractWriter:
    return InboundExtractWriter(
        INBOUND.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
        "inbound-1", ref, source, date(2017, 5, 18), "SIMS",
        publisher="sims",
        signing_key_pem=signer.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )  # fmt: skip


REGISTRY = PublisherRegistry([Publisher("sims", SIGNER.public_key(), frozenset({"summer-census"}))])


def test_a_start_signed_by_its_publisher_verifies_and_any_change_to_it_does_not():
    w = writer()
    assert REGISTRY.verify_start(w.started).id == "sims"
    for change in (
        {"extract_ref": "sims-2"},
        {"source": "autumn-census"},
        {"reference_date": date(2017, 5, 19)},
        {"originator_system": "Other"},
        {"encryption": writer().started.encryption},  # another extract's wrapped key
        {"signature": None},
        {"publisher": None},
    ):
        with pytest.raises(InboundAuthenticationError):
            REGISTRY.verify_start(w.started.model_copy(update=change))


def test_a_start_from_an_unknown_key_or_for_a_source_not_allowed_is_refused():
    with pytest.raises(InboundAuthenticationError, match="does not verify"):
        REGISTRY.verify_start(writer(signer=Ed25519PrivateKey.generate()).started)
    with pytest.raises(InboundAuthenticationError, match="may not send autumn-census"):
        REGISTRY.verify_start(writer(source="autumn-census").started)


def test_neither_signature_stands_in_for_the_other():
    w = writer()
    w.record({"Surname": "Hall"})
    done = w.completed()
    REGISTRY.verify(w.started, done)
    with pytest.raises(InboundAuthenticationError):
        REGISTRY.verify_start(w.started.model_copy(update={"signature": done.signature}))
    with pytest.raises(InboundAuthenticationError):
        REGISTRY.verify(w.started, done.model_copy(update={"signature": w.started.signature}))
    assert base64.b64decode(w.started.signature) != base64.b64decode(done.signature)


def test_the_registry_names_each_publishers_kafka_login_and_kafka_setup_and_the_manifests_use_them(tmp_path):
    import yaml
    from sais_shared.errors import ConfigurationError
    from sais_shared.kafka_access import strimzi_manifests

    from sais.admin_cli import _publisher_users

    pem = SIGNER.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    entries = [
        {"id": "sims", "public_key": pem.decode(), "sources": ["summer-census"], "kafka_user": "la-sims"},
        {"id": "admissions", "public_key": pem.decode(), "sources": ["admissions-reception"]},  # the shared login
    ]
    path = tmp_path / "publishers.yaml"
    path.write_text(yaml.safe_dump({"publishers": entries}))
    assert PublisherRegistry.load(path).kafka_users == ["la-sims", "sais-publisher"] == _publisher_users(path)
    users = list(yaml.safe_load_all(strimzi_manifests(publishers=_publisher_users(path))[1]))
    mine = next(u for u in users if u["metadata"]["name"] == "la-sims")
    assert mine["spec"]["quotas"] == {"producerByteRate": 10 << 20}
    assert [a["resource"]["name"] for a in mine["spec"]["authorization"]["acls"]] == ["sais.ingest.inbound.v1"]
    entries[0]["kafka_user"] = "User:la sims"
    path.write_text(yaml.safe_dump({"publishers": entries}))
    with pytest.raises(ConfigurationError, match="is not a Kafka user name"):
        PublisherRegistry.load(path)
