"""Validation errors as values: bad input is data to route (DLQ, CSV report), not a crash."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Invalid:
    """Why an input was rejected.

    ``code`` is stable and machine-readable (``too_large``, ``not_utf8``, ``not_json``,
    ``schema``, ``bad_time``, ``bad_amount``, ``bad_splits``, ``unknown_currency``,
    ``unknown_type``, ``bad_csv``, ``bad_period``); ``path`` names the offending field
    (``data.splits[1].share``) or CSV line (``line 7``), empty when it is the whole input.
    """

    code: str
    message: str
    path: str = ""
