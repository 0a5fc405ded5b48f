"""Each service's HTTP port: SAIS_<SERVICE>_HTTP_PORT, else SAIS_HTTP_PORT, else its own default, so
that four services on one host each listen where their own setting says."""

from __future__ import annotations

import pytest
from sais_delivery.config import DeliverySettings
from sais_eligibility.config import EligibilitySettings
from sais_ingest.config import IngestSettings
from sais_retention.config import RetentionSettings

pytestmark = pytest.mark.unit

SERVICES = {
    "ingest": (IngestSettings, 8081),
    "eligibility": (EligibilitySettings, 8082),
    "delivery": (DeliverySettings, 8083),
    "retention": (RetentionSettings, 8084),
}


@pytest.fixture
def env(monkeypatch):
    for name in ("SAIS_HTTP_PORT", *(f"SAIS_{s.upper()}_HTTP_PORT" for s in SERVICES)):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SAIS_DEV_MODE", "1")
    return monkeypatch


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_listens_on_its_own_port_setting_then_the_common_one_then_its_default(env, service):
    cls, default = SERVICES[service]
    assert cls().http_port == default
    env.setenv("SAIS_HTTP_PORT", "9000")
    assert cls().http_port == 9000
    env.setenv(f"SAIS_{service.upper()}_HTTP_PORT", "9100")
    assert cls().http_port == 9100
    others = [c().http_port for s, (c, _) in SERVICES.items() if s != service]
    assert others == [9000, 9000, 9000]  # another service's own setting is not this one's
    assert cls(http_port=0).http_port == 0  # as tests and the bench set it
