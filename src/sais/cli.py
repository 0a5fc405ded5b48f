"""``sais``: one operator CLI, a sub-command group per service."""

from __future__ import annotations

import json
import os
import sys
from importlib import import_module

import typer
from typer import _click as click  # typer ships its own copy of click: its commands are that copy's
from typer.core import TyperCommand, TyperGroup

# Every group and command but the root's options is loaded only when it runs: `sais --help` and a
# simple command import typer and what that command needs, never FastStream, openpyxl or a service
# they do not use. name → (loader "module:attribute", the one line `sais --help` shows; a unit test
# checks that it is the group's own help).
COMMANDS: dict[str, tuple[str, str]] = {
    "ingest": ("sais_ingest.entrypoints.cli:app", "Ingest LA extracts (census, admissions)."),
    "eligibility": ("sais.quality_cli:eligibility_app", "Programme rules and cohorts."),
    "delivery": ("sais_delivery.entrypoints.cli:app", "Deliver cohorts to the SAIS (S/MIME over SMTP+TLS)."),
    "retention": ("sais_retention.entrypoints.cli:app", "Retention schedule and secure deletion (ISP §11)."),
    "protocol": ("sais.protocol_cli:app", "The Information Sharing Protocol as data (versions, review, definitions)."),
    "schools": ("sais.schools_cli:app", "The schools register (DfE number → URN, status, age range) from GIAS."),
    "breach": ("sais_delivery.entrypoints.cli:breach_app", "Security incidents (ISP §16): report, list, close."),
    "sar": (
        "sais.governance_cli:sar_app",
        "Subject access requests (ISP §13).",
    ),
    "audit": ("sais.governance_cli:audit_app", "The audit trail: who did what, when (no personal data)."),
    "dead-letters": (
        "sais.dead_letters_cli:app",
        "Messages set aside by a consumer (the dead-letter topic): position and reason, never content.",
    ),
    "status": (
        "sais.status_cli:status",
        "Protocol, sharing, extracts, cohorts, batches and deletions at a glance (exit 3: needs attention).",
    ),
    "keys": ("sais.admin_cli:keys_app", "Key material."),
    "docs": ("sais.admin_cli:docs_app", "Generated documents."),
    "db": ("sais.admin_cli:db_app", "The database (administrator)."),
    "kafka": ("sais.admin_cli:kafka_app", "Kafka topics and access rights (administrator)."),
    "dev": ("sais.admin_cli:dev_app", "Development helpers (never for production keys)."),
}


def load(name: str) -> click.Command:
    """The real click command of ``name`` (a Typer app or a command function)."""
    module, attr = COMMANDS[name][0].split(":")
    obj = getattr(import_module(module), attr)
    if isinstance(obj, typer.Typer):  # as add_typer makes it (a one-command app stays a group)
        holder = typer.Typer()
        holder.add_typer(obj, name=name)
        group = typer.main.get_command(holder)
        assert isinstance(group, TyperGroup)
        cmd = group.commands[name]
    else:
        holder = typer.Typer()
        holder.command(name)(obj)
        cmd = typer.main.get_command(holder)
    cmd.name = name
    _plain(cmd, click.Context(cmd))
    return cmd


class SaisGroup(TyperGroup):
    """The root group: lists every command from COMMANDS without importing it, and loads one when it
    is run (or its own help is asked for)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*super().list_commands(ctx), *(n for n in COMMANDS if n not in self.commands)]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.commands or name not in COMMANDS:
            return super().get_command(ctx, name)
        if getattr(ctx, "resilient_parsing", False) or _listing(ctx):
            return TyperCommand(name, help=COMMANDS[name][1], short_help=COMMANDS[name][1])
        self.commands[name] = load(name)
        return self.commands[name]

    def resolve_command(self, ctx: click.Context, args: list[str]):
        name = str(args[0]) if args else None
        if name in COMMANDS and name not in self.commands:
            self.commands[name] = load(name)
        return super().resolve_command(ctx, args)

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        ctx.meta["sais.listing"] = True
        try:
            super().format_help(ctx, formatter)
        finally:
            ctx.meta.pop("sais.listing", None)

    def load_all(self) -> SaisGroup:
        for name in COMMANDS:
            if name not in self.commands:
                self.commands[name] = load(name)
        return self


def _listing(ctx: click.Context) -> bool:
    """True while the root's own help is being drawn (its command list needs only the one-liners)."""
    return bool(ctx.meta.get("sais.listing"))


LOG_DEFAULTS = {"log_level": "INFO", "log_format": "json"}

