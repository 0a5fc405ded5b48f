"""One place that turns a failure of any ``sais`` command into one line on stderr and a documented exit
code (``sais_shared.exits``): no traceback for bad input, a refusal or a server that is down. The line
is the exception's own message, which this product never lets carry personal data; an unexpected
exception (a defect) shows only its type and where it was raised."""

from __future__ import annotations

import asyncio
import socket
import traceback

import asyncpg
from aiokafka.errors import KafkaConnectionError, KafkaError
from sais_delivery.adapters.mailer import MessageMayHaveBeenSentError, SmtpTransientError
from sais_delivery.domain.errors import (
    DeliveryFailedError,
    DeliveryRefusedError,
    NothingToDeliverError,
    UncertainDeliveryError,
)
from sais_eligibility.domain.rules import RulesError
from sais_ingest.adapters.repository import ExtractBusyError
from sais_ingest.domain.model import ExtractFileError
from sais_ingest.service_layer.ingest_file import ExtractStateError
from sais_shared.errors import ConfigurationError, SaisError
from sais_shared.exits import Exit
from sais_shared.files import OutputFileError
from sais_shared.operator import ActorInvalidError, ActorRequiredError
from sais_shared.protocol import ProtocolError, ProtocolRefusalError
from sais_shared.schools import RegisterError
from typer._click.exceptions import ClickException, UsageError  # typer's own copy of click: its option errors

# First match wins: the more specific classes come first.
_KNOWN: list[tuple[tuple[type[BaseException], ...], Exit, str]] = [
    ((ActorRequiredError, ActorInvalidError), Exit.BAD_INPUT, "who is acting?"),
    ((ExtractFileError,), Exit.BAD_INPUT, "extract refused"),
    ((RegisterError, OutputFileError), Exit.BAD_INPUT, "refused"),
    ((ExtractStateError,), Exit.REFUSED, "refused"),
    ((ExtractBusyError,), Exit.TRANSIENT, "busy"),
    ((UncertainDeliveryError, MessageMayHaveBeenSentError), Exit.UNCERTAIN, "uncertain"),
    ((NothingToDeliverError,), Exit.NOTHING, "nothing to deliver"),
    ((ProtocolRefusalError, DeliveryRefusedError), Exit.REFUSED, "refused by the protocol"),
    ((ProtocolError,), Exit.BAD_INPUT, "protocol file refused"),
    ((DeliveryFailedError,), Exit.PERMANENT, "failed permanently"),
    ((ConfigurationError, RulesError), Exit.PERMANENT, "configuration"),
    (
        (asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError),
        Exit.PERMANENT,
        "PostgreSQL refused the login",
    ),
    ((asyncpg.InvalidCatalogNameError,), Exit.PERMANENT, "PostgreSQL has no such database"),
    ((SmtpTransientError,), Exit.TRANSIENT, "the mail server could not take the message now"),
    ((KafkaConnectionError,), Exit.TRANSIENT, "cannot reach Kafka"),
    (
        (ConnectionError, socket.gaierror, TimeoutError, asyncio.TimeoutError, asyncpg.CannotConnectNowError),
        Exit.TRANSIENT,
        "cannot reach a server",
    ),
    ((asyncpg.PostgresConnectionError, asyncpg.TooManyConnectionsError), Exit.TRANSIENT, "PostgreSQL"),
    ((KafkaError,), Exit.TRANSIENT, "Kafka"),
    ((SaisError,), Exit.TRANSIENT, "failed"),
]


def classify(exc: BaseException) -> tuple[Exit, str]:
    """The exit code for ``exc`` and the one line to print."""
    if isinstance(exc, UsageError):  # an option or argument the command cannot take
        where = exc.ctx.command_path if exc.ctx else "sais"
        return Exit.BAD_INPUT, f"{where}: {_message(exc.format_message())} (see '{where} --help')"
    if isinstance(exc, ClickException):
        return Exit(exc.exit_code) if exc.exit_code in set(Exit) else Exit.BAD_INPUT, _message(exc.format_message())
    for classes, code, label in _KNOWN:
        if isinstance(exc, classes):
            return code, f"{label}: {_message(exc)}"
    if isinstance(exc, OSError) and exc.errno is not None:  # a file or socket the OS refused
        return Exit.TRANSIENT, f"{type(exc).__name__}: {exc.strerror or exc}"
    frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    at = f" at {frame.filename.rsplit('/', 1)[-1]}:{frame.lineno}" if frame else ""
    return Exit.INTERNAL, (
        f"internal error: {type(exc).__name__}{at} (a defect: please report it; SAIS_DEBUG=1 shows the traceback)"
    )


def _message(exc: BaseException | str) -> str:
    return " ".join(str(exc).split())[:500] or type(exc).__name__


__all__ = ["classify"]
