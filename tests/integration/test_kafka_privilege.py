"""Each service's Kafka user is confined by the broker itself (TLS, SCRAM-SHA-512, ACLs): it writes only
the topics it publishes, reads only the topics it consumes, joins only its own consumer groups; the
upstream publisher can only write the inbound topic; nobody gets in without a password."""

import asyncio
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    KafkaError,
    TopicAuthorizationFailedError,
)
from sais_shared.kafka_access import topics_of
from sais_shared.settings import SERVICES
from sais_shared.topics import Topics

pytestmark = pytest.mark.integration


@pytest.fixture
def secured(infra, env):
    if infra.kafka_env.get("SAIS_KAFKA_SECURITY_PROTOCOL") == "PLAINTEXT":
        pytest.skip("this broker has no authentication (a Docker test broker): nothing to prove")
    return env


def login(infra, env, principal: str) -> dict:
    return infra.kafka_as(principal, Path(env["SAIS_CREDENTIALS_DIR"]))


async def produce(kafka: dict, topic: str) -> None:
    p = AIOKafkaProducer(**kafka, enable_idempotence=True, request_timeout_ms=10000)
    try:
        await p.start()
        await p.send_and_wait(topic, b"{}")
    finally:
        await p.stop()


async def read(kafka: dict, topic: str, group: str | None) -> None:
    """Fetch from the topic (as a group member when ``group`` is given) until the broker answers."""
    c = AIOKafkaConsumer(**kafka, group_id=group, enable_auto_commit=False, auto_offset_reset="earliest")
    await c.start()
    try:
        if group:
            c.subscribe([topic])
        else:
            c.assign([TopicPartition(topic, 0)])
        await c.getmany(timeout_ms=3000)
    finally:
        await c.stop()


async def describe_errors(kafka: dict, topics: list[str]) -> dict[str, int]:
    """The broker's answer to a metadata request for each topic (0: visible)."""
    admin = AIOKafkaAdminClient(**kafka)
    await admin.start()
    try:
        return {t["topic"]: t["error_code"] for t in await admin.describe_topics(topics)}
    finally:
        await admin.close()


@pytest.mark.parametrize("service", SERVICES)
async def test_a_service_reads_and_writes_its_own_topics_and_nothing_else(infra, secured, service):
    prefix = secured["SAIS_TOPIC_PREFIX"]
    kafka = login(infra, secured, service)
    reads, writes = topics_of(service, prefix)
    others = [t for t in Topics(prefix).all() if t not in writes]

    await produce(kafka, writes[0])  # allowed
    await read(kafka, reads[0], f"{prefix}-{service}")  # allowed: its topic, its own group
    with pytest.raises(TopicAuthorizationFailedError):
        await produce(kafka, others[0])
    written_not_read = next(t for t in writes if t not in reads)
    with pytest.raises(TopicAuthorizationFailedError):
        await read(kafka, written_not_read, None)  # it may see the topic, not fetch from it
    untouched = [t for t in Topics(prefix).all() if t not in reads + writes]
    assert await describe_errors(kafka, untouched) == {t: TopicAuthorizationFailedError.errno for t in untouched}
    other = next(s for s in SERVICES if s != service)
    with pytest.raises(GroupAuthorizationFailedError):
        await read(kafka, reads[0], f"{prefix}-{other}")  # another service's group: never


async def test_the_upstream_publisher_can_only_write_the_inbound_topic(infra, secured):
    prefix = secured["SAIS_TOPIC_PREFIX"]
    kafka = login(infra, secured, "publisher")
    await produce(kafka, Topics(prefix).inbound)
    with pytest.raises(TopicAuthorizationFailedError):
        await produce(kafka, Topics(prefix).pupil_recorded)
    with pytest.raises(TopicAuthorizationFailedError):
        await read(kafka, Topics(prefix).inbound, None)
    others = [t for t in Topics(prefix).all() if t != Topics(prefix).inbound]
    assert set((await describe_errors(kafka, others)).values()) == {TopicAuthorizationFailedError.errno}


