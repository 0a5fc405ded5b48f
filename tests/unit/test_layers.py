"""The layers of every service, read from the source: the domain does no I/O and knows nothing above it;
the service layer reaches storage, servers and files only through its ports (``service_layer/ports.py``),
never an adapter; nothing below the composition root imports it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
SERVICES = ("ingest", "eligibility", "delivery", "retention")
# What a domain module may not import: the drivers and servers the adapters wrap.
IO = ("asyncpg", "aiokafka", "faststream", "aiosmtplib", "openpyxl", "httpx", "socket", "subprocess", "ctypes")


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import in a module, relative ones resolved against its package."""
    package = ".".join(path.relative_to(path.parents[2]).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(p for p in (base, node.module or "") if p)
            found += (
                [(node.lineno, module)] if node.module else [(node.lineno, f"{module}.{a.name}") for a in node.names]
            )
    return found


def modules(service: str, layer: str) -> list[Path]:
    return sorted((REPO / "services" / service / "src" / f"sais_{service}" / layer).glob("*.py"))


@pytest.mark.parametrize("service", SERVICES)
def test_the_service_layer_reaches_outside_only_through_its_ports(service):
    crossing = [
        f"{p.relative_to(REPO)}:{line} imports {m}"
        for p in modules(service, "service_layer")
        for line, m in imports(p)
        if m.startswith((f"sais_{service}.adapters", f"sais_{service}.app", f"sais_{service}.entrypoints"))
    ]
    assert modules(service, "service_layer") and crossing == []


@pytest.mark.parametrize("service", SERVICES)
def test_the_domain_does_no_io_and_knows_nothing_above_it(service):
    above = (
        f"sais_{service}.service_layer",
        f"sais_{service}.adapters",
        f"sais_{service}.app",
        f"sais_{service}.entrypoints",
    )
    crossing = [
        f"{p.relative_to(REPO)}:{line} imports {m}"
        for p in modules(service, "domain")
        for line, m in imports(p)
        if m.startswith(above) or m.split(".")[0] in IO
    ]
    assert modules(service, "domain") and crossing == []


def test_the_check_sees_a_crossing(tmp_path):
    """The import reader resolves relative imports, so the checks above cannot pass by not seeing one."""
    module = tmp_path / "sais_x" / "service_layer" / "use_case.py"
    module.parent.mkdir(parents=True)
    module.write_text("from ..adapters.store import Store\nfrom . import ports\nimport asyncpg\n")
    assert [m for _, m in imports(module)] == ["sais_x.adapters.store", "sais_x.service_layer.ports", "asyncpg"]


def test_every_consumer_names_a_use_case_of_its_service():
    from sais_delivery.app import WIRING as delivery
    from sais_delivery.service_layer.deliver import DeliveryService
    from sais_eligibility.app import WIRING as eligibility
    from sais_eligibility.service_layer.handlers import EligibilityService
    from sais_ingest.app import WIRING as ingest
    from sais_ingest.service_layer.ingest_file import Ingest
    from sais_retention.app import WIRING as retention
    from sais_retention.service_layer.retention import RetentionService

    for wiring, service in (
        (ingest, Ingest),
        (eligibility, EligibilityService),
        (delivery, DeliveryService),
        (retention, RetentionService),
    ):
        assert wiring.consumers, wiring.service
        for c in wiring.consumers:
            assert callable(c.handle) or callable(getattr(service, c.handle, None)), (wiring.service, c.handle)
    assert [w.deletes is not None for w in (ingest, eligibility, delivery, retention)] == [True, True, True, False]


def test_every_error_the_product_raises_on_purpose_is_a_sais_error():
    """One family to catch and map to an exit code (src/sais/failures.py): none leaks outside it."""
    import inspect

    import sais_delivery.domain.errors
    import sais_eligibility.domain.rules
    import sais_ingest.domain.extracts
    import sais_ingest.domain.model
    import sais_shared.errors
    import sais_shared.inbound
    from sais_shared.errors import SaisError

    modules = (
        sais_delivery.domain.errors,
        sais_eligibility.domain.rules,
        sais_ingest.domain.model,
        sais_ingest.domain.extracts,
        sais_shared.errors,
        sais_shared.inbound,
    )
    errors = [
        cls
        for m in modules
        for _, cls in inspect.getmembers(m, inspect.isclass)
        if issubclass(cls, Exception) and cls.__module__ == m.__name__
    ]
    assert len(errors) > 15 and [c.__name__ for c in errors if not issubclass(c, SaisError)] == []
