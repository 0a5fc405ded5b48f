"""Operations: Prometheus metrics (no personal data in any label), /healthz, /readyz, /metrics,
and the process entry point that serves a FastStream app with uvicorn and stops it on SIGTERM."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import structlog
from prometheus_client import Counter, Gauge, Histogram, make_asgi_app

if TYPE_CHECKING:  # FastStream's HTTP side is imported by the services that serve it, not by every command
    from faststream.asgi import AsgiFastStream

log = structlog.get_logger("sais.ops")

RECORDS_CONSUMED = Counter("sais_records_consumed_total", "Records consumed", ["service", "topic"])
RECORDS_PUBLISHED = Counter("sais_records_published_total", "Records published", ["service", "topic"])
DEAD_LETTERS = Counter("sais_dead_letters_total", "Messages sent to the dead-letter topic", ["service", "topic"])
BATCH_SECONDS = Histogram(
    "sais_batch_processing_seconds",
    "Time to process one consumed batch",
    ["service", "topic"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
BATCH_RETRIES = Counter("sais_batch_retries_total", "Batches rewound after a transient error", ["service", "topic"])
GROUP_LAG = Gauge(
    "sais_consumer_group_lag",
    "Records between a consumer group's committed offset and the log end, sampled on a timer",
    ["group", "topic", "partition"],
)
CONSUMER_LAG = Gauge("sais_consumer_lag", "Records behind the end of the partition", ["service", "topic", "partition"])
ROWS = Counter("sais_ingest_rows_total", "Extract rows by outcome", ["source", "outcome"])
REJECTIONS = Counter("sais_ingest_rejections_total", "Failed checks of rejected rows", ["field", "code"])
INBOUND_INCOMPLETE = Counter("sais_ingest_inbound_incomplete_total", "Inbound extracts found incomplete")
INBOUND_STARTS_REFUSED = Counter(
    "sais_ingest_inbound_starts_refused_total", "Inbound extract-started messages no registered publisher signed"
)
INBOUND_RECORDS_NOT_STAGED = Counter(
    "sais_ingest_inbound_records_not_staged_total",
    "Inbound records not staged: no verified extract-started, or over the extract's size limit",
    ["reason"],
)
COHORT_EVENTS = Counter("sais_cohort_events_total", "Cohort events emitted", ["programme", "change"])
BATCHES_SENT = Counter("sais_delivery_batches_sent_total", "Batches accepted by the mail server", ["window"])
SMTP_FAILURES = Counter("sais_delivery_smtp_failures_total", "SMTP send failures", ["kind"])
DELIVERY_REFUSED = Counter("sais_delivery_refused_total", "Deliveries refused before sending", ["reason"])
BATCHES = Gauge(
    "sais_delivery_batches",
    "Delivery batches by status, read from the database (sending: a send interrupted, to be resolved)",
    ["status"],
)
PARTS_SENDING = Gauge("sais_delivery_parts_sending", "Parts of batches whose send was interrupted (uncertain)")
SHARING_SUSPENDED = Gauge("sais_sharing_suspended", "1 while sharing is suspended (ISP §16.4)")
REVIEW_OVERDUE = Gauge("sais_protocol_review_overdue", "1 when the protocol in force is past its review date")
COVERAGE_GAPS = Gauge(
    "sais_protocol_coverage_gaps",
    "Programme year groups and sexes of a year's rules that the protocol in force requests from no source",
    ["academic_year"],
)
DELETIONS_PENDING = Gauge("sais_retention_pending_deletions", "Scheduled deletions not yet done", ["state"])
TIMER_RUNS = Counter(
    "sais_timer_runs_total", "Completed runs of a service's own timer (delivery windows, retention)", ["service"]
)
DELETIONS = Counter("sais_retention_deletions_total", "Deletions certified (every owner confirmed)", ["rule"])
FORGED_CONFIRMATIONS = Counter(
    "sais_retention_confirmations_ignored_total",
    "Deletion confirmations ignored because they name an owner other than the one whose topic carried them",
)
CONFIRMATIONS_OVERDUE = Gauge(
    "sais_retention_confirmations_overdue",
    "Deletion requests an owning service has not confirmed within the timeout",
    ["service"],
)

_service = {"name": "sais"}


def set_service(name: str) -> None:
    _service["name"] = name


def service() -> str:
    return _service["name"]


SMTP_FAILURE_KINDS = ("transient", "uncertain", "refused")


def prime(reads: list[str], writes: list[str], **labelled: list[tuple[str, ...]]) -> None:
    """Create this service's series at 0 before anything happens, so a dashboard query or an alert's
    ``increase()`` has a series to read from the start (a Prometheus convention: a counter that
    appears only when it first counts hides the first event from ``increase``). ``labelled``: metric
    attribute name → the label sets it will use (SMTP_FAILURES=[("transient",), …])."""
    name = service()
    for topic in reads:
        RECORDS_CONSUMED.labels(name, topic)
        DEAD_LETTERS.labels(name, topic)
        BATCH_RETRIES.labels(name, topic)
        BATCH_SECONDS.labels(name, topic)
    for topic in writes:
        RECORDS_PUBLISHED.labels(name, topic)
    for attr, label_sets in labelled.items():
        for labels in label_sets:
            globals()[attr].labels(*labels)


async def db_ready(state: dict) -> bool:
    """PostgreSQL answers a query through the service's own pool."""
    pool = state.get("pool")
    return pool is not None and await pool.fetchval("SELECT 1") == 1


