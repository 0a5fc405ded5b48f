"""A service started while the broker is away comes up by itself once it is back; one whose Kafka
client could not start stops itself, so that an orchestrator starts it again.

The broker is "away" behind a test-owned TCP relay to the session's real broker: the service
bootstraps through the relay (clients then reach the broker at the address it advertises), so the
relay decides which of the service's bootstrap connections get through. No server the other tests
share is stopped."""

from __future__ import annotations

import asyncio
import os
import subprocess

import pytest

from tests.conftest import wait_until
from tests.e2e.test_pipeline import http_get
from tests.helpers import REPO, free_port


def probe(port: int, path: str) -> tuple[int, str]:
    """(status, body), or (0, "") while nothing answers on the port yet."""
    try:
        return http_get(port, path)
    except OSError:
        return 0, ""


pytestmark = pytest.mark.integration
PY = str(REPO / ".venv" / "bin" / "python")


class Relay:
    """A TCP relay on its own port to ``target``; ``admit(n)`` lets the next n connections through and
    closes any after them at once (None: all). Not listening until ``open()``."""

    def __init__(self, target: str) -> None:
        self.host, port = target.rsplit(":", 1)
        self.target_port = int(port)
        self.port = free_port()
        self.server: asyncio.AbstractServer | None = None
        self.left: int | None = None
        self.accepted = 0
        self.pipes: set[asyncio.Task] = set()

    async def open(self, admit: int | None = None) -> None:
        self.left = admit
        self.server = await asyncio.start_server(self._client, "127.0.0.1", self.port)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self.left is not None:
            if self.left <= 0:
                writer.close()
                return
            self.left -= 1
        up_r, up_w = await asyncio.open_connection(self.host, self.target_port)

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            try:
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                w.close()

        for t in (asyncio.create_task(pipe(reader, up_w)), asyncio.create_task(pipe(up_r, writer))):
            self.pipes.add(t)
            t.add_done_callback(self.pipes.discard)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for t in list(self.pipes):
            t.cancel()


def start_service(env: dict[str, str], relay: Relay, log_path, **extra: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen(
        [PY, "-m", "sais_retention"],
        env={**os.environ, **env, "SAIS_KAFKA_BOOTSTRAP": f"127.0.0.1:{relay.port}", "SAIS_HTTP_PORT": str(port),
             "SAIS_LOG_FORMAT": "json", **extra},
        stdout=open(log_path, "w"),  # noqa: SIM115 - a child process's log, open as long as it runs
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    return proc, port


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


async def test_a_service_started_with_the_broker_down_comes_up_once_it_is_back(env, infra, tmp_path):
    relay = Relay(infra.kafka_bootstrap)
    log = tmp_path / "retention.log"
    proc, port = start_service(env, relay, log)
    try:
        # It waits, retrying with backoff, instead of exiting: two attempts seen, still running.
        async def retried_twice():
            return proc.poll() is None and log.read_text().count("startup.waiting_for_servers") >= 2

        await wait_until(retried_twice, timeout=60, what="the service retrying its start-up")
        assert proc.poll() is None, log.read_text()[-3000:]

        await relay.open()  # the broker is back

        async def ready():
            assert proc.poll() is None, log.read_text()[-3000:]
            return await asyncio.to_thread(probe, port, "/readyz") == (200, "ready")

        await wait_until(ready, timeout=90, interval=0.5, what="/readyz once the broker is back")
        assert await asyncio.to_thread(http_get, port, "/healthz") == (200, "ok")
    finally:
        stop(proc)
        await relay.close()


async def test_a_service_whose_kafka_client_cannot_start_stops_itself_instead_of_serving_a_dead_app(
    env, infra, tmp_path
):
    """The broker answers the start-up check, then drops every later connection: the service's own
    Kafka clients cannot start. Before, uvicorn went on serving /healthz 200 for an app that consumed
    nothing, for good. Now the process stops itself, so the orchestrator starts it afresh (and its
    start-up then waits for the broker, as above). /healthz's own rules: tests/unit/test_liveness.py."""
    relay = Relay(infra.kafka_bootstrap)
    await relay.open(admit=1)
    log = tmp_path / "retention.log"
    proc, _port = start_service(env, relay, log)
    try:

        async def exited():
            return proc.poll() is not None

        await wait_until(exited, timeout=90, what="the service stopping itself")
        text = log.read_text()
        assert "service.failed_stopping" in text, text[-3000:]
        assert relay.accepted >= 2  # the start-up check got through; the broker client was refused
    finally:
        stop(proc)
        await relay.close()
