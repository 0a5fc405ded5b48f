"""The cycle collector as the services and the CLI tune it: fewer collections, and cycles still collected.

Each case runs in a process of its own: the tuning freezes that process's heap and sets its thresholds."""

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit


def _run(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    return json.loads(out.stdout)


CYCLES = """
import gc, json
from sais_shared import memory
{tune}
class Node:
    pass
def cycles(n):
    for _ in range(n):
        a, b = Node(), Node()
        a.other, b.other = b, a  # garbage that reference counting alone never frees
cycles(300_000)
print(json.dumps({{"tracked": len(gc.get_objects()), "frozen": gc.get_freeze_count(),
                  "threshold": gc.get_threshold(), "young": memory.YOUNG}}))
"""


def test_cycles_are_still_collected_with_the_tuned_collector():
    tuned = _run(CYCLES.format(tune="memory.tune_collector()"))
    never = _run(CYCLES.format(tune="gc.disable()"))  # the same garbage, never collected
    assert tuned["threshold"][0] == tuned["young"] > 700
    assert never["tracked"] > 600_000  # 300,000 cycles of two objects each, all still there
    # collected as it goes: what is left is at most one young generation's worth, beside the frozen heap
    assert tuned["tracked"] < 3 * tuned["young"]
    assert tuned["frozen"] > 0  # what start-up made is frozen, not walked by each full collection


def test_the_cli_and_the_services_tune_it_before_they_work():
    probe = """
import gc, json, sys
from unittest import mock
import sais.cli
from sais_shared import ops
seen = {}
def record(*a, **k):
    seen["threshold"] = gc.get_threshold()[0]
with mock.patch.object(sais.cli, "command", side_effect=lambda: mock.Mock(main=lambda **k: record() or 0)):
    try:
        sais.cli.main()
    except SystemExit:
        pass
cli = seen.pop("threshold")
gc.set_threshold(700, 10, 10)
with mock.patch("uvicorn.run", side_effect=record):
    ops.serve(object(), 0)
print(json.dumps({"cli": cli, "service": seen["threshold"]}))
"""
    from sais_shared.memory import YOUNG

    assert _run(probe) == {"cli": YOUNG, "service": YOUNG}
