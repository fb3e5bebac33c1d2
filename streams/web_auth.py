"""The API's access control as the worker applies it (the rules are ``streams.auth``).

One aiohttp middleware — installed through Faust's ``web_application_options``, the setting
Faust documents for middlewares — judges every request before any view runs, by method and
route, so routes added later are covered without their cooperation. Tokens come from
``SPM_API_TOKENS`` and ``SPM_API_TOKENS_FILE`` and are checked before the worker starts;
without any the API is open, so the worker must stay on a loopback address.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import structlog
from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware
from pydantic import TypeAdapter, ValidationError

from streams.auth import ApiToken, Rule, TokenBook, access, decide, problems
from streams.settings import Settings
from streams.web import json_errors

log = structlog.get_logger(__name__)

_TOKEN_LIST = TypeAdapter(list[ApiToken])


class TokenConfigError(ValueError):
    """The configured tokens cannot be used; the message says where and why, never a secret."""


def load_tokens(settings: Settings) -> TokenBook:
    """The tokens of ``SPM_API_TOKENS`` (validated with the settings) and of the file."""
    tokens = list(settings.api_tokens)
    path = settings.api_tokens_file
    if path is not None:
        try:
            tokens += _TOKEN_LIST.validate_json(path.read_bytes())
        except OSError as exc:
            raise TokenConfigError(f"SPM_API_TOKENS_FILE {path}: {exc.strerror}") from None
        except ValidationError as exc:
            raise TokenConfigError(f"SPM_API_TOKENS_FILE {path}: {problems(exc)}") from None
    try:
        return TokenBook(tokens)
    except ValueError as exc:
        raise TokenConfigError(f"SPM_API_TOKENS / SPM_API_TOKENS_FILE: {exc}") from None


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the port on this machine (a name other than localhost
    could resolve anywhere, so it does not count)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def access_problem(settings: Settings) -> str | None:
    """Why the worker must not start with these access settings, if it must not."""
    try:
        tokens = load_tokens(settings)
    except TokenConfigError as exc:
        return str(exc)
    if not tokens and not is_loopback(settings.web_host):
        return (
            f"SPM_WEB_HOST={settings.web_host} would open the API to the network without "
            "authentication: configure API tokens (SPM_API_TOKENS or SPM_API_TOKENS_FILE; "
            "`spm token new` makes one) or bind to 127.0.0.1"
        )
    return None


def application_options(settings: Settings) -> dict[str, Any]:
    """Faust's ``web_application_options``: JSON refusals, and the access middleware when
    tokens are configured. Logs which way the API runs, once, at start."""
    tokens = load_tokens(settings)
    if not tokens:
        log.warning(
            "api.open",
            host=settings.web_host,
            reason="no API tokens configured: every route is open, on this loopback host only",
        )
        return {"middlewares": [json_errors]}
    log.info("api.tokens", tokens=tokens.names, metrics_auth=settings.metrics_auth)
    return {"middlewares": [json_errors, access_middleware(tokens, access(settings.metrics_auth))]}


def access_middleware(tokens: TokenBook, rules: tuple[Rule, ...]) -> Middleware:
    """Answers 401/403 (JSON ``{"error", "field": "Authorization"}``, with the RFC 6750
    challenge) or lets through."""

    @web.middleware
    async def authorize(request: web.Request, handler: Handler) -> web.StreamResponse:
        resource = request.match_info.route.resource
        verdict = decide(
            rules,
            tokens,
            request.method,
            request.path if resource is None else resource.canonical,
            request.headers.get(hdrs.AUTHORIZATION),
            exists=resource is not None,
        )
        if verdict.refusal is None:
            return await handler(request)
        log.info(
            "api.denied",
            method=request.method,
            path=request.path,
            status=verdict.refusal,
            token=None if verdict.token is None else verdict.token.name,
        )
        headers = {hdrs.WWW_AUTHENTICATE: verdict.challenge} if verdict.challenge else None
        body = {"error": verdict.error, "field": hdrs.AUTHORIZATION}
        return web.json_response(body, status=verdict.refusal, headers=headers)

    return authorize
