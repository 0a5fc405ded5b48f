"""Kafka access rights are data, and that data is what the code does: each service's ACLs name exactly
the topics its app subscribes to and publishes on (read from the AsyncAPI documents the apps
generate), and the Strimzi manifests are generated from the same table."""

import pytest
import yaml
from sais_shared.kafka_access import ACCESS, Operation, Pattern, Resource, bindings, strimzi_manifests, topics_of
from sais_shared.settings import SERVICES
from sais_shared.topics import Topics

from sais.asyncapi import generate
from tests.helpers import REPO

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def channels_used() -> dict[str, tuple[set[str], set[str]]]:
    out = {}
    for service, (text, _) in generate().items():
        doc = yaml.safe_load(text)
        reads, writes = set(), set()
        for op in doc["operations"].values():
            address = doc["channels"][op["channel"]["$ref"].rsplit("/", 1)[1]]["address"]
            (reads if op["action"] == "receive" else writes).add(address)
        out[service] = (reads, writes)
    return out


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_may_touch_exactly_the_topics_its_app_uses(channels_used, service):
    reads, writes = topics_of(service, "sais")
    assert (set(reads), set(writes)) == channels_used[service]


def test_the_upstream_publisher_may_only_write_the_inbound_topic():
    assert topics_of("publisher", "sais") == ([], [Topics("sais").inbound])
    assert not ACCESS["publisher"].consumes


def test_bindings_allow_reads_writes_and_own_groups_only():
    rows = bindings("t1")
    assert {b.operation for b in rows} == {Operation.READ, Operation.WRITE, Operation.DESCRIBE}
    groups = {(b.principal, b.name) for b in rows if b.resource is Resource.GROUP}
    assert groups == {(f"User:sais-{s}", f"t1-{s}") for s in SERVICES}
    assert all(b.pattern is Pattern.PREFIXED for b in rows if b.resource is Resource.GROUP)
    assert all(b.pattern is Pattern.LITERAL and b.name.startswith("t1.") for b in rows if b.resource is Resource.TOPIC)
    # nobody but ingest reads the inbound topic; nobody but eligibility writes the cohort
    inbound, cohort = Topics("t1").inbound, Topics("t1").cohort
    assert {b.principal for b in rows if b.name == inbound and b.operation is Operation.READ} == {"User:sais-ingest"}
    assert {b.principal for b in rows if b.name == cohort and b.operation is Operation.WRITE} == {
        "User:sais-eligibility"
    }


def test_checked_in_strimzi_manifests_are_generated_from_the_table():
    topics, users = strimzi_manifests()
    base = REPO / "deploy" / "k8s" / "kafka"
    assert (base / "topics.yaml").read_text() == topics, "run `sais kafka manifests`"
    assert (base / "kafka-users.yaml").read_text() == users, "run `sais kafka manifests`"
    docs = list(yaml.safe_load_all(users))
    assert {d["metadata"]["name"] for d in docs} == {f"sais-{s}" for s in (*SERVICES, "publisher")}
    inbound = next(d for d in yaml.safe_load_all(topics) if d["spec"]["topicName"] == "sais.ingest.inbound.v1")
    assert inbound["spec"]["config"]["retention.ms"] == 7 * 24 * 3600 * 1000
