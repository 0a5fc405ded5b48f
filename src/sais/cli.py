"""``sais``: one operator CLI, a sub-command group per service."""

from __future__ import annotations

import base64
import os

import typer

from sais_ingest.entrypoints.cli import app as ingest_app

app = typer.Typer(help="LA → NHS SAIS pupil data share, enforcing the Information Sharing Protocol.",
                  no_args_is_help=True)
app.add_typer(ingest_app, name="ingest")

keys_app = typer.Typer(help="Key material.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


@keys_app.command("new-kek")
def new_kek() -> None:
    """Print a new random 256-bit key-encryption key (base64) for SAIS_KEK_FILE."""
    typer.echo(base64.b64encode(os.urandom(32)).decode())


if __name__ == "__main__":
    app()
