"""``sais``: one operator CLI, a sub-command group per service."""

from __future__ import annotations

import base64
import os
import sys

from pathlib import Path

import typer

from sais_shared.devpki import ensure_dev_pki
from sais_shared.logging import configure_logging
from sais_shared.settings import CommonSettings

from sais_delivery.entrypoints.cli import app as delivery_app
from sais_delivery.entrypoints.cli import breach_app
from sais_eligibility.entrypoints.cli import app as eligibility_app
from sais_ingest.entrypoints.cli import app as ingest_app
from sais_retention.entrypoints.cli import app as retention_app

from .governance_cli import audit_app, sar_app
from .protocol_cli import app as protocol_app

app = typer.Typer(help="LA → NHS SAIS pupil data share, enforcing the Information Sharing Protocol.",
                  no_args_is_help=True)
app.add_typer(ingest_app, name="ingest")
app.add_typer(eligibility_app, name="eligibility")
app.add_typer(delivery_app, name="delivery")
app.add_typer(retention_app, name="retention")
app.add_typer(protocol_app, name="protocol")
app.add_typer(breach_app, name="breach")
app.add_typer(sar_app, name="sar")
app.add_typer(audit_app, name="audit")



@app.callback()
def main() -> None:
    """Logs go to stderr as JSON (SAIS_LOG_FORMAT=console for humans); reports go to stdout."""
    settings = CommonSettings()
    configure_logging(settings.log_level, settings.log_format, stream=sys.stderr)


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
        stale = [n for n, (text, _) in generate().items()
                 if not (DOCS / f"{n}.yaml").exists() or (DOCS / f"{n}.yaml").read_text(encoding="utf-8") != text]
        if stale:
            typer.echo(f"AsyncAPI documents out of date: {', '.join(stale)}; run `sais docs asyncapi`", err=True)
            raise typer.Exit(1)
        typer.echo("AsyncAPI documents match the code")
        return
    for path in write():
        typer.echo(f"wrote {path}")


dev_app = typer.Typer(help="Development helpers (never for production keys).", no_args_is_help=True)
app.add_typer(dev_app, name="dev")


@dev_app.command("pki")
def dev_pki(out: Path = typer.Argument(..., help="folder for the dev CA, certificates and KEK")) -> None:
    """Create a throwaway CA, SMTP server and S/MIME certificates and a KEK (demo, tests, compose)."""
    pki = ensure_dev_pki(out)
    typer.echo(f"dev PKI in {pki.root}")


if __name__ == "__main__":
    app()
