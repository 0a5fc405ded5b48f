"""Who may do what on Kafka, as data: the topics each principal reads and writes, and its consumer
groups. One table feeds the broker's ACLs (``sais kafka setup``), the Strimzi ``KafkaUser``s in
``deploy/k8s`` (a test checks they agree) and each service's topic check at start.

A service's consumer groups are the ones named ``<topic prefix>-<service>…`` (the default group of
ingest is ``sais-ingest``); its topics are literal names. Nothing else is allowed: the broker runs
with ``allow.everyone.if.no.acl.found=false``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum

from .errors import ConfigurationError
from .settings import SERVICES, consumer_group, kafka_user
from .topics import Topics


@dataclass(frozen=True)
class Access:
    reads: tuple[str, ...]  # names of Topics properties
    writes: tuple[str, ...]
    consumes: bool = True  # has consumer groups


ACCESS: dict[str, Access] = {
    "ingest": Access(
        reads=("inbound", "deletion_requested"),
        writes=("pupil_recorded", "extract_completed", "row_rejected", "dead_letter", "ingest_deletion_confirmed"),
    ),
    "eligibility": Access(
        reads=("pupil_recorded", "extract_completed", "deletion_requested"),
        writes=("cohort", "dead_letter", "eligibility_deletion_confirmed"),
    ),
    "delivery": Access(
        reads=("cohort", "deletion_requested"),
        writes=("delivery_completed", "dead_letter", "delivery_deletion_confirmed"),
    ),
    "retention": Access(
        reads=(
            "delivery_completed",
            "extract_completed",
            "ingest_deletion_confirmed",
            "eligibility_deletion_confirmed",
            "delivery_deletion_confirmed",
        ),
        writes=("deletion_requested", "deletion_completed", "dead_letter"),
    ),
    # An upstream system (MIS, admissions) that publishes encrypted, signed extracts: nothing else. Each
    # publisher may have a Kafka user of its own (the registry's kafka_user); by default all share one.
    "publisher": Access(reads=(), writes=("inbound",), consumes=False),
}
PUBLISHERS: tuple[str, ...] = (kafka_user("publisher"),)  # the publishers' Kafka users when no registry names any


def users_of(principal: str, publishers: Iterable[str] = PUBLISHERS) -> list[str]:
    """The Kafka users that hold a principal's rights: a service's own, or each publisher's."""
    return sorted(set(publishers)) if principal == "publisher" else [kafka_user(principal)]


assert set(SERVICES) <= set(ACCESS)

# Retention of a topic (days) where it differs from SAIS_TOPIC_RETENTION_DAYS; None keeps it for good.
# The inbound topic holds whole extracts only until ingest has read them (crypto-shredding is what
# deletes readable data). The deletion certificates are kept for as long as the installation:
# `sais retention reapply` needs every one of them whenever a backup is restored, however old the
# backup (they hold ids, dates and counts, never personal data).
RETENTION_DAYS: dict[str, int | None] = {"inbound": 7, "deletion_completed": None}


def topic_config(topic_attr: str, default_days: int) -> dict[str, str]:
    """The configuration `sais kafka setup` gives a topic (and keeps it at: a changed one is altered)."""
    days = RETENTION_DAYS.get(topic_attr, default_days)
    return {"retention.ms": "-1" if days is None else str(days * 24 * 3600 * 1000), "cleanup.policy": "delete"}


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


@dataclass(frozen=True, order=True)
class Grant:
    """An ACL as the broker holds it (DescribeAcls): any principal, host, resource and permission."""

    principal: str
    host: str
    resource: int  # AclResourceType
    name: str
    pattern: int  # PatternType
    operation: int  # AclOperation (2 is ALL)
    permission: int  # 2 DENY, 3 ALLOW

    def __str__(self) -> str:
        kind = {2: "topic", 3: "group"}.get(self.resource, f"resource type {self.resource}")
        how = {3: "", 4: " (prefixed)"}.get(self.pattern, f" (pattern {self.pattern})")
        op = {2: "ALL"}.get(self.operation) or Operation(self.operation).name
        return f"{self.principal} {op} on {kind} {self.name!r}{how} from host {self.host}"


def review_acls(
    grants: Iterable[Grant], prefix: str, publishers: Iterable[str] = PUBLISHERS
) -> tuple[list[Grant], list[Grant]]:
    """The allow-ACLs on the broker that the table has not, and that reach this prefix's topics or
    consumer groups: (confined to the prefix's own names, so `sais kafka setup` removes them;
    broader, a wildcard or a shorter prefix that also reaches other applications' names, so setup
    refuses and lists them for the Kafka administrator). Deny ACLs only take rights away: kept."""
    table = {
        (b.principal, "*", int(b.resource), b.name, int(b.pattern), int(b.operation))
        for b in bindings(prefix, publishers)
    }
    topics = Topics(prefix).all()
    groups = [group_prefix(name, prefix) for name, access in ACCESS.items() if access.consumes]
    ours: list[Grant] = []
    broader: list[Grant] = []
    for g in sorted(set(grants)):
        if g.permission != 3 or g.resource not in (Resource.TOPIC, Resource.GROUP):
            continue
        if (g.principal, g.host, g.resource, g.name, g.pattern, g.operation) in table:
            continue
        names, namespace = (topics, (f"{prefix}.",)) if g.resource == Resource.TOPIC else (groups, tuple(groups))
        if g.name.startswith(namespace):
            ours.append(g)
        elif g.name == "*" or (g.pattern == Pattern.PREFIXED and any(n.startswith(g.name) for n in names)):
            broader.append(g)
    return ours, broader