async def test_no_password_or_a_wrong_one_is_refused(infra, secured):
    kafka = login(infra, secured, "ingest")
    wrong = {**kafka, "sasl_plain_password": "not-the-password"}
    with pytest.raises(KafkaError):
        await asyncio.wait_for(produce(wrong, Topics(secured["SAIS_TOPIC_PREFIX"]).pupil_recorded), 30)
    plain = {"bootstrap_servers": kafka["bootstrap_servers"]}  # no TLS, no login
    with pytest.raises(KafkaConnectionError):
        await asyncio.wait_for(produce(plain, Topics(secured["SAIS_TOPIC_PREFIX"]).pupil_recorded), 30)


async def test_setup_gives_the_publishers_login_a_produce_quota_and_sets_it_back(infra, secured):
    """Finding 6: whoever holds the publishers' Kafka login could push anything onto the inbound topic as
    fast as the broker takes it. `sais kafka setup` now sets a produce quota on that user, and sets it back
    when someone changed it (a higher rate here, so that no other test is throttled meanwhile)."""
    from sais_shared.kafka import setup_kafka
    from sais_shared.kafka_quotas import quotas_of, set_quotas
    from sais_shared.settings import kafka_user

    from deploy.local import stack

    admin_settings = stack.kafka_admin_settings(secured)
    publisher = kafka_user("publisher")
    admin = AIOKafkaAdminClient(**admin_settings.kafka_login(None))
    await admin.start()
    try:
        done = await setup_kafka(admin_settings, secured["SAIS_TOPIC_PREFIX"])
        rate = float(admin_settings.kafka_publisher_byte_rate)
        assert done["quotas"] == 1 and await quotas_of(admin, publisher) == {"producer_byte_rate": rate}
        assert await quotas_of(admin, kafka_user("ingest")) == {}  # the services are never throttled
        await set_quotas(admin, {publisher: {"producer_byte_rate": 1e12}})
        assert await quotas_of(admin, publisher) == {"producer_byte_rate": 1e12}
        await setup_kafka(admin_settings, secured["SAIS_TOPIC_PREFIX"])
        assert await quotas_of(admin, publisher) == {"producer_byte_rate": rate}
    finally:
        await admin.close()


async def test_each_publisher_has_a_kafka_login_of_its_own_and_one_taken_out_of_the_registry_loses_it(infra, secured):
    """Finding 6: every upstream system shared one Kafka login, so none could be shut out alone. Now each
    publisher in the registry may have its own (kafka_user); `sais kafka setup` lets exactly those write the
    inbound topic, each under the produce quota, and takes the right from one no longer listed."""
    import secrets

    from sais_shared.kafka import setup_kafka
    from sais_shared.kafka_quotas import quotas_of
    from sais_shared.settings import kafka_user

    from deploy.local import stack
    from tests.conftest import wait_until

    prefix = secured["SAIS_TOPIC_PREFIX"]
    inbound = Topics(prefix).inbound
    admin_settings = stack.kafka_admin_settings(secured)
    base = login(infra, secured, "publisher")
    users = {f"{prefix}-sims": secrets.token_hex(16), f"{prefix}-admissions": secrets.token_hex(16)}
    for user, password in users.items():
        await asyncio.to_thread(stack.add_kafka_user, stack.layout(), user, password)
    as_user = {u: {**base, "sasl_plain_username": u, "sasl_plain_password": p} for u, p in users.items()}

    async def logs_in(kafka) -> bool:  # a new login reaches the broker with the controller's metadata
        admin = AIOKafkaAdminClient(**kafka)
        try:
            await admin.start()
            return True
        except KafkaError:
            return False
        finally:
            await admin.close()

    for kafka in as_user.values():
        await wait_until(lambda kafka=kafka: logs_in(kafka), what="the new login known to the broker")
    sims, admissions = sorted(users, reverse=True)
    done = await setup_kafka(admin_settings, prefix, publishers=[sims, admissions])
    assert done["quotas"] == 2
    for user in (sims, admissions):
        await produce(as_user[user], inbound)
        with pytest.raises(TopicAuthorizationFailedError):
            await produce(as_user[user], Topics(prefix).pupil_recorded)
    with pytest.raises(TopicAuthorizationFailedError):
        await produce(base, inbound)  # the shared login is not in this registry: it lost the topic
    admin = AIOKafkaAdminClient(**admin_settings.kafka_login(None))
    await admin.start()
    try:
        assert await quotas_of(admin, admissions) == {
            "producer_byte_rate": float(admin_settings.kafka_publisher_byte_rate)
        }
    finally:
        await admin.close()
    # The admissions system leaves the registry: its login can no longer write; the other still can.
    done = await setup_kafka(admin_settings, prefix, publishers=[sims])
    assert done["acls_removed"] == 2  # its WRITE and DESCRIBE on the inbound topic
    with pytest.raises((TopicAuthorizationFailedError, ClusterAuthorizationFailedError)):
        await produce(as_user[admissions], inbound)  # with no topic left to write, not even a producer id
    await produce(as_user[sims], inbound)
    await setup_kafka(admin_settings, prefix)  # the shared default again, as the other tests expect
    assert kafka_user("publisher") == base["sasl_plain_username"]


