"""The checked-in AsyncAPI documents are what the code generates, and the official parser accepts them."""

import pytest
import yaml
from sais_shared.topics import Topics

from sais.asyncapi import DOCS, generate

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def generated():
    return generate()


def test_checked_in_documents_match_the_code(generated):
    for name, (text, html) in generated.items():
        assert (DOCS / f"{name}.yaml").read_text(encoding="utf-8") == text, (
            f"docs/asyncapi/{name}.yaml is out of date: run `sais docs asyncapi`"
        )
        assert (DOCS / f"{name}.html").read_text(encoding="utf-8") == html


def test_every_topic_and_the_inbound_framing_are_documented(generated):
    channels = {}
    for _, (text, _) in generated.items():
        for ch in yaml.safe_load(text)["channels"].values():
            channels[ch["address"]] = ch
    assert set(channels) == set(Topics().all())
    assert {"sais.retention.deletion-requested.v1", "sais.ingest.deletion-confirmed.v1"} <= set(channels)
    ingest = yaml.safe_load(generated["ingest"][0])
    inbound = next(m for k, m in ingest["components"]["messages"].items() if k.startswith("sais.ingest.inbound"))
    schemas = ingest["components"]["schemas"]
    variants = [schemas[v["$ref"].rsplit("/", 1)[1]] if "$ref" in v else v for v in inbound["payload"]["oneOf"]]
    kinds = {v["properties"]["type"]["const"] for v in variants}
    assert kinds == {"extract-started", "record", "extract-completed"}
    assert "extract-started → record × n → extract-completed" in channels["sais.ingest.inbound.v1"]["description"]


def _kinds(doc: dict, message: dict) -> set[str]:
    """The event types (their ``type`` constant) a message's payload may be."""
    schemas = doc["components"]["schemas"]

    def resolve(s: dict) -> dict:
        return schemas[s["$ref"].rsplit("/", 1)[1]] if "$ref" in s else s

    payload = resolve(message["payload"])
    variants = [resolve(v) for v in payload.get("oneOf", payload.get("anyOf", [payload]))]
    return {v["properties"]["type"]["const"] for v in variants}


def test_what_each_topic_carries_is_declared_by_its_publisher(generated):
    """Every payload a consumer accepts on a topic is in what the topic's publisher declares (the cohort topic
    carries eligibility's coverage checks too, which delivery reads)."""
    published: dict[str, set[str]] = {}
    consumed: dict[str, set[str]] = {}
    for _, (text, _) in generated.items():
        doc = yaml.safe_load(text)
        for name, message in doc["components"]["messages"].items():
            topic, role = name.split(":")[0], name.split(":")[1]
            kinds = _kinds(doc, message)
            (published if role == "publish" else consumed).setdefault(topic, set()).update(kinds)
    assert published["sais.eligibility.cohort.v1"] == {
        "cohort-member-added",
        "cohort-member-withdrawn",
        "coverage-checked",
    }
    for topic, kinds in consumed.items():
        if topic in published:  # the inbound topic's publishers are upstream systems
            assert kinds <= published[topic], f"{topic}: consumed {kinds - published[topic]} that no one declares"