def make_app(
    broker: Any,
    *,
    title: str,
    description: str,
    lifespan: Any = None,
    ready: Callable[[], Awaitable[bool]] | None = None,
    alive: Callable[[], str | None] | None = None,
) -> AsgiFastStream:
    """A FastStream app with its AsyncAPI description and the HTTP endpoints operators and k8s use:
    /healthz (liveness: ``alive`` says what is wrong, or None), /readyz (its servers answer), /metrics."""
    from faststream.asgi import AsgiFastStream, AsgiResponse, get
    from faststream.specification import AsyncAPI

    set_service(title)

    @get(include_in_schema=False)
    async def healthz(scope: Any) -> AsgiResponse:
        problem = alive() if alive is not None else None
        if problem is None:
            return AsgiResponse(b"ok", status_code=200)
        return AsgiResponse(f"not alive: {problem}".encode(), status_code=503)

    @get(include_in_schema=False)
    async def readyz(scope: Any) -> AsgiResponse:
        # Kafka answers, every subscriber's consumer is running (has joined its group), PostgreSQL answers.
        ok = await broker.ping(timeout=2.0) and all(
            getattr(sub, "consumer", None) is not None for sub in broker.subscribers
        )
        if ok and ready is not None:
            try:
                ok = await ready()
            except Exception as exc:  # not ready: say why without details that could hold data
                log.warning("readyz.failed", error=type(exc).__name__)
                ok = False
        return AsgiResponse(b"ready" if ok else b"not ready", status_code=200 if ok else 503)

    return AsgiFastStream(
        broker,
        lifespan=lifespan,
        logger=structlog.get_logger(title),
        specification=AsyncAPI(title=title, version="1.0.0", description=description),
        asgi_routes=[("/healthz", healthz), ("/readyz", readyz), ("/metrics", make_asgi_app())],
    )


_serving = {"on": False}


def serving() -> bool:
    """True in a service process run by :func:`serve` (which may stop itself), never in a test's."""
    return _serving["on"]


def serve(app: AsgiFastStream, port: int, host: str = "127.0.0.1") -> None:
    """Run a service: uvicorn handles SIGTERM/SIGINT and runs the app's lifespan (graceful shutdown)."""
    import uvicorn

    from .memory import tune_collector

    _serving["on"] = True
    tune_collector()  # the app is built: what it made is frozen, and batches no longer set off collections

    uvicorn.run(app, host=host, port=port, log_config=None, access_log=False, lifespan="on")
