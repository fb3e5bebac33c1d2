"""``spm stack``: the local stack (Kafka, Prometheus, Alertmanager) — filled in by issue 2."""

import typer

app = typer.Typer(help="Start and stop the local stack.")