app = typer.Typer(
    cls=SaisGroup,
    rich_markup_mode=None,  # the root's help in click's plain layout: drawn without loading rich (~0.2 s)
    help="LA → NHS SAIS pupil data share, enforcing the Information Sharing Protocol.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,  # failures are one line and an exit code (main, below)
)


@app.callback()
def options(
    log_format: str | None = typer.Option(
        None,
        "--log-format",
        envvar="SAIS_CLI_LOG_FORMAT",
        help="json or console: also write the command's log lines to stderr (default: none, at a terminal "
        "or not; SAIS_LOG_FORMAT is the services' own)",
    ),
    actor: str | None = typer.Option(
        None,
        "--actor",
        envvar="SAIS_ACTOR",
        metavar="NAME",
        help="the person running the command, recorded in the audit trail (ISP §14.3); required by every "
        "command that changes something",
    ),
) -> None:
    """Reports and tables go to stdout (`--json` for machines); warnings a person must act on go to stderr
    once, in plain words. Log lines are for the services: a command writes none, at a terminal or not,
    unless asked for with --log-format (or SAIS_CLI_LOG_FORMAT)."""
    from sais_shared import notices, operator
    from sais_shared.logging import configure_logging

    operator.set_actor(actor)

    def warn(text: str) -> None:  # rich only when there is something to say
        from rich.console import Console

        Console(stderr=True, soft_wrap=True).print(f"[yellow]warning:[/] {text}", markup=True, highlight=False)

    notices.set_sink(warn)
    if log_format is None:
        configure_logging("CRITICAL", "console", stream=sys.stderr)  # sentences and tables only
        return
    # SAIS_LOG_LEVEL as CommonSettings reads it (a unit test keeps the defaults the same), without loading
    # the settings classes for a command that needs none.
    level = os.environ.get("SAIS_LOG_LEVEL") or LOG_DEFAULTS["log_level"]
    configure_logging(level, log_format, stream=sys.stderr)


_METAVARS = {
    "<str>": "TEXT",
    "<int>": "N",
    "<float>": "NUMBER",
    "<path>": "PATH",
    "<file>": "FILE",
    "<directory>": "DIR",
    "<uuid>": "ID",
    "<UUID>": "ID",
}


def _plain(cmd: click.Command, ctx: click.Context) -> None:
    """Help that names what each option takes: a flag shows no type, and an option left to its Python
    type shows a word (TEXT, N, FILE, ID) rather than ``<str>``."""
    helper = cmd.get_help_option(ctx)  # made once per command, then reused
    for param in [*cmd.params, *([helper] if helper is not None else [])]:
        if param.metavar is None:
            if getattr(param, "is_flag", False) or getattr(param, "count", False):
                param.metavar = ""
            else:
                rich_type = getattr(param, "display_type_rich", None)
                shown = rich_type(ctx) if rich_type is not None else None
                param.metavar = _METAVARS.get(shown or "")
        if getattr(param, "param_type_name", "") == "argument":  # its name is its metavar: no type column
            param.display_type_rich = lambda ctx: None  # type: ignore[attr-defined]
    for sub in getattr(cmd, "commands", {}).values():
        _plain(sub, click.Context(sub, parent=ctx))


def command(*, everything: bool = False) -> click.Command:
    """The click command behind ``app``; ``everything`` loads every group now (tests walk the tree)."""
    cmd = typer.main.get_command(app)
    _plain(cmd, click.Context(cmd))
    return cmd.load_all() if everything and isinstance(cmd, SaisGroup) else cmd


def main() -> None:
    """The console script. Every failure becomes one line on stderr (or, with --json, one JSON object on
    stdout) and an exit code from ``sais_shared.exits``; SAIS_DEBUG=1 lets the traceback through."""
    from sais_shared.memory import tune_collector

    tune_collector()
    try:
        # not standalone: an option error comes here too, to be one line (or JSON) like any other failure
        rc = command().main(prog_name="sais", standalone_mode=False)
    except typer.Abort:  # Ctrl-C at a prompt
        sys.exit(130)
    except Exception as exc:
        if os.environ.get("SAIS_DEBUG") == "1":
            raise
        if type(exc).__name__ == "NoArgsIsHelpError":  # `sais ingest` alone: its help was the answer
            sys.exit(2)
        from .failures import classify

        code, line = classify(exc)
        from rich.console import Console
        from rich.text import Text

        if "--json" in sys.argv[1:]:
            print(json.dumps({"error": code.name.lower(), "exit_code": int(code), "message": line}))
        else:
            Console(stderr=True, soft_wrap=True).print(Text.assemble(("sais: ", "red"), line), highlight=False)
        sys.exit(int(code))
    sys.exit(rc if isinstance(rc, int) else 0)


if __name__ == "__main__":
    main()
