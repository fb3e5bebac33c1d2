"""Every query of the committed boards, runnable without a Grafana server.

Tests use this to prove the boards work on a real stack: :func:`panel_queries` lists each
panel target with its data source, :class:`BoardRunner` resolves the template variables the way
Grafana does (custom values, Prometheus ``label_values``/``query_result`` with the variable's
regex, ClickHouse SQL), fills them and Grafana's macros into the query text (:func:`interpolate`)
and runs it against Prometheus' HTTP API or a ClickHouse client.

Only the variable formats and macros the boards use are known; anything else raises, so a board
that starts using a new one fails its tests instead of being half-checked.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

BOARDS_DIR = Path(__file__).resolve().parent
SqlRunner = Callable[[str], Sequence[Sequence[Any]]]


@dataclass(frozen=True)
class PanelQuery:
    board: str  # dashboard uid
    panel: str  # panel title
    ref_id: str
    datasource: str  # "prometheus" or "clickhouse" (data source uid)
    text: str  # PromQL or SQL, variables and macros not yet filled in
    instant: bool  # Prometheus: an instant query (tables, bar gauges) rather than a range


@dataclass(frozen=True)
class TimeRange:
    start: datetime
    end: datetime

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


def load_boards(directory: Path = BOARDS_DIR) -> dict[str, dict[str, Any]]:
    """uid → dashboard JSON of every board in ``directory``."""
    boards = (json.loads(path.read_text()) for path in sorted(directory.glob("*.json")))
    return {board["uid"]: board for board in boards}


def panels(board: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows."""
    for panel in board.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def panel_queries(board: Mapping[str, Any]) -> list[PanelQuery]:
    queries = []
    for panel in panels(board):
        for target in panel.get("targets") or []:
            source = (target.get("datasource") or panel.get("datasource") or {})["uid"]
            text = target["expr"] if source == "prometheus" else target["rawSql"]
            queries.append(
                PanelQuery(
                    board=board["uid"],
                    panel=panel["title"],
                    ref_id=target["refId"],
                    datasource=source,
                    text=text,
                    instant=bool(target.get("instant")),
                )
            )
    return queries


# --- interpolation -------------------------------------------------------------------------------
_VARIABLE = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\$([A-Za-z]\w*)")
_CLICKHOUSE_MACRO = re.compile(
    r"\$__(timeFilter_ms|timeFilter|fromTime_ms|toTime_ms|fromTime|toTime)(?:\(([^)]*)\))?"
)


def sql_string(value: str) -> str:
    """Grafana's ``sqlstring`` format: a quoted SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def _format(value: str, fmt: str | None) -> str:
    if fmt is None or fmt == "raw":
        return value
    if fmt == "sqlstring":
        return sql_string(value)
    raise ValueError(f"variable format {fmt!r} is not supported here")


def interpolate(
    text: str,
    values: Mapping[str, str],
    time_range: TimeRange,
    *,
    datasource: str,
    step: float = 15.0,
    scrape_interval: float = 15.0,
) -> str:
    """``text`` with dashboard variables and Grafana's macros for ``datasource`` filled in."""
    if datasource == "prometheus":
        rate_interval = max(step + scrape_interval, 4 * scrape_interval)
        macros = {
            "$__rate_interval": f"{math.ceil(rate_interval)}s",
            "$__interval": f"{math.ceil(step)}s",
            "$__range": f"{math.ceil(time_range.seconds)}s",
        }
        for macro, replacement in sorted(macros.items(), key=lambda kv: -len(kv[0])):
            text = text.replace(macro, replacement)
    else:
        text = _CLICKHOUSE_MACRO.sub(lambda m: _clickhouse_macro(m[1], m[2], time_range), text)
    if "$__" in text:
        raise ValueError(f"unsupported Grafana macro in: {text}")

    def variable(match: re.Match[str]) -> str:
        name = match[1] or match[3]
        if name not in values:
            raise ValueError(f"unknown variable ${name} in: {text}")
        return _format(values[name], match[2])

    return _VARIABLE.sub(variable, text)


def _clickhouse_macro(name: str, argument: str | None, time_range: TimeRange) -> str:
    """The grafana-clickhouse-datasource macros (pkg/macros/macros.go of the plugin)."""
    start, end = time_range.start, time_range.end
    seconds = {"fromTime": start, "toTime": end}
    millis = {"fromTime_ms": start, "toTime_ms": end}
    if name in seconds:
        return f"toDateTime({int(seconds[name].timestamp())})"
    if name in millis:
        return f"fromUnixTimestamp64Milli({int(millis[name].timestamp() * 1000)})"
    if not argument:
        raise ValueError(f"$__{name} needs a column")
    if name == "timeFilter":
        low, high = (f"toDateTime({int(t.timestamp())})" for t in (start, end))
    else:
        low, high = (f"fromUnixTimestamp64Milli({int(t.timestamp() * 1000)})" for t in (start, end))
    return f"{argument} >= {low} AND {argument} <= {high}"


# --- running -----------------------------------------------------------------------------------
def has_data(result: Sequence[Any]) -> bool:
    """Whether a :meth:`BoardRunner.run` result shows something: a Prometheus series with at
    least one sample, or at least one SQL row."""
    return any(
        bool(row.get("values") or row.get("value")) if isinstance(row, dict) else True
        for row in result
    )


