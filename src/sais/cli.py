"""``sais``: one operator CLI, a sub-command group per service."""

from __future__ import annotations

import base64
import json
import os
import sys
from contextlib import nullcontext
from pathlib import Path

import click
import typer
from rich.console import Console
from rich.text import Text
from sais_delivery.entrypoints.cli import app as delivery_app
from sais_delivery.entrypoints.cli import breach_app
from sais_eligibility.entrypoints.cli import app as eligibility_app
from sais_ingest.entrypoints.cli import app as ingest_app
from sais_retention.entrypoints.cli import app as retention_app
from sais_shared import notices, operator
from sais_shared.cli_options import working
from sais_shared.devpki import ensure_dev_pki
from sais_shared.exits import Exit
from sais_shared.logging import configure_logging
from sais_shared.settings import SERVICES, CommonSettings

from .dead_letters_cli import app as dead_letters_app
from .governance_cli import audit_app, sar_app
from .protocol_cli import app as protocol_app
from .quality_cli import quality_cmd
from .schools_cli import app as schools_app
from .status_cli import status

app = typer.Typer(
    help="LA → NHS SAIS pupil data share, enforcing the Information Sharing Protocol.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,  # failures are one line and an exit code (main, below)
)
app.add_typer(ingest_app, name="ingest")
eligibility_app.command("quality")(quality_cmd)  # composed from eligibility's and ingest's own reads
app.add_typer(eligibility_app, name="eligibility")
app.add_typer(delivery_app, name="delivery")
app.add_typer(retention_app, name="retention")
app.add_typer(protocol_app, name="protocol")
app.add_typer(schools_app, name="schools")
app.add_typer(breach_app, name="breach")
app.add_typer(sar_app, name="sar")
app.add_typer(audit_app, name="audit")
app.add_typer(dead_letters_app, name="dead-letters")
app.command("status")(status)


