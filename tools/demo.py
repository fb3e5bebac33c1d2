"""``python -m tools.demo run``: a synthetic organisation selling live, watched through the
worker's API.

Publishes the organisation (teams, reps, quotas), a backfill since the start of the quarter
so figures exist at once, then steady live traffic for ``--duration`` seconds while a live
leaderboard polls the worker API. It assumes the stack and a worker are running; when the
API does not answer it says so and keeps sending, and exits 1 at the end if it never did.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

import httpx
import typer
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.progress import track
from rich.table import Table
from rich.text import Text

from streams.engine.periods import PERIOD_TYPES
from streams.kafka_clients import check_accepted, new_client
from streams.producer import DeliveryError, EventProducer, encode_event
from streams.rules import Rules
from streams.settings import Settings, get_settings
from streams.topics import ensure_topics
from tools.orgsim import Organisation, backfill, traffic
from tools.settings import get_stack_settings

app = typer.Typer(
    help="The live demo: a synthetic sales org and a live leaderboard.", no_args_is_help=True
)
console = Console(highlight=False, markup=False)  # names and API errors are shown as is

METRIC = "revenue"
STATUS_STYLES = {"on_track": "green", "at_risk": "yellow", "behind": "bold red"}
API_TIMEOUT = 2.0
#: Seconds the summary waits for the worker to dead-letter the last malformed events it was sent.
DLQ_SETTLE = 10.0


# --- reading the worker API -------------------------------------------------------------------


@dataclass
class Snapshot:
    """What the API said at one poll; ``error`` says why parts are missing."""

    leaderboard: list[dict[str, Any]] = field(default_factory=list)
    reps: dict[str, dict[str, Any]] = field(default_factory=dict)  # rep_id -> revenue figures
    teams: dict[str, dict[str, Any]] = field(default_factory=dict)  # team_id -> revenue figures
    company: dict[str, Any] | None = None
    error: str | None = None


class ApiError(Exception):
    """The API answered, but not with figures (starting up, unknown scope, bad request)."""


class Api:
    """The few calls the demo makes; every failure becomes a message, never an exception."""

    def __init__(self, settings: Settings, period: str) -> None:
        self.base = f"http://{settings.web_host}:{settings.web_port}"
        self.period = period
        self.client = httpx.Client(base_url=self.base, timeout=API_TIMEOUT)

    def _get(self, path: str, **params: Any) -> dict[str, Any]:
        response = self.client.get(path, params={"period": self.period, **params})
        if response.status_code != 200:
            detail = response.json().get("error", "") if response.content else ""
            raise ApiError(f"{path}: HTTP {response.status_code} {detail}".strip())
        body: dict[str, Any] = response.json()
        return body

    def figures(self, scope_path: str) -> dict[str, Any]:
        figures: dict[str, Any] = self._get(f"{scope_path}/progress")["metrics"][METRIC]
        return figures

    def snapshot(self, org: Organisation, every_rep: bool = False) -> Snapshot:
        """Leaderboard, the figures of its reps (or of every rep), every team's, the company's."""
        snap = Snapshot()
        try:
            snap.leaderboard = self._get("/api/v1/leaderboard", metric=METRIC, limit=10)["entries"]
            wanted = (
                [r.rep_id for r in org.reps]
                if every_rep
                else [e["rep_id"] for e in snap.leaderboard]
            )
            snap.reps = {r: self.figures(f"/api/v1/reps/{r}") for r in wanted}
            snap.teams = {
                t.team_id: self.figures(f"/api/v1/teams/{t.team_id}")
                for t in (*org.regions, *org.teams)
            }
            snap.company = self.figures("/api/v1/company")
        except httpx.HTTPError as exc:
            snap.error = f"worker API at {self.base} does not answer ({type(exc).__name__})"
        except (ApiError, ValueError, KeyError) as exc:
            snap.error = f"worker API: {exc}"
        return snap

    def close(self) -> None:
        self.client.close()


class Poller(threading.Thread):
    """Polls the API and the dead-letter topic in the background so sending keeps its pace."""

    def __init__(self, api: Api, org: Organisation, settings: Settings, interval: float) -> None:
        super().__init__(name="demo-poller", daemon=True)
        self.api, self.org, self.interval = api, org, interval
        self.latest = Snapshot(error="waiting for the first answer of the worker API")
        self.answered = False
        self.dead_letters = 0
        self._stop_event = threading.Event()
        self._dlq = DeadLetterCounter(settings)

    def run(self) -> None:
        while not self._stop_event.is_set():
            snap = self.api.snapshot(self.org)
            if snap.error is None:
                self.answered = True
                self.latest = snap
            else:  # keep the last good figures on screen, with the complaint
                self.latest.error = snap.error
            self.dead_letters = self._dlq.count()
            self._stop_event.wait(self.interval)

    def stop(self, dead_letters_expected: int = 0) -> None:
        """Stop polling; give the worker up to ``DLQ_SETTLE`` s to dead-letter the last sends."""
        self._stop_event.set()
        self.join(timeout=API_TIMEOUT * 30)
        deadline = time.monotonic() + DLQ_SETTLE
        while self.dead_letters < dead_letters_expected and time.monotonic() < deadline:
            self.dead_letters = self._dlq.count()
        self._dlq.close()


class DeadLetterCounter:
    """Letters added to the DLQ topic since the demo started.

    Counted by reading them, not by end offsets: a producer's transaction markers take offsets
    too, so end offsets could overcount.
    """

    def __init__(self, settings: Settings) -> None:
        self.consumer = new_client(
            KafkaConsumer,
            settings,
            isolation_level="read_committed",
            enable_auto_commit=False,
        )
        topic = settings.topic("activity.dlq")
        partitions = self.consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        self.consumer.assign(tps)
        for tp, offset in (self.consumer.end_offsets(tps) if tps else {}).items():
            self.consumer.seek(tp, offset)
        self.seen = 0
        self.tps = tps

    def count(self) -> int:
        if not self.tps:
            return 0
        try:
            batches = self.consumer.poll(timeout_ms=200)
        except KafkaError:
            return self.seen
        self.seen += sum(len(records) for records in batches.values())
        return self.seen

    def close(self) -> None:
        self.consumer.close()


# --- rendering ---------------------------------------------------------------------------------


@dataclass
class Counters:
    backfill: int = 0
    live: int = 0
    rejected: int = 0  # malformed on purpose, sent raw so the worker dead-letters them
    resent: int = 0  # duplicates re-sent with the same id, which the worker ignores


def _money(value: str | None) -> str:
    return "-" if value is None else f"{Decimal(value):,.0f}"


def _percent(value: str | None) -> str:
    return "-" if value is None else f"{Decimal(value) * 100:.1f}%"


def _ratio(value: str | None) -> str:
    return "-" if value is None else f"{Decimal(value):.2f}"


def _status(figures: dict[str, Any] | None) -> Text:
    status = (figures or {}).get("status")
    return Text(status or "-", style=STATUS_STYLES.get(status or "", "dim"))


def render(
    org: Organisation,
    snap: Snapshot,
    counters: Counters,
    dead_letters: int,
    period: str,
    currency: str,
    remaining: float,
) -> RenderableType:
    board = Table(title=f"Top reps by {METRIC}, {period} ({currency})", title_justify="left")
    for column, justify in (
        ("#", "right"),
        ("rep", "left"),
        ("team", "left"),
        (METRIC, "right"),
        ("target", "right"),
        ("attainment", "right"),
        ("pace", "right"),
        ("status", "left"),
    ):
        board.add_column(column, justify=justify)  # type: ignore[arg-type]
    team_names = {t.team_id: t.name for t in org.all_teams}
    for entry in snap.leaderboard:
        figures = snap.reps.get(entry["rep_id"])
        team = team_names.get(entry.get("team_id") or "", entry.get("team_id") or "-")
        board.add_row(
            str(entry["rank"]),
            entry.get("name") or entry["rep_id"],
            team,
            _money(entry["value"]),
            _money(entry["target"]),
            _percent(entry["attainment"]),
            _ratio((figures or {}).get("pace")),
            _status(figures),
        )
    teams = Table(title="Team standings", title_justify="left")
    for column in ("team", METRIC, "target", "attainment", "pace", "projection", "status"):
        teams.add_column(column, justify="left" if column in ("team", "status") else "right")
    standings = [(org.company.name, snap.company)] + [
        (("  " if t.parent_id != org.company.team_id else "") + t.name, snap.teams.get(t.team_id))
        for region in org.regions
        for t in (region, *(t for t in org.teams if t.parent_id == region.team_id))
    ]
    for name, figures in standings:
        f = figures or {}
        teams.add_row(
            name,
            _money(f.get("value")),
            _money(f.get("target")),
            _percent(f.get("attainment")),
            _ratio(f.get("pace")),
            _money(f.get("projection")),
            _status(figures),
        )
    sent = counters.backfill + counters.live
    header = Text.assemble(
        ("events sent ", "bold"),
        f"{sent:,} (backfill {counters.backfill:,}, live {counters.live:,}, "
        f"re-sent duplicates {counters.resent:,})   ",
        ("malformed ", "bold"),
        f"{counters.rejected:,}   ",
        ("dead letters ", "bold"),
        f"{dead_letters:,}   ",
        ("time left ", "bold"),
        f"{max(0, remaining):.0f}s",
    )
    parts: list[RenderableType] = [Panel(header, title="spm demo", title_align="left")]
    if snap.error:
        parts.append(Text(f"⚠ {snap.error}", style="bold yellow"))
    parts += [board, teams]
    return Group(*parts)


# --- the command -------------------------------------------------------------------------------


class Demo:
    """One run: the organisation, what was sent, and the poller watching the worker."""

    def __init__(self, settings: Settings, rules: Rules, org: Organisation, period: str) -> None:
        self.settings, self.rules, self.org, self.period = settings, rules, org, period
        self.counters = Counters()
        self.seen: set[str] = set()
        self.api = Api(settings, period)

    def publish_org(self, producer: EventProducer, now: datetime) -> None:
        rules = self.rules
        teams = producer.publish_teams(self.org.team_rows())
        reps = producer.publish_roster(self.org.roster_rows())
        quotas = producer.publish_quotas(
            self.org.quota_rows(now, rules.calendar, rules.catalog, rules.rates)
        )
        producer.flush()
        console.print(f"published {teams} teams, {reps} reps, {quotas} quotas")

    def send_backfill(self, producer: EventProducer, now: datetime, since: datetime) -> None:
        events = backfill(self.org, now, self.rules.calendar, since)
        for event in track(events, description="Backfilling the quarter", console=console):
            self._send(producer, event)
            self.counters.backfill += 1
        producer.flush()

    def stream(
        self,
        producer: EventProducer,
        poller: Poller,
        rate: float,
        duration: float,
        malformed: float,
    ) -> None:
        """Live traffic at ``rate`` events/s of wall time, event times matching send times."""
        events = traffic(self.org, datetime.now(UTC), rate, self.rules.calendar, malformed)
        start = time.monotonic()

        def view() -> RenderableType:
            remaining = duration - (time.monotonic() - start)
            return render(
                self.org,
                poller.latest,
                self.counters,
                poller.dead_letters,
                self.period,
                self.settings.base_currency,
                remaining,
            )

        with Live(get_renderable=view, console=console, refresh_per_second=4):
            while (elapsed := time.monotonic() - start) < duration:
                while self.counters.live < int(elapsed * rate):
                    self._send(producer, next(events))
                    self.counters.live += 1
                time.sleep(min(0.05, 1 / rate))

    def _send(self, producer: EventProducer, event: dict[str, Any]) -> None:
        if event["id"] in self.seen:
            self.counters.resent += 1
        self.seen.add(event["id"])
        if producer.send_event(event) is not None:
            self.counters.rejected += 1
            producer.send_raw(encode_event(event))  # on purpose: shows the dead-letter path

    def summary(self, dead_letters: int) -> bool:
        """The closing report from a last full poll; False when the API gives nothing."""
        org, counters = self.org, self.counters
        snap = self.api.snapshot(org, every_rep=True)
        console.rule("summary")
        console.print(
            f"events sent: {counters.backfill + counters.live:,} "
            f"(backfill {counters.backfill:,}, live {counters.live:,}); "
            f"malformed {counters.rejected}, dead letters {dead_letters}, "
            f"re-sent duplicates {counters.resent}"
        )
        if snap.error:
            console.print(snap.error, style="bold red")
            return False
        console.print(f"top 5 by {METRIC}, {self.period}:")
        for entry in snap.leaderboard[:5]:
            console.print(
                f"  {entry['rank']}. {entry.get('name')} ({entry.get('team_id')}): "
                f"{_money(entry['value'])} {self.settings.base_currency} = "
                f"{_percent(entry['attainment'])} of target"
            )
        behind = sorted(r for r, f in snap.reps.items() if f.get("status") == "behind")
        names = {r.rep_id: r.name for r in org.reps}
        listed = ", ".join(f"{names[r]} ({r})" for r in behind) or "none"
        console.print(f"reps behind on {METRIC} ({len(behind)}): {listed}")
        caught = len(org.behind & set(behind))
        console.print(
            f"  of the {len(org.behind)} reps generated to lag, {caught} are flagged behind"
        )
        teams_behind = [
            org.team(t).name for t, f in snap.teams.items() if f.get("status") == "behind"
        ]
        console.print(
            f"teams behind on {METRIC} ({len(teams_behind)}): {', '.join(teams_behind) or 'none'}"
        )
        return True


@app.callback()
def main() -> None:
    """The live demo (needs the local stack and a worker running; see `make demo`)."""


@app.command("run")
def run(
    duration: Annotated[float, typer.Option(min=1, help="Seconds of live traffic.")] = 60.0,
    rate: Annotated[float, typer.Option(min=0.1, help="Live events per second.")] = 20.0,
    seed: Annotated[int, typer.Option(help="Seed of the organisation and its traffic.")] = 42,
    regions: Annotated[int, typer.Option(min=1, max=4)] = 2,
    teams_per_region: Annotated[int, typer.Option(min=1, max=5)] = 2,
    reps_per_team: Annotated[int, typer.Option(min=1, max=30)] = 3,
    with_backfill: Annotated[
        bool, typer.Option("--backfill/--no-backfill", help="Send history first.")
    ] = True,
    backfill_from: Annotated[
        str,
        typer.Option(
            help="Period type whose current period the backfill starts at (day..year); "
            "a longer one gives fuller figures but takes the worker longer to catch up."
        ),
    ] = "month",
    malformed: Annotated[
        float, typer.Option(min=0, max=1, help="Share of live events that break the contract.")
    ] = 0.002,
    refresh: Annotated[float, typer.Option(min=0.2, help="Seconds between API polls.")] = 1.0,
) -> None:
    """Publish a synthetic org, backfill its history, stream live traffic, show a leaderboard."""
    if backfill_from not in PERIOD_TYPES:
        raise typer.BadParameter(f"one of {', '.join(PERIOD_TYPES)}", param_hint="--backfill-from")
    settings = get_settings()
    rules = Rules.from_settings(settings)
    now = datetime.now(UTC)
    period = rules.calendar.current("quarter", now).label
    base = f"http://{settings.web_host}:{settings.web_port}"
    console.print(f"worker API  {base}/api/v1/leaderboard?metric={METRIC}&period={period}")
    console.print(f"metrics     {base}/metrics   health {base}/healthz")
    console.print(f"Prometheus  http://127.0.0.1:{get_stack_settings().prometheus_port}")
    org = Organisation.generate(seed, regions, teams_per_region, reps_per_team)
    demo = Demo(settings, rules, org, period)
    try:
        check_accepted(settings)
        ensure_topics(settings)
        poller = Poller(demo.api, org, settings, refresh)
        poller.start()
        with EventProducer(settings, rules.decoder) as producer:
            demo.publish_org(producer, now)
            if with_backfill:
                demo.send_backfill(producer, now, rules.calendar.current(backfill_from, now).start)
            demo.stream(producer, poller, rate, duration, malformed)
    except (DeliveryError, KafkaError) as exc:
        console.print(f"Kafka at {settings.kafka_bootstrap} failed: {exc}", style="bold red")
        raise typer.Exit(2) from None
    poller.stop(dead_letters_expected=demo.counters.rejected)
    answered = demo.summary(poller.dead_letters) or poller.answered
    demo.api.close()
    if not answered:
        console.print(f"the worker API at {base} never answered", style="bold red")
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
