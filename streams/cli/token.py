"""``spm token new``: a fresh API token — its secret, shown this once, and the entry with its
hash that the workers are configured with (``SPM_API_TOKENS`` or ``SPM_API_TOKENS_FILE``).
Nothing is stored: whoever runs the command hands the secret to the client."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from pydantic import ValidationError

from streams.auth import SCOPES, ApiToken, hash_token, new_token, problems
from streams.cli.common import error_console, fail

app = typer.Typer(help="API tokens (bearer tokens with scopes).", no_args_is_help=True)


@app.command("new")
def new(
    name: Annotated[str, typer.Option(help="Who holds the token, e.g. crm-webhooks.")],
    scopes: Annotated[str, typer.Option(help=f"Comma-separated scopes: {', '.join(SCOPES)}.")],
) -> None:
    """Print a new token (first line) and its configuration entry (second line, JSON)."""
    secret = new_token()
    try:
        token = ApiToken.model_validate(
            {
                "name": name,
                "sha256": hash_token(secret),
                "scopes": [s.strip() for s in scopes.split(",") if s.strip()],
            }
        )
    except ValidationError as exc:
        raise fail(f"token new: {problems(exc)}") from None
    entry = {"name": token.name, "sha256": token.sha256, "scopes": sorted(token.scopes)}
    typer.echo(secret)
    typer.echo(json.dumps(entry))
    error_console.print(
        "The token (first line) is shown only now: give it to the client, which sends it as "
        "'Authorization: Bearer <token>'. Add the entry (second line) to the JSON list in "
        "SPM_API_TOKENS or SPM_API_TOKENS_FILE of every worker and restart them."
    )
