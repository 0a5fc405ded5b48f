"""What /healthz answers (sais_shared.bootstrap.Liveness): alive while starting, up to the grace period;
then only while every consumer has a running consume task and every timer still loops."""

import asyncio

import pytest
from sais_shared.bootstrap import Liveness

pytestmark = pytest.mark.unit


class Sub:  # the parts of a FastStream subscriber that liveness reads
    def __init__(self, tasks, consumer: object = True, topics=("t.v1",)):
        self.calls, self.tasks, self.consumer, self.topics = [object()], tasks, consumer, topics


class Broker:
    def __init__(self, *subs):
        self.subscribers = list(subs)


async def test_alive_only_while_every_consumer_and_timer_runs():
    forever = asyncio.get_running_loop().create_future()
    running = asyncio.ensure_future(forever)
    ended = asyncio.ensure_future(asyncio.sleep(0))
    await ended
    timers: list[asyncio.Task] = [running]
    live = Liveness(Broker(Sub([running])), timers, grace_s=60)
    live.up = True
    assert live.problem() is None
    live.broker.subscribers.append(Sub([ended], topics=("sais.cohort.v1",)))
    assert live.problem() == "consumer 1 (sais.cohort.v1) is not running"
    live.broker.subscribers[1] = Sub([running], consumer=None)
    assert "is not running" in live.problem()
    live.broker.subscribers.pop()
    timers.append(ended)
    assert live.problem() == "a timer or worker of the service has stopped"
    running.cancel()


def test_starting_is_alive_until_the_grace_period_after_the_servers_answered():
    import time

    live = Liveness(Broker(), [], grace_s=5)
    assert live.problem() is None  # still waiting for its servers: alive (it retries by itself)
    live.servers_answered_at = time.monotonic() - 1
    assert live.problem() is None
    live.servers_answered_at = time.monotonic() - 6
    assert live.problem() == "consumers not started 5 s after the servers answered"
    live.up = True
    assert live.problem() is None
