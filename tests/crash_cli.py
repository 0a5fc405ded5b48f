"""`sais` with a crash injected at a named point of delivery, for crash tests only:
``python -m tests.crash_cli POINT delivery send …`` exits 70 at POINT (after-prepare, after-send),
as a killed process would, with nothing flushed or cleaned up. The seam is the service's ``fault``
method, replaced here; production code has no switch that reaches it."""

import os
import sys

from sais_delivery.service_layer.deliver import DeliveryService

POINT = sys.argv.pop(1)


def crash(self, point: str) -> None:
    if point == POINT:
        os._exit(70)


DeliveryService.fault = crash

from sais.cli import main

main()
