"""AsyncAPI documents of every topic, generated from the FastStream apps (``sais docs asyncapi``).

FastStream documents publishers from their schemas; our subscribers parse records themselves (so
one bad record cannot fail its batch), so their payload models are taken from the registry that
``batch_consumer`` keeps and written into the document here. The documents are checked in under
``docs/asyncapi/`` with an HTML rendering; a test regenerates them and fails on any difference.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from faststream.specification.asyncapi import get_asyncapi_html
from pydantic import TypeAdapter
from sais_shared.kafka import SUBSCRIBER_PAYLOADS

DOCS = Path(__file__).resolve().parents[2] / "docs" / "asyncapi"


def _builders() -> dict[str, Any]:
    from sais_delivery.app import build_app as delivery
    from sais_delivery.config import DeliverySettings
    from sais_eligibility.app import build_app as eligibility
    from sais_eligibility.config import EligibilitySettings
    from sais_ingest.app import build_app as ingest
    from sais_ingest.config import IngestSettings
    from sais_retention.app import build_app as retention
    from sais_retention.config import RetentionSettings

    fixed = {
        "kafka_bootstrap": "kafka:9093",
        "kafka_security_protocol": "SASL_SSL",
        "topic_prefix": "sais",
        "log_level": "WARNING",
    }
    return {
        "ingest": lambda: ingest(_documented(IngestSettings)(**fixed)),
        "eligibility": lambda: eligibility(_documented(EligibilitySettings)(**fixed)),
        "delivery": lambda: delivery(_documented(DeliverySettings)(**fixed)),
        "retention": lambda: retention(_documented(RetentionSettings)(**fixed)),
    }


def _documented(settings_class: type) -> type:
    """The service's settings with its Kafka user but no password: the documents show the login
    (SASL_SSL, SCRAM-SHA-512) and never need a secret to be built."""
    from sais_shared.settings import service_principal

    def credentials(self, service):
        return service_principal(service), "(documentation only)"

    return type(f"Documented{settings_class.__name__}", (settings_class,), {"_kafka_credentials": credentials})


class _Doc:
    def __init__(self, data: dict) -> None:
        self.data = data
        self.title = data["info"]["title"]

    def to_json(self) -> str:
        return json.dumps(self.data)

    def to_jsonable(self) -> Any:
        return self.data

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.data, sort_keys=False, allow_unicode=True, width=120)


def _asyncapi_schema(node: Any) -> Any:
    """AsyncAPI's Schema Object wants ``discriminator`` as the property name; pydantic writes OpenAPI's object."""
    if isinstance(node, dict):
        out = {k: _asyncapi_schema(v) for k, v in node.items()}
        if isinstance(out.get("discriminator"), dict):
            out["discriminator"] = out["discriminator"]["propertyName"]
        return out
    if isinstance(node, list):
        return [_asyncapi_schema(v) for v in node]
    return node


def document(build: Any) -> dict:
    app = build()
    spec = app.schema.to_specification().to_jsonable()
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    for channel_name, channel in spec.get("channels", {}).items():
        payload = SUBSCRIBER_PAYLOADS.get(channel_name)
        if payload is None:
            continue
        adapter = payload if isinstance(payload, TypeAdapter) else TypeAdapter(payload)
        schema = adapter.json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        for ref in channel.get("messages", {}).values():
            message = spec["components"]["messages"][ref["$ref"].rsplit("/", 1)[1]]
            message["payload"] = schema
    for key in ("channels", "operations"):  # FastStream's order varies between processes: make it stable
        if key in spec:
            spec[key] = dict(sorted(spec[key].items()))
    for key in ("messages", "schemas"):
        spec["components"][key] = dict(sorted(spec["components"].get(key, {}).items()))
    return _asyncapi_schema(spec)


def generate() -> dict[str, tuple[str, str]]:
    """service → (YAML, HTML)."""
    out = {}
    for name, build in _builders().items():
        spec = document(build)
        out[name] = (
            yaml.safe_dump(spec, sort_keys=False, allow_unicode=True, width=120),
            get_asyncapi_html(_Doc(spec), try_it_out_path=None),
        )
    return out


def write(folder: Path = DOCS) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, (text, html) in generate().items():
        (folder / f"{name}.yaml").write_text(text, encoding="utf-8")
        (folder / f"{name}.html").write_text(html, encoding="utf-8")
        written += [folder / f"{name}.yaml", folder / f"{name}.html"]
    return written
