"""Entry point of the ``spm`` console script.

The product's commands only: the local stack and the demo are developer tooling
(``python -m tools.stack``, ``python -m tools.demo``).
"""

from __future__ import annotations

import typer

from streams.cli import db, events, explain, grafana, history_replay, token

app = typer.Typer(help="Sales performance management: live quotas on Kafka.", no_args_is_help=True)
app.add_typer(db.app, name="db")
app.command("emit")(events.emit)
app.add_typer(events.quotas_app, name="quotas")
app.add_typer(events.roster_app, name="roster")
app.add_typer(events.teams_app, name="teams")
app.add_typer(events.dlq_app, name="dlq")
app.command("replay", help=history_replay.HELP)(history_replay.replay)
app.command("explain")(explain.explain)
app.command("reconcile")(explain.reconcile)
app.add_typer(grafana.app, name="grafana")
app.add_typer(token.app, name="token")

if __name__ == "__main__":
    app()
