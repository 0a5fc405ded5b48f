"""The Kafka tuning settings reach the producer every service builds (docs/performance.md)."""

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
