"""The organisation's rules, built once from settings: calendar, metric catalog, rates, pace.

Every shell (worker, CLI, producer, tests) builds its engine objects here so they all count
with the same configuration.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from streams.engine.catalog import MetricCatalog
from streams.engine.events import Decoder
from streams.engine.money import Rates
from streams.engine.pace import Thresholds
from streams.engine.periods import Calendar
from streams.settings import Settings


@dataclass(frozen=True)
class Rules:
    calendar: Calendar
    catalog: MetricCatalog
    rates: Rates
    thresholds: Thresholds
    decoder: Decoder

    @classmethod
    def from_settings(cls, settings: Settings) -> Rules:
        catalog = MetricCatalog.load(settings.catalog_path)
        rates = Rates.load(settings.rates_path, settings.base_currency)
        return cls(
            calendar=Calendar(
                settings.timezone,
                settings.fiscal_year_start_month,
                settings.week_start,
                settings.business_days,
                settings.holiday_country,
            ),
            catalog=catalog,
            rates=rates,
            thresholds=Thresholds(
                behind=Decimal(str(settings.behind_pace)),
                at_risk=Decimal(str(settings.at_risk_pace)),
                min_elapsed=Decimal(str(settings.min_elapsed)),
            ),
            decoder=Decoder(
                catalog, rates, strict=settings.strict_types, max_bytes=settings.max_event_bytes
            ),
        )