async def test_setup_keeps_the_acls_and_the_retention_exactly_the_products(infra, secured):
    """Finding 13 and 14: an ACL beyond the table on the prefix's own topics is removed (it survived
    before), a retention someone shortened is set back (the deletion certificates are kept for good),
    and a broader ACL that reaches the product's topics is refused and named, never removed."""
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
    from sais_shared.errors import ConfigurationError
    from sais_shared.kafka import _create_acls, _delete_acls, setup_kafka
    from sais_shared.kafka_access import Binding, Grant, Operation, Pattern, Resource

    from deploy.local import stack

    prefix = secured["SAIS_TOPIC_PREFIX"]
    topics = Topics(prefix)
    admin_settings = stack.kafka_admin_settings(secured)
    admin = AIOKafkaAdminClient(**admin_settings.kafka_login(None))
    await admin.start()
    broad = Grant("User:mallory", "*", int(Resource.TOPIC), prefix, int(Pattern.PREFIXED), int(Operation.READ), 3)
    try:
        extra = Binding("User:sais-publisher", Resource.TOPIC, topics.inbound, Pattern.LITERAL, Operation.READ)
        await _create_acls(admin, [extra])
        one_day = ConfigResource(
            ConfigResourceType.TOPIC,
            topics.deletion_completed,
            {"retention.ms": "86400000", "cleanup.policy": "delete"},
        )
        await admin.alter_configs([one_day])
        done = await setup_kafka(admin_settings, prefix)
        assert done["acls_removed"] == 1 and done["topics_altered"] == 1
        with pytest.raises(TopicAuthorizationFailedError):
            await read(login(infra, secured, "publisher"), topics.inbound, None)
        [described] = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topics.deletion_completed)]
        )
        config = {e[0]: e[1] for _, _, _, _, entries in described.resources for e in entries}
        assert config["retention.ms"] == "-1" and config["cleanup.policy"] == "delete"
        again = await setup_kafka(admin_settings, prefix)  # idempotent
        assert again["acls_removed"] == 0 and again["topics_altered"] == 0
        await _create_acls(
            admin, [Binding(broad.principal, Resource.TOPIC, broad.name, Pattern.PREFIXED, Operation.READ)]
        )
        with pytest.raises(ConfigurationError, match=f"User:mallory READ on topic '{prefix}' \\(prefixed\\)"):
            await setup_kafka(admin_settings, prefix)
    finally:
        await _delete_acls(admin, [broad])
        await admin.close()
