"""The Kafka tuning settings reach the producer and every consumer each service builds (docs/performance.md)."""

import pytest
from sais_shared.kafka import make_broker
from sais_shared.settings import CommonSettings

pytestmark = pytest.mark.unit


def test_linger_and_batch_size_come_from_the_settings(monkeypatch):
    monkeypatch.setenv("SAIS_KAFKA_LINGER_MS", "35")
    monkeypatch.setenv("SAIS_KAFKA_MAX_BATCH_BYTES", "131072")
    settings = CommonSettings(kafka_security_protocol="PLAINTEXT", dev_mode=True)  # no login to read
    # FastStream keeps the producer's arguments as it was given them, until it connects
    given = make_broker(settings, "sais-test", "ingest")._connection_kwargs
    assert (given["linger_ms"], given["max_batch_size"]) == (35, 131072)


def test_the_defaults_are_linger_20_ms_and_256_kib_batches():
    settings = CommonSettings(kafka_security_protocol="PLAINTEXT", dev_mode=True)  # no login to read
    assert (settings.kafka_linger_ms, settings.kafka_max_batch_bytes) == (20, 256 * 1024)
    assert settings.kafka_max_poll_interval_ms == 300_000 and settings.kafka_batch_records == 1000
    assert settings.kafka_fetch_max_wait_ms == 2000


SERVICES = [
    ("sais_ingest.app", "sais_ingest.config", "IngestSettings"),
    ("sais_eligibility.app", "sais_eligibility.config", "EligibilitySettings"),
    ("sais_delivery.app", "sais_delivery.config", "DeliverySettings"),
    ("sais_retention.app", "sais_retention.config", "RetentionSettings"),
]


@pytest.mark.parametrize(("app_module", "config_module", "settings_class"), SERVICES)
def test_every_consumer_of_a_service_takes_the_consumer_settings(
    monkeypatch, app_module, config_module, settings_class
):
    import importlib

    tuned = {
        "SAIS_KAFKA_MAX_POLL_INTERVAL_MS": 654_321,
        "SAIS_KAFKA_FETCH_MAX_BYTES": 7_777_777,
        "SAIS_KAFKA_PARTITION_FETCH_BYTES": 3_333_333,
        "SAIS_KAFKA_HEARTBEAT_INTERVAL_MS": 2_222,
        "SAIS_KAFKA_FETCH_MAX_WAIT_MS": 4_444,
        "SAIS_KAFKA_BATCH_RECORDS": 1_234,
    }
    for name, value in tuned.items():
        monkeypatch.setenv(name, str(value))
    settings = getattr(importlib.import_module(config_module), settings_class)(
        kafka_security_protocol="PLAINTEXT", dev_mode=True
    )
    app = importlib.import_module(app_module).build_app(settings)
    subscribers = list(app.broker.subscribers)
    assert subscribers
    for sub in subscribers:
        # FastStream keeps each consumer's arguments as it was given them, until it connects
        given = sub._connection_args
        got = (
            given["max_poll_interval_ms"],
            given["fetch_max_bytes"],
            given["max_partition_fetch_bytes"],
            given["heartbeat_interval_ms"],
            given["fetch_max_wait_ms"],
            given["isolation_level"],
        )
        assert got == (654_321, 7_777_777, 3_333_333, 2_222, 4_444, "read_committed"), sub.topic_names
    # batch size: every consumer the wiring declares takes the setting, unless it names its own
    module = importlib.import_module(app_module)
    want = {c.max_records or 1_234 for c in module.WIRING.consumers}
    assert want <= {sub.max_records for sub in subscribers}


async def test_a_services_consumers_start_together_not_one_after_another(monkeypatch):
    """aiokafka's consumer start returns once the group has assigned it partitions; each joining member
    makes the group rebalance. Every consumer's start here returns only once all have begun: started in
    turn, the first would wait for ever (the test's timeout), started together they all return."""
    import asyncio

    from sais_shared.kafka import GroupBroker

    begun, started, published = [], [], []
    everyone = asyncio.Event()

    class Consumer:
        def __init__(self, n: int) -> None:
            self.n = n

        async def start(self) -> None:
            begun.append(self.n)
            if len(begun) == 5:
                everyone.set()
            await everyone.wait()  # the group's one rebalance, once every member has asked to join
            started.append(self.n)

    class Publisher:
        async def start(self) -> None:
            published.append(sorted(started))  # after every consumer

    consumers = [Consumer(n) for n in range(5)]
    monkeypatch.setattr(GroupBroker, "subscribers", property(lambda self: consumers))
    monkeypatch.setattr(GroupBroker, "publishers", property(lambda self: [Publisher()]))
    broker = make_broker(CommonSettings(kafka_security_protocol="PLAINTEXT", dev_mode=True), "sais-test", "retention")
    monkeypatch.setattr(broker, "connect", lambda: asyncio.sleep(0))
    await asyncio.wait_for(broker.start(), timeout=5)
    assert sorted(started) == [0, 1, 2, 3, 4] and published == [[0, 1, 2, 3, 4]] and broker.running