def topics_of(principal: str, prefix: str) -> tuple[list[str], list[str]]:
    """(topics read, topics written) by a service or the publisher, under a topic prefix."""
    try:
        access = ACCESS[principal]
    except KeyError:
        raise ConfigurationError(f"unknown Kafka principal {principal!r}") from None
    topics = Topics(prefix)
    return [getattr(topics, t) for t in access.reads], [getattr(topics, t) for t in access.writes]


def quotas(publisher_byte_rate: int, publishers: Iterable[str] = PUBLISHERS) -> dict[str, dict[str, float]]:
    """Broker quotas by Kafka user: each publisher's produce rate (the services have none: they must
    never be throttled mid-transaction)."""
    return {u: {"producer_byte_rate": float(publisher_byte_rate)} for u in users_of("publisher", publishers)}


group_prefix = consumer_group  # a service's groups: <prefix>-<service>, and names that start with it


def bindings(prefix: str, publishers: Iterable[str] = PUBLISHERS) -> list[Binding]:
    """Every ACL the product needs under a topic prefix (allow only; nothing is allowed otherwise), with
    the publishers' rights for each of their Kafka users."""
    out: set[Binding] = set()
    for name, access in ACCESS.items():
        for u in users_of(name, publishers):
            out |= _bindings_of(name, access, f"User:{u}", prefix)
    return sorted(out)


def _bindings_of(name: str, access: Access, user: str, prefix: str) -> set[Binding]:
    reads, writes = topics_of(name, prefix)
    out = {
        Binding(user, Resource.TOPIC, t, Pattern.LITERAL, op)
        for t in reads
        for op in (Operation.READ, Operation.DESCRIBE)
    }
    out |= {
        Binding(user, Resource.TOPIC, t, Pattern.LITERAL, op)
        for t in writes
        for op in (Operation.WRITE, Operation.DESCRIBE)
    }
    if access.consumes:
        out.add(Binding(user, Resource.GROUP, group_prefix(name, prefix), Pattern.PREFIXED, Operation.READ))
    return out


def strimzi_acls(principal: str, prefix: str, user: str | None = None) -> list[dict]:
    """The same rights as a Strimzi ``KafkaUser``'s ``spec.authorization.acls`` (``user``: a publisher's own)."""
    user = f"User:{user or kafka_user(principal)}"
    merged: dict[tuple[str, str, str], list[str]] = {}
    for b in sorted(_bindings_of(principal, ACCESS[principal], user, prefix)):
        if b.principal == user:
            kind = "topic" if b.resource is Resource.TOPIC else "group"
            merged.setdefault((kind, b.name, b.pattern.name.lower()), []).append(b.operation.name.capitalize())
    return [
        {"resource": {"type": kind, "name": name, "patternType": pattern}, "operations": sorted(ops)}
        for (kind, name, pattern), ops in merged.items()
    ]


def _strimzi_quotas(values: dict[str, float] | None) -> dict:
    if not values:
        return {}
    names = {"producer_byte_rate": "producerByteRate", "consumer_byte_rate": "consumerByteRate"}
    return {"quotas": {names[k]: int(v) for k, v in values.items()}}


def _strimzi_topic(name: str, config: dict[str, str], labels: dict[str, str], partitions: int, replicas: int) -> dict:
    spec_config = {
        "retention.ms": int(config["retention.ms"]),
        "min.insync.replicas": min(2, replicas),
        "cleanup.policy": config["cleanup.policy"],
    }
    return {
        "apiVersion": "kafka.strimzi.io/v1beta2",
        "kind": "KafkaTopic",
        "metadata": {"name": name, "labels": labels},
        "spec": {"topicName": name, "partitions": partitions, "replicas": replicas, "config": spec_config},
    }


def _strimzi_user(user: str, acls: list[dict], quota: dict[str, float] | None, labels: dict[str, str]) -> dict:
    return {
        "apiVersion": "kafka.strimzi.io/v1beta2",
        "kind": "KafkaUser",
        "metadata": {"name": user, "labels": labels},
        "spec": {
            # the password comes from a secret the operator creates beside it (the same value goes in the
            # service's own sais-<service>-credentials in the application's namespace)
            "authentication": {
                "type": "scram-sha-512",
                "password": {"valueFrom": {"secretKeyRef": {"name": f"{user}-password", "key": "password"}}},
            },
            "authorization": {"type": "simple", "acls": acls},
            **_strimzi_quotas(quota),
        },
    }


def strimzi_manifests(
    prefix: str = "sais",
    cluster: str = "sais",
    partitions: int = 6,
    replicas: int = 3,
    default_retention_days: int = 120,
    publisher_byte_rate: int = 10 << 20,
    publishers: Iterable[str] = PUBLISHERS,
) -> tuple[str, str]:
    """(KafkaTopics, KafkaUsers) as YAML for Strimzi: the same topics, retention and ACLs as
    ``sais kafka setup`` applies to a broker without an operator."""
    import yaml

    labels = {"strimzi.io/cluster": cluster}
    topic_docs = [
        _strimzi_topic(
            getattr(Topics(prefix), attr), topic_config(attr, default_retention_days), labels, partitions, replicas
        )
        for attr in Topics.names()
    ]
    user_docs = [
        _strimzi_user(user, strimzi_acls(name, prefix, user), quotas(publisher_byte_rate, publishers).get(user), labels)
        for name in ACCESS
        for user in users_of(name, publishers)
    ]
    head = "# Generated by `sais kafka manifests` from sais_shared.kafka_access: edit that, not this file.\n"
    dump = lambda docs: head + yaml.safe_dump_all(docs, sort_keys=False)
    return dump(topic_docs), dump(user_docs)
