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


def _grant(
    principal="User:sais-publisher", resource=2, name="t1.ingest.inbound.v1", pattern=3, op=3, allow=3, host="*"
):
    from sais_shared.kafka_access import Grant

    return Grant(principal, host, resource, name, pattern, op, allow)


def test_acls_beyond_the_table_are_found_and_only_the_prefixs_own_are_removed():
    from sais_shared.kafka_access import Grant, review_acls

    table = [
        Grant(b.principal, "*", int(b.resource), b.name, int(b.pattern), int(b.operation), 3) for b in bindings("t1")
    ]
    extra_read = _grant()  # the publisher reading the inbound topic (finding 13)
    on_a_group = _grant("User:mallory", 3, "t1-ingest", pattern=4, op=3)
    all_under_prefix = _grant("User:mallory", 2, "t1.", pattern=4, op=2)
    other_host = _grant("User:sais-ingest", 2, Topics("t1").inbound, op=3, host="10.0.0.9")
    wildcard = _grant("User:mallory", 2, "*", op=3)
    shorter_prefix = _grant("User:mallory", 2, "t", pattern=4, op=4)
    deny = _grant("User:sais-ingest", 2, Topics("t1").cohort, op=3, allow=2)
    other_app = _grant("User:other", 2, "t2.ingest.inbound.v1", op=3)
    other_group = _grant("User:other", 3, "t1x-ingest", pattern=4, op=3)  # not this prefix's
    ours, broader = review_acls(
        [
            *table,
            extra_read,
            on_a_group,
            all_under_prefix,
            other_host,
            wildcard,
            shorter_prefix,
            deny,
            other_app,
            other_group,
        ],
        "t1",
    )
    assert set(ours) == {extra_read, on_a_group, all_under_prefix, other_host}
    assert set(broader) == {wildcard, shorter_prefix}
    assert review_acls(table, "t1") == ([], [])
    assert "User:mallory ALL on topic 't1.' (prefixed) from host *" in {str(g) for g in ours}


def test_the_deletion_certificates_are_kept_for_good_and_the_inbound_topic_a_week():
    from sais_shared.kafka_access import topic_config

    assert topic_config("deletion_completed", 120) == {"retention.ms": "-1", "cleanup.policy": "delete"}
    assert topic_config("inbound", 120)["retention.ms"] == str(7 * 24 * 3600 * 1000)
    assert topic_config("cohort", 120)["retention.ms"] == str(120 * 24 * 3600 * 1000)