@app.callback()
def options(
    log_format: str | None = typer.Option(
        None,
        "--log-format",
        help="json or console: write the commands' log lines to stderr (default: none in a terminal, "
        "else SAIS_LOG_FORMAT)",
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
    once, in plain words. Log lines are for services and scripts: in a terminal there are none unless
    asked for with --log-format (or SAIS_LOG_FORMAT); elsewhere they go to stderr as JSON."""
    operator.set_actor(actor)
    settings = CommonSettings()
    err = Console(stderr=True, soft_wrap=True)
    notices.set_sink(lambda text: err.print(f"[yellow]warning:[/] {text}", markup=True, highlight=False))
    if log_format is None and "SAIS_LOG_FORMAT" not in os.environ and sys.stderr.isatty():
        configure_logging("CRITICAL", "console", stream=sys.stderr)  # a person at a terminal: sentences only
        return
    configure_logging(settings.log_level, log_format or settings.log_format, stream=sys.stderr)


keys_app = typer.Typer(help="Key material.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


@keys_app.command("new-kek")
def new_kek() -> None:
    """Print a new random 256-bit key-encryption key (base64) for SAIS_KEK_FILE."""
    typer.echo(base64.b64encode(os.urandom(32)).decode())


docs_app = typer.Typer(help="Generated documents.", no_args_is_help=True)
app.add_typer(docs_app, name="docs")


@docs_app.command("asyncapi")
def docs_asyncapi(check: bool = typer.Option(False, "--check", help="fail if the checked-in documents differ")) -> None:
    """Generate docs/asyncapi/<service>.yaml and .html from the FastStream apps."""
    from .asyncapi import DOCS, generate, write

    if check:
        stale = [
            n
            for n, (text, _) in generate().items()
            if not (DOCS / f"{n}.yaml").exists() or (DOCS / f"{n}.yaml").read_text(encoding="utf-8") != text
        ]
        if stale:
            typer.echo(f"AsyncAPI documents out of date: {', '.join(stale)}; run `sais docs asyncapi`", err=True)
            raise typer.Exit(1)
        typer.echo("AsyncAPI documents match the code")
        return
    for path in write():
        typer.echo(f"wrote {path}")


@docs_app.command("settings")
def docs_settings() -> None:
    """Write docs/settings.md: every SAIS_* setting with its meaning and default, from the settings classes."""
    from .settings_doc import DOC, render

    DOC.write_text(render(), encoding="utf-8")
    typer.echo(f"wrote {DOC}")


RULE_SOURCE, RULE_OUT = Path("deploy/monitoring/alerts.yml"), Path("deploy/k8s/monitoring/prometheus-rule.yaml")


def prometheus_rule(alerts: str) -> str:
    """The alert rules file as a Prometheus Operator PrometheusRule: the same groups, nothing else."""
    import yaml

    doc = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "sais-datashare", "labels": {"app.kubernetes.io/name": "sais-datashare"}},
        "spec": {"groups": yaml.safe_load(alerts)["groups"]},
    }
    head = f"# Generated by `sais docs prometheus-rule` from {RULE_SOURCE}: edit that, not this file.\n"
    return head + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


@docs_app.command("prometheus-rule")
def docs_prometheus_rule() -> None:
    """Write the alert rules (deploy/monitoring/alerts.yml) as a PrometheusRule for Kubernetes."""
    RULE_OUT.write_text(prometheus_rule(RULE_SOURCE.read_text(encoding="utf-8")), encoding="utf-8")
    typer.echo(f"wrote {RULE_OUT}")


@keys_app.command("rotate-kek")
def rotate_kek(as_json: bool = typer.Option(False, "--json", help="print the result as JSON (for scripts)")) -> None:
    """Re-wrap every live data key that the KEK in force (SAIS_KEK_FILE, SAIS_KEK_ID) does not wrap yet, opening
    each with the retired KEKs (SAIS_KEK_RETIRED_DIR). Run it once every service holds the new KEK in force and
    the old one retired (a writer still on the old KEK keeps wrapping with it: run it again until `sais keys
    status` shows only the new id), then remove the old KEK. Audited; as the database administrator."""
    import asyncio
    import json

    from sais_shared.db import create_pool
    from sais_shared.keystore import audit, kek_usage, rewrap_all

    actor, settings = operator.actor(), CommonSettings()
    if settings.index_key_file is None:
        typer.echo(
            "pin the blind-index key first: SAIS_INDEX_KEY_FILE (see `sais keys export-index-key`); "
            "otherwise matching would change with the KEK",
            err=True,
        )
        raise typer.Exit(2)
    ring = settings.key_ring()

    async def go() -> tuple[int, dict[str, int]]:
        pool = await create_pool(settings.database_url)
        try:
            async with pool.acquire() as conn, conn.transaction():
                n = await rewrap_all(conn, ring)
                usage = await kek_usage(conn)
                await audit(conn, actor, "kek.rotated", f"kek:{ring.kek_id}", {"data_keys": n, "by_kek": usage})
                return n, usage
        finally:
            await pool.close()

    with working(f"re-wrapping data keys with {ring.kek_id}"):
        n, usage = asyncio.run(go())
    if as_json:
        typer.echo(json.dumps({"kek_in_force": ring.kek_id, "rewrapped": n, "live_keys_by_kek": usage}))
        return
    others = {k: v for k, v in usage.items() if k != ring.kek_id}
    typer.echo(
        f"{n} data key(s) re-wrapped with {ring.kek_id}; "
        + (
            f"still under {', '.join(f'{k} ({v})' for k, v in others.items())}: a writer still holds that KEK; "
            "restart it with the new one in force and run this again"
            if others
            else "every live data key is under it: the retired KEK(s) can be removed and destroyed"
        )
    )


@keys_app.command("status")
def keys_status(as_json: bool = typer.Option(False, "--json", help="print the result as JSON (for scripts)")) -> None:
    """The KEK in force, the retired ones this configuration holds, and the live data keys under each id.
    Exit 3 when live keys are under a KEK this configuration does not hold (they would not open)."""
    import asyncio
    import json

    from sais_shared.db import create_pool
    from sais_shared.keystore import kek_usage

    settings = CommonSettings()
    ring = settings.key_ring()

    async def go() -> dict[str, int]:
        pool = await create_pool(settings.database_url)
        try:
            return await kek_usage(pool)
        finally:
            await pool.close()

    usage = asyncio.run(go())
    unheld = sorted(set(usage) - {ring.kek_id, *ring.retired_ids})
    if as_json:
        typer.echo(json.dumps({"kek_in_force": ring.kek_id, "retired": ring.retired_ids, "live_keys_by_kek": usage,
                               "not_held": unheld}))  # fmt: skip
    else:
        typer.echo(f"KEK in force: {ring.kek_id}; retired, unwrap only: {', '.join(ring.retired_ids) or 'none'}")
        for kek_id, n in usage.items():
            held = "in force" if kek_id == ring.kek_id else "retired" if kek_id in ring.retired_ids else "NOT HELD"
            typer.echo(f"  {kek_id}: {n} live data key(s) ({held})")
    if unheld:
        raise typer.Exit(int(Exit.REFUSED))


@keys_app.command("export-index-key")
def export_index_key(out: Path = typer.Argument(..., help="file to write (mode 600)")) -> None:
    """Write the blind-index key derived from the current KEK, to pin it with SAIS_INDEX_KEY_FILE."""
    from sais_shared.crypto import derive_index_key
    from sais_shared.files import write_private_file

    write_private_file(
        out, base64.b64encode(derive_index_key(CommonSettings().key_encryption_key_bytes())).decode() + "\n"
    )
    typer.echo(f"wrote {out}: set SAIS_INDEX_KEY_FILE={out} on every service")


db_app = typer.Typer(help="The database (administrator).", no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("migrate")
def db_migrate(as_json: bool = typer.Option(False, "--json", help="print what was applied as JSON")) -> None:
    """Create or upgrade every schema and confine each service role to its own. Run as the database
    administrator (SAIS_DATABASE_URL), once per release. When no protocol is in force, puts SAIS_PROTOCOL_FILE
    in force (in development, the bundled example); otherwise load one with `sais protocol load`. With
    SAIS_CREDENTIALS_DIR, the service roles get the passwords in its postgres-sais_<service> files."""
    import asyncio
    import json

    import asyncpg

    from .dbadmin import migrate_all

    actor, settings = operator.actor(), CommonSettings()

    async def go() -> tuple[dict[str, list[str]], bool]:
        conn = await asyncpg.connect(settings.database_url)
        try:
            return await migrate_all(
                conn, settings.protocol_file, actor, settings.credentials_dir, example_protocol=settings.dev_mode
            ), bool(await conn.fetchval("SELECT count(*) FROM shared.protocols"))
        finally:
            await conn.close()

    applied, in_force = asyncio.run(go())
    if as_json:
        typer.echo(json.dumps(applied | {"protocol_in_force": in_force}))
        return
    if not in_force:
        notices.notify(
            "protocol.none",
            "no protocol is in force, and none is put in force by default outside development: load your "
            "authority's with `sais protocol load FILE` (or set SAIS_PROTOCOL_FILE here); the services refuse "
            "to start until then.",
        )
    n = sum(map(len, applied.values()))
    typer.echo(
        f"{n} migration(s) applied" + "".join(f"\n  {s}: {', '.join(m)}" for s, m in applied.items() if m)
        if n
        else "the database is up to date"
    )


kafka_app = typer.Typer(help="Kafka topics and access rights (administrator).", no_args_is_help=True)
app.add_typer(kafka_app, name="kafka")


@kafka_app.command("setup")
def kafka_setup(as_json: bool = typer.Option(False, "--json", help="print what was done as JSON")) -> None:
    """Create the product's topics and, on a broker with authentication, each service's ACLs (only the
    topics it reads or writes, only its own consumer groups). Run as the Kafka administrator
    (SAIS_KAFKA_ADMIN_PASSWORD_FILE), once per release and topic prefix; idempotent."""
    import asyncio
    import json

    from sais_shared.kafka import setup_kafka

    settings = CommonSettings()
    done = asyncio.run(setup_kafka(settings))
    if as_json:
        typer.echo(json.dumps(done))
        return
    typer.echo(
        f"{done['topics_created']} topic(s) created under {settings.topic_prefix!r}; {done['acls']} ACL(s) in place"
        if settings.kafka_security_protocol != "PLAINTEXT"
        else f"{done['topics_created']} topic(s) created; the broker has no authentication (PLAINTEXT): no ACLs"
    )


@kafka_app.command("lag")
def kafka_lag(
    wait: float = typer.Option(
        0,
        "--wait",
        metavar="SECONDS",
        min=0,
        help="wait until every group has caught up (lag 0), at most this long; exit 5 if one has not",
    ),
    as_json: bool = typer.Option(False, "--json", help="print the lag as JSON"),
) -> None:
    """Each service's consumer group: records between its committed offset and the log end, per topic
    (what `sais_consumer_group_lag` exports; a stopped consumer's lag grows). Run as the administrator.
    With --wait, the groups are sampled in pipeline order (ingest, eligibility, delivery, retention) until
    all are at 0: a consumer commits only after what it publishes is written, so the pipeline has then
    settled (for example after `sais ingest file`, before `sais delivery send`)."""
    import asyncio
    import json

    from rich.table import Table
    from sais_shared.kafka_access import ACCESS
    from sais_shared.lag import group_lag
    from sais_shared.topics import Topics

    settings = CommonSettings()
    topics = Topics(settings.topic_prefix)

    async def sample() -> list[dict]:
        rows = []
        for svc in SERVICES:
            group = service_group(svc)
            reads = [getattr(topics, t) for t in ACCESS[svc].reads]
            lag = await group_lag(settings.kafka_login(None), group, reads)
            per_topic: dict[str, int] = {}
            for (topic, _), n in lag.items():
                per_topic[topic] = per_topic.get(topic, 0) + n
            rows += [{"service": svc, "group": group, "topic": t, "lag": n} for t, n in sorted(per_topic.items())]
        return rows

    async def settled() -> list[dict]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            rows = await sample()
            if not any(r["lag"] for r in rows) or loop.time() >= deadline:
                return rows
            await asyncio.sleep(1.0)  # committed offsets are the broker's state: there is no event to wait on

    with working(f"waiting up to {wait:.0f} s for every consumer group to catch up") if wait else nullcontext():
        rows = asyncio.run(settled() if wait else sample())
    behind = sum(r["lag"] for r in rows)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
    else:
        t = Table("group", "topic", "records behind", title="Consumer lag (committed offsets)", title_justify="left")
        for r in rows:
            t.add_row(r["group"], r["topic"], str(r["lag"]))
        Console().print(t)
    if wait and behind:
        Console(stderr=True).print(f"[yellow]not caught up after {wait:.0f} s:[/] {behind} record(s) behind")
        raise typer.Exit(int(Exit.TRANSIENT))


@kafka_app.command("acls")
def kafka_acls(
    prefix: str = typer.Option("sais", "--prefix", metavar="PREFIX", help="topic prefix"),
    as_json: bool = typer.Option(False, "--json", help="print the bindings as JSON"),
) -> None:
    """Print what each Kafka user may do: its topics (read, write) and consumer groups."""
    import json

    from sais_shared.kafka_access import bindings

    rows = bindings(prefix)
    if as_json:
        typer.echo(
            json.dumps(
                [
                    {
                        "principal": b.principal,
                        "resource": b.resource.name.lower(),
                        "name": b.name,
                        "pattern": b.pattern.name.lower(),
                        "operation": b.operation.name.lower(),
                    }
                    for b in rows
                ],
                indent=2,
            )
        )
        return
    for b in rows:
        typer.echo(
            f"{b.principal:22} {b.operation.name.lower():9} {b.resource.name.lower():6} "
            f"{b.name}{'*' if b.pattern.name == 'PREFIXED' else ''}"
        )


@kafka_app.command("manifests")
def kafka_manifests(
    out: Path = typer.Option(
        Path("deploy/k8s/kafka"), "--out", metavar="DIR", help="folder to write topics.yaml and kafka-users.yaml to"
    ),
) -> None:
    """Write Strimzi KafkaTopics and KafkaUsers (SCRAM-SHA-512, the same ACLs as `sais kafka setup`)."""
    from sais_shared.kafka_access import strimzi_manifests

    topics, users = strimzi_manifests()
    (out / "topics.yaml").write_text(topics)
    (out / "kafka-users.yaml").write_text(users)
    typer.echo(f"wrote {out / 'topics.yaml'} and {out / 'kafka-users.yaml'}")


dev_app = typer.Typer(help="Development helpers (never for production keys).", no_args_is_help=True)
app.add_typer(dev_app, name="dev")


@dev_app.command("pki")
def dev_pki(out: Path = typer.Argument(..., help="folder for the dev CA, certificates and KEK")) -> None:
    """Create a throwaway CA, SMTP server and S/MIME certificates and a KEK (demo, tests, compose)."""
    pki = ensure_dev_pki(out)
    typer.echo(f"dev PKI in {pki.root}")


def service_group(svc: str) -> str:
    """The consumer group a service uses: SAIS_<SERVICE>_GROUP_ID, or its own settings' default (the
    same whatever the topic prefix), read from the service's settings class: one source of truth."""
    if group := os.environ.get(f"SAIS_{svc.upper()}_GROUP_ID"):
        return group
    from importlib import import_module

    config = import_module(f"sais_{svc}.config")
    cls = next(
        v for v in vars(config).values()
        if isinstance(v, type) and issubclass(v, CommonSettings) and f"{svc}_group_id" in v.model_fields
    )  # fmt: skip
    return cls.model_fields[f"{svc}_group_id"].default


_METAVARS = {"<str>": "TEXT", "<int>": "N", "<float>": "NUMBER", "<path>": "PATH", "<file>": "FILE",
             "<directory>": "DIR", "<uuid>": "ID", "<UUID>": "ID"}  # fmt: skip


def command() -> click.Command:
    """The click command behind ``app``, with help that names what each option takes: a flag shows no
    type, and an option left to its Python type shows a word (TEXT, N, FILE, ID) rather than ``<str>``."""

    def plain(cmd: click.Command, ctx: click.Context) -> None:
        helper = cmd.get_help_option(ctx)  # made once per command, then reused
        for param in [*cmd.params, *([helper] if helper is not None else [])]:
            if param.metavar is None:
                if getattr(param, "is_flag", False) or getattr(param, "count", False):
                    param.metavar = ""
                else:
                    shown = param.display_type_rich(ctx) if hasattr(param, "display_type_rich") else None
                    param.metavar = _METAVARS.get(shown or "", None)
            if getattr(param, "param_type_name", "") == "argument":  # its name is its metavar: no type column
                param.display_type_rich = lambda ctx: None
        for sub in getattr(cmd, "commands", {}).values():
            plain(sub, click.Context(sub, parent=ctx))

    cmd = typer.main.get_command(app)
    plain(cmd, click.Context(cmd))
    return cmd


def main() -> None:
    """The console script. Every failure becomes one line on stderr (or, with --json, one JSON object on
    stdout) and an exit code from ``sais_shared.exits``; SAIS_DEBUG=1 lets the traceback through."""
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
        if "--json" in sys.argv[1:]:
            print(json.dumps({"error": code.name.lower(), "exit_code": int(code), "message": line}))
        else:
            Console(stderr=True, soft_wrap=True).print(Text.assemble(("sais: ", "red"), line), highlight=False)
        sys.exit(int(code))
    sys.exit(rc if isinstance(rc, int) else 0)


if __name__ == "__main__":
    main()