class BoardRunner:
    """Resolves variables and runs panel queries against Prometheus and ClickHouse."""

    def __init__(
        self,
        prometheus_url: str,
        run_sql: SqlRunner,
        time_range: TimeRange,
        *,
        scrape_interval: float = 15.0,
    ) -> None:
        self._http = httpx.Client(base_url=prometheus_url, timeout=30)
        self._run_sql = run_sql
        self.time_range = time_range
        self.scrape_interval = scrape_interval
        # Grafana asks for about this many points per range query.
        self.step = max(time_range.seconds / 500, scrape_interval)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> BoardRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def fill(self, query: PanelQuery, values: Mapping[str, str]) -> str:
        return interpolate(
            query.text,
            values,
            self.time_range,
            datasource=query.datasource,
            step=self.step,
            scrape_interval=self.scrape_interval,
        )

    def run(self, query: PanelQuery, values: Mapping[str, str]) -> list[Any]:
        """The query's result: Prometheus series/samples, or ClickHouse rows."""
        text = self.fill(query, values)
        if query.datasource == "clickhouse":
            return list(self._run_sql(text))
        if query.instant:
            params = {"query": text, "time": self.time_range.end.timestamp()}
            return self._prometheus("/api/v1/query", params)["result"]
        params = {
            "query": text,
            "start": self.time_range.start.timestamp(),
            "end": self.time_range.end.timestamp(),
            "step": self.step,
        }
        return self._prometheus("/api/v1/query_range", params)["result"]

    def variables(
        self, board: Mapping[str, Any], chosen: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        """A value for every variable of ``board``, in declaration order (later variables may
        use earlier ones): ``chosen`` where given (it must be an option), else Grafana's default
        (the current value, else "All" where allowed, else the first option)."""
        chosen = chosen or {}
        values: dict[str, str] = {}
        for variable in board.get("templating", {}).get("list", []):
            name = variable["name"]
            options = self._options(variable, values)
            if name in chosen:
                if chosen[name] not in options:
                    raise ValueError(f"{name}={chosen[name]!r} is not one of {options}")
                values[name] = chosen[name]
            elif variable["type"] == "constant":
                values[name] = options[0]
            elif current := (variable.get("current") or {}).get("value"):
                values[name] = current
            elif variable.get("includeAll"):
                values[name] = variable.get("allValue") or "|".join(map(re.escape, options))
            elif options:
                values[name] = options[0]
            else:
                raise ValueError(f"variable {name} of {board['uid']} has no value to offer")
        return values

    def _options(self, variable: Mapping[str, Any], values: Mapping[str, str]) -> list[str]:
        kind = variable["type"]
        if kind == "custom":
            return [part.strip() for part in variable["query"].split(",")]
        if kind == "constant":
            return [variable["query"]]
        if kind != "query":
            raise ValueError(f"variable type {kind!r} is not supported here")
        source = variable["datasource"]["uid"]
        query = variable["query"]
        text = query["query"] if isinstance(query, dict) else query
        text = interpolate(text, values, self.time_range, datasource=source)
        if source == "clickhouse":
            found = [str(row[0]) for row in self._run_sql(text)]
        else:
            found = self._prometheus_options(text)
        found = _apply_regex(found, variable.get("regex") or "")
        if variable.get("sort") == 1:
            found.sort()
        return list(dict.fromkeys(found))

    def _prometheus_options(self, text: str) -> list[str]:
        window = {
            "start": self.time_range.start.timestamp(),
            "end": self.time_range.end.timestamp(),
        }
        if match := re.fullmatch(r"label_values\((?:(.+),\s*)?(\w+)\)", text.strip()):
            selector, label = match[1], match[2]
            params: dict[str, Any] = dict(window)
            if selector:
                params["match[]"] = selector
            return [str(v) for v in self._prometheus(f"/api/v1/label/{label}/values", params)]
        if match := re.fullmatch(r"query_result\((.+)\)", text.strip()):
            params = {"query": match[1], "time": self.time_range.end.timestamp()}
            return [
                _grafana_series_text(r) for r in self._prometheus("/api/v1/query", params)["result"]
            ]
        raise ValueError(f"Prometheus variable query not supported here: {text}")

    def _prometheus(self, path: str, params: Mapping[str, Any]) -> Any:
        response = self._http.get(path, params=params)
        body = response.json()
        if response.status_code != 200 or body.get("status") != "success":
            raise RuntimeError(f"Prometheus {path} {params}: {response.status_code} {body}")
        return body["data"]


def _grafana_series_text(result: Mapping[str, Any]) -> str:
    """How Grafana prints a ``query_result`` sample: name{labels} value timestamp_ms."""
    labels = dict(result["metric"])
    name = labels.pop("__name__", "")
    body = ",".join(f'{key}="{value}"' for key, value in labels.items())
    at, value = result["value"]
    return f"{name}{{{body}}} {value} {int(float(at) * 1000)}"


def _apply_regex(found: list[str], regex: str) -> list[str]:
    """Grafana's variable regex: keep matching options; a ``value`` group (or the first
    group) is the option's value."""
    if not regex:
        return found
    pattern = re.compile(re.sub(r"\(\?<(?=[A-Za-z])", "(?P<", regex.strip("/")))
    kept = []
    for option in found:
        match = pattern.search(option)
        if match is None:
            continue
        groups = match.groupdict()
        if groups.get("value") is not None:
            kept.append(groups["value"])
        elif match.groups():
            kept.append(match[1])
        else:
            kept.append(option)
    return kept
