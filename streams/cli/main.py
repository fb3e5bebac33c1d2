"""Entry point of the ``spm`` console script."""

from __future__ import annotations

import typer

from streams.cli import stack

app = typer.Typer(help="Sales performance management: live quotas on Kafka.", no_args_is_help=True)
app.add_typer(stack.app, name="stack")

if __name__ == "__main__":
    app()
