"""Who may do what on Kafka, as data: the topics each principal reads and writes, and its consumer
groups. One table feeds the broker's ACLs (``sais kafka setup``), the Strimzi ``KafkaUser``s in
``deploy/k8s`` (a test checks they agree) and each service's topic check at start.

A service's consumer groups are the ones named ``<topic prefix>-<service>…`` (the default group of
ingest is ``sais-ingest``); its topics are literal names. Nothing else is allowed: the broker runs
with ``allow.everyone.if.no.acl.found=false``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from .errors import ConfigurationError
from .settings import SERVICES, kafka_user
from .topics import Topics


@dataclass(frozen=True)
class Access:
    reads: tuple[str, ...]  # names of Topics properties
    writes: tuple[str, ...]
    consumes: bool = True  # has consumer groups


ACCESS: dict[str, Access] = {
    "ingest": Access(
        reads=("inbound", "deletion_requested"),
        writes=("pupil_recorded", "extract_completed", "row_rejected", "dead_letter", "deletion_confirmed"),
    ),
    "eligibility": Access(
        reads=("pupil_recorded", "extract_completed", "deletion_requested"),
        writes=("cohort", "dead_letter", "deletion_confirmed"),
    ),
    "delivery": Access(
        reads=("cohort", "deletion_requested"),
        writes=("delivery_completed", "dead_letter", "deletion_confirmed"),
    ),
    "retention": Access(
        reads=("delivery_completed", "extract_completed", "deletion_confirmed"),
        writes=("deletion_requested", "deletion_completed", "dead_letter"),
    ),
    # An upstream system (MIS, admissions) that publishes encrypted, signed extracts: nothing else.
    "publisher": Access(reads=(), writes=("inbound",), consumes=False),
}
assert set(SERVICES) <= set(ACCESS)

# Retention of a topic (days) where it differs from SAIS_TOPIC_RETENTION_DAYS: the inbound topic holds
# whole extracts only until ingest has read them. Crypto-shredding is what deletes readable data.
RETENTION_DAYS = {"inbound": 7}


def retention_days(topic_attr: str, default: int) -> int:
    return RETENTION_DAYS.get(topic_attr, default)


class Resource(IntEnum):  # Kafka's AclResourceType
    TOPIC = 2
    GROUP = 3


class Pattern(IntEnum):  # Kafka's PatternType
    LITERAL = 3
    PREFIXED = 4


class Operation(IntEnum):  # Kafka's AclOperation
    READ = 3
    WRITE = 4
    DESCRIBE = 8


@dataclass(frozen=True, order=True)
class Binding:
    principal: str  # "User:sais-ingest"
    resource: Resource
    name: str
    pattern: Pattern
    operation: Operation


def topics_of(principal: str, prefix: str) -> tuple[list[str], list[str]]:
    """(topics read, topics written) by a service or the publisher, under a topic prefix."""
    try:
        access = ACCESS[principal]
    except KeyError:
        raise ConfigurationError(f"unknown Kafka principal {principal!r}") from None
    topics = Topics(prefix)
    return [getattr(topics, t) for t in access.reads], [getattr(topics, t) for t in access.writes]


def group_prefix(service: str, prefix: str) -> str:
    return f"{prefix}-{service}"


def bindings(prefix: str) -> list[Binding]:
    """Every ACL the product needs under a topic prefix (allow only; nothing is allowed otherwise)."""
    out: set[Binding] = set()
    for name, access in ACCESS.items():
        user = f"User:{kafka_user(name)}"
        reads, writes = topics_of(name, prefix)
        for topic in reads:
            out |= {
                Binding(user, Resource.TOPIC, topic, Pattern.LITERAL, op) for op in (Operation.READ, Operation.DESCRIBE)
            }
        for topic in writes:
            out |= {
                Binding(user, Resource.TOPIC, topic, Pattern.LITERAL, op)
                for op in (Operation.WRITE, Operation.DESCRIBE)
            }
        if access.consumes:
            out.add(Binding(user, Resource.GROUP, group_prefix(name, prefix), Pattern.PREFIXED, Operation.READ))
    return sorted(out)


def strimzi_acls(principal: str, prefix: str) -> list[dict]:
    """The same rights as a Strimzi ``KafkaUser``'s ``spec.authorization.acls``."""
    user = f"User:{kafka_user(principal)}"
    merged: dict[tuple[str, str, str], list[str]] = {}
    for b in bindings(prefix):
        if b.principal == user:
            kind = "topic" if b.resource is Resource.TOPIC else "group"
            merged.setdefault((kind, b.name, b.pattern.name.lower()), []).append(b.operation.name.capitalize())
    return [
        {"resource": {"type": kind, "name": name, "patternType": pattern}, "operations": sorted(ops)}
        for (kind, name, pattern), ops in merged.items()
    ]


def strimzi_manifests(
    prefix: str = "sais",
    cluster: str = "sais",
    partitions: int = 6,
    replicas: int = 3,
    default_retention_days: int = 120,
) -> tuple[str, str]:
    """(KafkaTopics, KafkaUsers) as YAML for Strimzi: the same topics, retention and ACLs as
    ``sais kafka setup`` applies to a broker without an operator."""
    import yaml

    topics = Topics(prefix)
    labels = {"strimzi.io/cluster": cluster}
    topic_docs = []
    for attr in Topics.names():
        name = getattr(topics, attr)
        days = retention_days(attr, default_retention_days)
        topic_docs.append(
            {
                "apiVersion": "kafka.strimzi.io/v1beta2",
                "kind": "KafkaTopic",
                "metadata": {"name": name, "labels": labels},
                "spec": {
                    "topicName": name,
                    "partitions": partitions,
                    "replicas": replicas,
                    "config": {
                        "retention.ms": days * 24 * 3600 * 1000,
                        "min.insync.replicas": min(2, replicas),
                        "cleanup.policy": "delete",
                    },
                },
            }
        )
    user_docs = [
        {
            "apiVersion": "kafka.strimzi.io/v1beta2",
            "kind": "KafkaUser",
            "metadata": {"name": kafka_user(name), "labels": labels},
            "spec": {
                # the password comes from a secret the operator creates beside it (the same value goes in
                # the service's own sais-<service>-credentials in the application's namespace)
                "authentication": {
                    "type": "scram-sha-512",
                    "password": {
                        "valueFrom": {"secretKeyRef": {"name": f"{kafka_user(name)}-password", "key": "password"}}
                    },
                },
                "authorization": {"type": "simple", "acls": strimzi_acls(name, prefix)},
            },
        }
        for name in ACCESS
    ]
    head = "# Generated by `sais kafka manifests` from sais_shared.kafka_access: edit that, not this file.\n"
    dump = lambda docs: head + yaml.safe_dump_all(docs, sort_keys=False)  # noqa: E731
    return dump(topic_docs), dump(user_docs)
