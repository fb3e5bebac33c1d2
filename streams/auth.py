"""Who may call which route of the API: bearer tokens with scopes (the pure part).

A token is a random secret (``spm_`` + 256 random bits) that only its holder knows; the
worker is configured with its SHA-256 alone, so neither configuration nor logs ever hold a
usable secret. High-entropy secrets need no slow password hash: a presented token is hashed
once and compared with every configured hash in constant time (``hmac.compare_digest``, no
early exit), so the answer's timing says nothing about which hash came close.

Access is decided per request by method and route from one table, :data:`ACCESS` — routes
nobody listed are denied, so a route added later is never open by accident. The aiohttp
middleware that applies it is ``streams.web_auth``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

Scope = Literal["ingest", "read", "admin"]
SCOPES: tuple[Scope, ...] = ("ingest", "read", "admin")
TOKEN_PREFIX = "spm_"  # makes a leaked token recognisable to secret scanners
ANY_METHOD: frozenset[str] = frozenset()
READING = frozenset({"GET", "HEAD"})  # Faust answers HEAD on every view as GET


class ApiToken(BaseModel):
    """A configured token: who holds it, the SHA-256 of its secret and what it may do."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")
    sha256: str
    scopes: frozenset[Scope] = Field(min_length=1)

    @field_validator("sha256", mode="before")
    @classmethod
    def _hex_digest(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        digest = value.strip().lower()
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ValueError(
                "must be the 64 hex digits of the token's SHA-256 (as `spm token new` prints "
                "it), never the token itself"
            )
        return digest


def problems(exc: ValidationError) -> str:
    """Token validation errors without their input: a secret pasted by mistake stays unshown."""
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or 'the list'}: {error['msg']}"
        for error in exc.errors(include_input=False, include_url=False)
    )


def hash_token(secret: str) -> str:
    """The hex SHA-256 of a token's secret, as configured."""
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).hexdigest()


def new_token() -> str:
    """A fresh secret: 32 random bytes, URL-safe, with the recognisable prefix."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (the scheme is case-blind)."""
    if authorization is None:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def client_headers(token: SecretStr | None) -> dict[str, str]:
    """The header a client (the CLI) sends to a worker that requires a token."""
    return {} if token is None else {"Authorization": f"Bearer {token.get_secret_value()}"}


class TokenBook:
    """The configured tokens; empty means the API is open (and the worker stays on loopback)."""

    def __init__(self, tokens: Iterable[ApiToken]) -> None:
        self.tokens: tuple[ApiToken, ...] = tuple(tokens)
        for attribute in ("name", "sha256"):
            values = [getattr(token, attribute) for token in self.tokens]
            twice = sorted({v for v in values if values.count(v) > 1})
            if twice:
                shown = ", ".join(twice) if attribute == "name" else f"{len(twice)} hash(es)"
                raise ValueError(f"tokens configured twice (same {attribute}): {shown}")

    def __bool__(self) -> bool:
        return bool(self.tokens)

    @property
    def names(self) -> list[str]:
        return [token.name for token in self.tokens]

    def authenticate(self, secret: str | None) -> ApiToken | None:
        """The token whose hash is that of ``secret``; every hash is compared, always."""
        if secret is None:
            return None
        digest = hash_token(secret)
        found = None
        for token in self.tokens:
            if hmac.compare_digest(digest, token.sha256):
                found = token
        return found


@dataclass(frozen=True, slots=True)
class Rule:
    """Requests with one of ``methods`` (any when empty) to ``route`` need ``scope`` (None:
    open to all). A ``route`` ending in ``/`` covers every route under it."""

    methods: frozenset[str]
    route: str
    scope: Scope | None

    def covers(self, method: str, route: str) -> bool:
        if self.methods and method not in self.methods:
            return False
        return route.startswith(self.route) if self.route.endswith("/") else route == self.route


def access(metrics_auth: bool) -> tuple[Rule, ...]:
    """The table, first match wins; anything it does not cover is denied."""
    return (
        Rule(ANY_METHOD, "/api/v1/admin/", "admin"),
        Rule(frozenset({"POST"}), "/api/v1/events", "ingest"),
        Rule(READING, "/api/v1/", "read"),
        Rule(READING, "/healthz", None),
        Rule(READING, "/metrics", "read" if metrics_auth else None),
    )


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to do with a request: let it through (``refusal`` None) or answer 401/403."""

    token: ApiToken | None  # who asked, if a known token was presented
    refusal: int | None = None
    error: str = ""
    #: The RFC 6750 challenge (``WWW-Authenticate``) of a refusal.
    challenge: str = ""


def decide(
    rules: Sequence[Rule],
    book: TokenBook,
    method: str,
    route: str,
    authorization: str | None,
    *,
    exists: bool,
) -> Verdict:
    """Whether ``method route`` may go on with this ``Authorization`` header.

    ``route`` is the pattern of the route that would answer (or the path when none would:
    ``exists`` False). Open routes need nothing; otherwise a missing or unknown token is
    401, a known token without the route's scope 403. A caller with a valid token may learn
    that a route does not exist (404/405); a route that exists but is not in the table is 403.
    """
    rule = next((r for r in rules if r.covers(method, route)), None)
    if rule is not None and rule.scope is None:
        return Verdict(None)
    presented = bearer(authorization)
    token = book.authenticate(presented)
    if token is None:
        if presented is None:
            return Verdict(None, 401, "a bearer token is required", 'Bearer realm="spm"')
        challenge = 'Bearer realm="spm", error="invalid_token"'
        return Verdict(None, 401, "unknown bearer token", challenge)
    if rule is None:
        if not exists:
            return Verdict(token)
        return Verdict(token, 403, f"no scope grants {method} {route}")
    if rule.scope not in token.scopes:
        error = f"the token {token.name!r} lacks the {rule.scope!r} scope"
        challenge = f'Bearer realm="spm", error="insufficient_scope", scope="{rule.scope}"'
        return Verdict(token, 403, error, challenge)
    return Verdict(token)
