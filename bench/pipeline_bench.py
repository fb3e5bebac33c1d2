"""Pipeline benchmark on the local stack: figures to report, not a timed test.

Every measurement runs a real worker (the integration harness's ``Worker``: the README's
command) on its own topic prefix / app id, against the broker of ``make stack-up``:

* **throughput** (``alo``, ``eos``, ``unkeyed``): ``--events`` realistic events are pre-filled
  into ``activity`` (≈ 5 % deal events: wins, split 2–3 ways, amended re-wins, losses and
  reopenings; the rest calls, e-mails, meetings, proposals; ``--reps`` reps in teams), keyed
  the way ``streams.producer.EventProducer`` keys them (``Event.partition_key``) or with no key
  at all (as ``kcat`` sends). The clock starts once the worker is healthy *and* its group has
  committed input (start-up excluded) and stops when the group has committed past every record
  of every pipeline topic. The work in between is counted in input events through the last
  stage (a first stage that raced ahead during start-up does not count as done), see
  ``sustain``. ``events_per_cpu_s`` divides by the worker's CPU time instead, which stays
  comparable when the machine is busy. A run that does not finish in ``--timeout`` s reports
  the rate so far and is listed under ``incomplete``.
* **bare consumer**: a bare aiokafka consumer reading the same backlog (the upper bound).
* **latency**: a steady ``--rate`` of traffic for ``--duration`` s with probe calls of a rep
  of its own team; the rep's and the team's progress API (period: today) is polled until each
  probe is counted; p50/p99 of produce → visible (censored at ``--sample-timeout``).
* **rss**: the worker's RSS once a roster and quotas of ``--rss-reps`` reps are loaded.
* **million** (``--million``, off by default: long): ``--million-events`` events processed,
  then the state sizes from ``GET /healthz`` (``"state"``), or the RSS if it has none.
* ``--profile PATH``: an extra at-least-once run with ``py-spy record`` attached during the
  sustained phase (raw stacks in PATH, the top frames by own time in PATH's ``.top.txt``).

Progress goes to stderr; the last stdout line is one JSON object (``--output`` also writes it).
Run from the repository root::

    PYTHONPATH=. .venv/bin/python bench/pipeline_bench.py --events 20000 --profile var/profile.txt
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer
from aiokafka import TopicPartition as AioTopicPartition
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from streams.engine.errors import Invalid
from streams.engine.events import Event
from streams.engine.imports import QuotaRow, RosterRow, TeamRow
from streams.kafka_clients import check_accepted, new_client
from streams.producer import EventProducer
from streams.rules import Rules
from streams.settings import REPO_ROOT, Settings
from streams.topics import ensure_topics
from tests.integration.harness import PIPELINE_TOPICS, Worker, wait_caught_up, worker_settings

log = logging.getLogger("pipeline_bench")

ALO, EOS = "at_least_once", "exactly_once"
#: Activity types and their relative frequency (a rep's working day: calls ≫ e-mails > …).
ACTIVITIES = {"call.completed": 12.0, "email.sent": 8.0, "meeting.held": 2.0, "proposal.sent": 0.5}
SOURCES = {
    "call.completed": "dialer.bench",
    "email.sent": "mail.bench",
    "meeting.held": "calendar.bench",
    "proposal.sent": "crm.bench",
}
DEAL_SOURCE = "crm.bench"
#: What a deal event is, given that one is drawn: a new win, or the history of an earlier one.
DEAL_KINDS = {"win": 0.6, "amend": 0.15, "lost": 0.125, "reopened": 0.125}
SPLIT_CHANCE = 0.25
SPLITS = (
    ("0.5", "0.5"),
    ("0.6", "0.4"),
    ("0.7", "0.3"),
    ("0.5", "0.3", "0.2"),
    ("0.4", "0.3", "0.3"),
)
#: (currency, median deal in that currency) per region, cycled.
REGION_MONEY = (("USD", 6_000.0), ("EUR", 5_500.0), ("GBP", 4_800.0), ("AUD", 9_000.0))
QUOTA_PERIOD_TYPES = ("week", "month", "quarter", "year")
#: Baseline per rep and weekday, for quota targets (deals.won: wins; revenue: per win).
DAILY_BASELINE = {**ACTIVITIES, "deal.won": 0.4}
#: Settings each phase sets itself (not part of the reported configuration).
PER_RUN_FIELDS = {
    "topic_prefix",
    "app_id",
    "web_port",
    "data_dir",
    "clickhouse_url",
    "var_dir",
    "cache_dir",
    "kafka_port",
    "kafka_controller_port",
    "prometheus_port",
    "alertmanager_port",
    "stack_start_timeout",
    "processing_guarantee",
}


class BenchError(RuntimeError):
    """A phase could not run or finish within its bound (the message says which and why)."""


# --- organisation and events --------------------------------------------------------------


@dataclass(frozen=True)
class Org:
    """Company → regions → teams → reps, with each team's deal currency and median amount."""

    teams: tuple[TeamRow, ...]
    reps: tuple[RosterRow, ...]
    money: dict[str, tuple[str, float]]
    members: dict[str, tuple[str, ...]]

    @property
    def rep_ids(self) -> list[str]:
        return [r.rep_id for r in self.reps]


def build_org(reps: int, team_size: int, teams_per_region: int) -> Org:
    """``reps`` reps in teams of ``team_size``, ``teams_per_region`` teams per region."""
    n_teams = max(1, math.ceil(reps / team_size))
    n_regions = max(1, math.ceil(n_teams / teams_per_region))
    teams = [TeamRow("acme", "Acme Corp", None)]
    money: dict[str, tuple[str, float]] = {}
    for r in range(n_regions):
        teams.append(TeamRow(f"region-{r:02d}", f"Region {r}", "acme"))
    for t in range(n_teams):
        region = f"region-{t // teams_per_region:02d}"
        teams.append(TeamRow(f"team-{t:04d}", f"Team {t}", region))
        money[f"team-{t:04d}"] = REGION_MONEY[(t // teams_per_region) % len(REGION_MONEY)]
    roster = tuple(
        RosterRow(f"rep-{i:05d}", f"Rep {i}", f"team-{i // team_size:04d}", None)
        for i in range(reps)
    )
    members: dict[str, list[str]] = {}
    for row in roster:
        members.setdefault(row.team_id, []).append(row.rep_id)
    return Org(tuple(teams), roster, money, {k: tuple(v) for k, v in members.items()})


def quota_rows(org: Org, rules: Rules, now: datetime) -> Iterator[QuotaRow]:
    """Every rep's target for every catalog metric in the current week … year."""
    for period_type in QUOTA_PERIOD_TYPES:
        period = rules.calendar.current(period_type, now)
        weekdays = max(1, round((period.end - period.start).days * 5 / 7))
        for metric in rules.catalog.metrics:
            daily = sum(DAILY_BASELINE.get(t, 1.0) for t in metric.event_types)
            if metric.kind == "amount":
                daily *= 6_000
            target = Decimal(max(1, round(daily * weekdays)))
            for rep in org.reps:
                yield QuotaRow("rep", rep.rep_id, metric.name, period.label, target, None)


def publish_reference(settings: Settings, org: Org, rules: Rules, now: datetime) -> int:
    """Teams, roster and quotas through the project's producer; the number of records."""
    with EventProducer(settings, rules.decoder) as producer:
        count = producer.publish_teams(org.teams)
        count += producer.publish_roster(org.reps)
        count += producer.publish_quotas(quota_rows(org, rules, now))
    return count


@dataclass
class _Deal:
    rep: str
    team: str
    time: datetime
    splits: tuple[tuple[str, str], ...] | None


def generate_events(
    org: Org, n: int, now: datetime, since: datetime, seed: int, deal_share: float = 0.05
) -> Iterator[dict[str, Any]]:
    """``n`` CloudEvents timed in ``[since, now)``: ``deal_share`` deal events, the rest
    activities. Amendments and retractions come after their win in event time."""
    rng = random.Random(seed)
    reps = org.rep_ids
    kinds, weights = list(ACTIVITIES), list(ACTIVITIES.values())
    deal_kinds, deal_weights = list(DEAL_KINDS), list(DEAL_KINDS.values())
    team_of = {r.rep_id: r.team_id for r in org.reps}
    span = max(1.0, (now - since).total_seconds())
    deals: dict[str, _Deal] = {}
    deal_ids: list[str] = []

    def event(i: int, kind: str, source: str, at: datetime, data: dict[str, Any]) -> dict[str, Any]:
        return {
            "specversion": "1.0",
            "id": f"bench-{seed}-{i}",
            "source": source,
            "type": kind,
            "time": at.isoformat(timespec="milliseconds"),
            "data": data,
        }

    def won(deal_id: str, deal: _Deal) -> dict[str, Any]:
        currency, median = org.money[deal.team]
        data: dict[str, Any] = {
            "rep_id": deal.rep,
            "deal_id": deal_id,
            "currency": currency,
            "amount": f"{rng.lognormvariate(math.log(median), 0.5):.2f}",
        }
        if deal.splits:
            data["splits"] = [{"rep_id": rep, "share": share} for rep, share in deal.splits]
        return data

    for i in range(n):
        if rng.random() >= deal_share:
            kind = rng.choices(kinds, weights)[0]
            at = since + timedelta(seconds=rng.uniform(0, span))
            yield event(i, kind, SOURCES[kind], at, {"rep_id": rng.choice(reps)})
            continue
        what = rng.choices(deal_kinds, deal_weights)[0] if deal_ids else "win"
        if what == "win":
            rep = rng.choice(reps)
            deal = _Deal(rep, team_of[rep], since + timedelta(seconds=rng.uniform(0, span)), None)
            mates = [m for m in org.members[deal.team] if m != rep]
            if mates and rng.random() < SPLIT_CHANCE:
                shares = rng.choice([s for s in SPLITS if len(s) - 1 <= len(mates)])
                others = rng.sample(mates, len(shares) - 1)
                deal.splits = tuple(zip([rep, *others], shares, strict=True))
            deal_id = f"D-{seed}-{i}"
            deals[deal_id] = deal
            deal_ids.append(deal_id)
            yield event(i, "deal.won", DEAL_SOURCE, deal.time, won(deal_id, deal))
            continue
        deal_id = rng.choice(deal_ids)
        deal = deals[deal_id]
        at = deal.time + timedelta(seconds=rng.uniform(0, (now - deal.time).total_seconds()))
        if what == "amend":
            yield event(i, "deal.won", DEAL_SOURCE, at, won(deal_id, deal))
        else:
            kind = f"deal.{what}"
            yield event(i, kind, DEAL_SOURCE, at, {"rep_id": deal.rep, "deal_id": deal_id})


@dataclass(frozen=True, slots=True)
class Item:
    """One event as it goes on the wire, with its decoding (for the key)."""

    raw: bytes
    event: Event


def encode(events: Iterable[dict[str, Any]], rules: Rules) -> Iterator[Item]:
    for doc in events:
        raw = json.dumps(doc, separators=(",", ":")).encode()
        decoded = rules.decoder.decode(raw)
        if isinstance(decoded, Invalid):
            raise BenchError(f"generated an invalid event ({decoded.message}): {raw!r}")
        yield Item(raw, decoded)


def produce(settings: Settings, items: Iterable[Item], keyed: bool, rules: Rules) -> int:
    """Send ``items`` to ``activity`` with the project's producer, keyed by
    ``Event.partition_key`` or unkeyed; returns how many were sent (all acknowledged)."""
    count = 0
    if "producer_linger_ms" in Settings.model_fields:
        settings = settings.model_copy(update={"producer_linger_ms": 50})
    with EventProducer(settings, rules.decoder) as p:
        for item in items:
            if keyed:
                p.send_valid(item.raw, item.event)
            else:
                p.send_raw(item.raw, key=None)
            count += 1
            if count % 100_000 == 0:
                p.flush(timeout=120)
                log.info("  produced %d", count)
    return count


# --- run context, workers, offsets --------------------------------------------------------


@dataclass
class Bench:
    """One invocation: the stack's settings, the run id every prefix starts with, overrides."""

    base: Settings
    run_id: str
    tmp: Path
    log_dir: Path
    overrides: dict[str, Any]
    start_timeout: float
    guarantee_supported: bool = field(init=False)

    def __post_init__(self) -> None:
        self.guarantee_supported = "processing_guarantee" in Settings.model_fields

    def settings(self, phase: str, guarantee: str = ALO) -> Settings:
        """Fresh topics, group, data dir and port for ``phase``; its topics are created."""
        prefix = f"{self.run_id}-{phase}"
        values = dict(self.overrides)
        if self.guarantee_supported:
            values["processing_guarantee"] = guarantee
        (self.tmp / prefix).mkdir(parents=True)
        settings = worker_settings(self.base, prefix, self.tmp / prefix, **values)
        ensure_topics(settings)
        return settings

    def worker(self, settings: Settings) -> Worker:
        return Worker(settings, self.log_dir / f"{settings.app_id}.log")

    def start(self, worker: Worker, timeout: float | None = None) -> float:
        """Start ``worker`` and wait until healthy; the seconds it took."""
        t0 = time.monotonic()
        try:
            worker.start(timeout=timeout or self.start_timeout)
        except AssertionError as exc:
            worker.stop()
            raise BenchError(f"worker {worker.settings.app_id} did not start: {exc}") from exc
        return time.monotonic() - t0


def check_alive(worker: Worker) -> None:
    process = worker.process
    if process is not None and process.poll() is not None:
        raise BenchError(f"worker exited with {process.returncode}\n{worker.log_tail()}")


def health(worker: Worker, timeout: float = 60.0) -> dict[str, Any]:
    """``GET /healthz`` (any status), retried while the worker is too busy to answer."""
    deadline = time.monotonic() + timeout
    while True:
        check_alive(worker)
        try:
            body: dict[str, Any] = httpx.get(f"{worker.url}/healthz", timeout=10).json()
            return body
        except (httpx.HTTPError, ValueError) as exc:
            if time.monotonic() > deadline:
                raise BenchError(f"GET /healthz did not answer in {timeout:.0f}s: {exc}") from exc
            time.sleep(0.5)


def wait_idle(pid: int, timeout: float, busy: float = 0.1, window: float = 2.0) -> bool:
    """Wait until ``pid`` uses less than ``busy`` of a core over ``window`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = cpu_seconds(pid)
        time.sleep(window)
        if cpu_seconds(pid) - before < busy * window:
            return True
    return False


def rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of ``pid`` in MiB."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


@dataclass(frozen=True)
class Snapshot:
    at: float
    committed: dict[TopicPartition, int]
    ends: dict[TopicPartition, int]
    cpu_s: float

    def consumed(self, topic: str) -> int:
        return sum(o for tp, o in self.committed.items() if tp.topic == topic)

    def end(self, topic: str) -> int:
        return sum(o for tp, o in self.ends.items() if tp.topic == topic)

    def through(self, chain: list[str]) -> float:
        """Input events through the whole pipeline, estimated at its last stage.

        ``chain`` is the input topic, then the internal topics in flow order. Whoever has
        consumed the share c/e of an internal topic has done that share of the input events
        the topic stands for so far; the input topic's units are input events. A topic with
        nothing in it constrains nothing (some are written for a few events only, such as a
        re-route topic).
        """
        units = float(self.consumed(chain[0]))
        for topic in chain[1:]:
            if end := self.end(topic):
                units *= self.consumed(topic) / end
        return units

    def stages(self, chain: list[str]) -> dict[str, tuple[int, int]]:
        """(committed, end) per topic."""
        return {topic: (self.consumed(topic), self.end(topic)) for topic in chain}

    def caught_up(self) -> bool:
        """Committed at the end of every partition (exact without transaction markers)."""
        return all(self.committed.get(tp, 0) >= end for tp, end in self.ends.items())


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class GroupWatch:
    """Committed offsets of the worker's group, end offsets of the pipeline topics, and the
    worker's CPU time."""

    def __init__(self, settings: Settings, pid: int) -> None:
        self.group = settings.app_id
        self.pid = pid
        self.admin = new_client(KafkaAdminClient, settings)
        self.consumer = new_client(KafkaConsumer, settings, enable_auto_commit=False)
        names = [settings.topic(t) for t in PIPELINE_TOPICS]
        self.tps = [
            TopicPartition(t, p)
            for t in names
            for p in sorted(self.consumer.partitions_for_topic(t) or ())
        ]

    def snapshot(self) -> Snapshot:
        committed = self.admin.list_group_offsets(self.group).get(self.group, {})
        ends = self.consumer.end_offsets(self.tps)
        offsets = {tp: m.offset for tp, m in committed.items() if m.offset >= 0}
        return Snapshot(time.monotonic(), offsets, ends, cpu_seconds(self.pid))

    def close(self) -> None:
        self.consumer.close()
        self.admin.close()


@dataclass
class Sustained:
    events: int
    through_before_start: int
    stages_at_start: dict[str, tuple[int, int]]
    seconds: float
    cpu_s: float
    complete: bool
    end: str
    note: str | None = None

    @property
    def events_per_s(self) -> float | None:
        return self.events / self.seconds if self.events and self.seconds > 0 else None

    @property
    def events_per_cpu_s(self) -> float | None:
        return self.events / self.cpu_s if self.events and self.cpu_s > 0 else None


def sustain(
    settings: Settings,
    worker: Worker,
    n_input: int,
    timeout: float,
    transactional: bool,
    started: Callable[[], None] | None = None,
    stop_early: Callable[[], bool] | None = None,
) -> Sustained:
    """Time the worker from its first committed input (it is healthy) to the moment its group
    has committed past every record of every pipeline topic. The work is counted in input
    events through the last stage (``Snapshot.through``): a first stage that races ahead
    while the worker starts does not inflate or deflate the figure. After ``timeout`` s (or
    ``stop_early``): the rate so far.

    Without transactions, committed == end offsets is exact and sampled every 0.25 s (twice in
    a row with unchanged ends: stages feed each other). With them, commit markers keep
    committed offsets below the ends, so the harness's ``wait_caught_up`` (which reads what is
    left with read_committed) decides, and the end is when it returns (≤ ~1 s late).
    """
    chain = [settings.topic(t) for t in PIPELINE_TOPICS]
    input_topic = chain[0]
    assert worker.process is not None
    watch = GroupWatch(settings, worker.process.pid)
    try:
        deadline = time.monotonic() + timeout
        first = watch.snapshot()
        while first.consumed(input_topic) == 0:
            check_alive(worker)
            if time.monotonic() > deadline:
                raise BenchError(f"{settings.app_id}: healthy but consumed nothing in {timeout}s")
            time.sleep(0.1)
            first = watch.snapshot()
        if started is not None:
            started()

        def measured(last: Snapshot, complete: bool, end: str, note: str | None) -> Sustained:
            before = round(first.through(chain))
            done = (n_input if complete else round(last.through(chain))) - before
            cpu = last.cpu_s - first.cpu_s
            return Sustained(
                done, before, first.stages(chain), last.at - first.at, cpu, complete, end, note
            )

        if transactional:
            try:
                wait_caught_up(
                    settings, timeout=max(1.0, deadline - time.monotonic()), worker=worker
                )
            except AssertionError:
                check_alive(worker)
                last = watch.snapshot()
                note = f"not caught up in {timeout:.0f}s: the rate so far"
                return measured(last, False, "timeout", note)
            return measured(watch.snapshot(), True, "wait_caught_up", None)

        pending: Snapshot | None = None
        while True:
            check_alive(worker)
            snap = watch.snapshot()
            if snap.caught_up():
                if pending is not None and pending.ends == snap.ends:
                    break
                pending = snap
            else:
                pending = None
            if snap.at > deadline or (stop_early is not None and stop_early()):
                why = "timeout" if snap.at > deadline else "stopped"
                note = f"{why} after {snap.at - first.at:.0f}s: the rate so far"
                return measured(snap, False, why, note)
            time.sleep(0.25)
        result = measured(pending, True, "offsets", None)
        if result.events <= 0:
            result.note = "the backlog was consumed during start-up: raise --events"
        return result
    finally:
        watch.close()


# --- profiling ------------------------------------------------------------------------------


class Profiler:
    """``py-spy record`` on a process, raw (collapsed) stacks aggregated by function."""

    def __init__(self, path: Path, seconds: float, rate: int) -> None:
        self.path = path
        self.seconds = seconds
        self.rate = rate
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, pid: int) -> None:
        py_spy = Path(sys.executable).parent / "py-spy"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                str(py_spy),
                "record",
                "--format",
                "raw",
                "--function",
                "--nonblocking",
                "-r",
                str(self.rate),
                "-d",
                str(math.ceil(self.seconds)),
                "-o",
                str(self.path),
                "-p",
                str(pid),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        log.info("  py-spy record -p %d for %.0fs → %s", pid, self.seconds, self.path)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def finish(self) -> None:
        """Stop sampling (SIGINT makes py-spy write what it has) and wait for the file."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            _, err = self.process.communicate(timeout=30)
        except subprocess.TimeoutExpired as exc:
            self.process.kill()
            raise BenchError("py-spy did not stop within 30s") from exc
        if not self.path.exists():
            raise BenchError(f"py-spy wrote no profile: {err.decode(errors='replace')[-2000:]}")


def summarize_profile(raw: Path, top: int = 15) -> dict[str, Any]:
    """Top frames by own time (leaf samples) and project frames by inclusive time."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            if "streams/" in frame:
                inclusive[frame] += count
    return {
        "samples": total,
        "top_own": [(f, n, round(100 * n / total, 1)) for f, n in own.most_common(top)],
        "top_streams_inclusive": [
            (f, n, round(100 * n / total, 1)) for f, n in inclusive.most_common(top)
        ],
    }


def profile_text(summary: dict[str, Any]) -> str:
    lines = [
        f"py-spy samples: {summary['samples']} (functions; own = leaf samples)",
        "",
        "  own %  samples  function (file:first line)",
    ]
    lines += [f"{pct:7.1f}  {n:7d}  {f}" for f, n, pct in summary["top_own"]]
    lines += ["", "project frames by inclusive time", "  incl % samples  function"]
    lines += [f"{pct:7.1f}  {n:7d}  {f}" for f, n, pct in summary["top_streams_inclusive"]]
    return "\n".join(lines) + "\n"


# --- measurements ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Backlog:
    org: Org
    items: list[Item]
    mix: dict[str, int]


def make_backlog(rules: Rules, events: int, reps: int, seed: int) -> Backlog:
    now = datetime.now(UTC)
    org = build_org(reps, team_size=12, teams_per_region=5)
    since = rules.calendar.current("quarter", now).start
    items = list(encode(generate_events(org, events, now, since, seed), rules))
    return Backlog(org, items, dict(Counter(i.event.type for i in items).most_common()))


def calls_metric(rules: Rules) -> str:
    return next(m.name for m in rules.catalog.metrics if m.event_types == {"call.completed"})


def verify_calls(
    worker: Worker, rules: Rules, backlog: Backlog, timeout: float = 30.0
) -> dict[str, Any]:
    """The company's calls this quarter in the API against the backlog's: a run whose worker
    dropped events (a crashed agent, say) is not a throughput figure."""
    label = rules.calendar.current("quarter", datetime.now(UTC)).label
    expected = backlog.mix.get("call.completed", 0)
    metric = calls_metric(rules)
    deadline = time.monotonic() + timeout
    seen: int | None = None
    while True:
        check_alive(worker)
        try:
            url = f"{worker.url}/api/v1/company/progress"
            answer = httpx.get(url, params={"period": label}, timeout=10)
            if answer.status_code == 200:
                seen = _value(answer.json(), metric)
        except (httpx.HTTPError, ValueError):
            pass
        if seen == expected or time.monotonic() > deadline:
            return {
                "period": label,
                "calls_expected": expected,
                "calls_seen": seen,
                "valid": seen == expected,
            }
        time.sleep(0.5)


def throughput(
    bench: Bench,
    rules: Rules,
    backlog: Backlog,
    phase: str,
    guarantee: str,
    keyed: bool,
    timeout: float,
    profiler: Profiler | None = None,
) -> dict[str, Any]:
    """One worker over the pre-filled backlog (see ``sustain``)."""
    settings = bench.settings(phase, guarantee)
    log.info(
        "%s: %d events (%s, %s) into %s",
        phase,
        len(backlog.items),
        guarantee,
        "keyed" if keyed else "unkeyed",
        settings.topic("activity"),
    )
    publish_reference(settings, backlog.org, rules, datetime.now(UTC))
    produce(settings, backlog.items, keyed, rules)
    worker = bench.worker(settings)
    startup = bench.start(worker)
    try:
        state = health(worker)
        assert worker.process is not None
        pid = worker.process.pid
        result = sustain(
            settings,
            worker,
            len(backlog.items),
            timeout,
            transactional=guarantee == EOS and bench.guarantee_supported,
            started=(lambda: profiler.start(pid)) if profiler else None,
            stop_early=(lambda: not profiler.running()) if profiler else None,
        )
        rss = rss_mb(pid)[0]
        check = verify_calls(worker, rules, backlog) if result.complete else None
        if check is not None and not check["valid"]:
            log.warning(
                "%s: INVALID, the API shows %s of %d calls (see %s)",
                phase,
                check["calls_seen"],
                check["calls_expected"],
                worker.log_path,
            )
    finally:
        if profiler is not None:
            profiler.finish()
        worker.stop()
    log.info(
        "%s: %s events/s over %d events in %.1fs, worker CPU %.1fs (load %.1f)%s",
        phase,
        f"{result.events_per_s:.0f}" if result.events_per_s else "?",
        result.events,
        result.seconds,
        result.cpu_s,
        os.getloadavg()[0],
        f" ({result.note})" if result.note else "",
    )
    return {
        "events_per_s": result.events_per_s,
        "events_per_cpu_s": result.events_per_cpu_s,
        "events_measured": result.events,
        "seconds": round(result.seconds, 2),
        "worker_cpu_s": round(result.cpu_s, 2),
        "through_before_start": result.through_before_start,
        "stages_at_start": result.stages_at_start,
        "startup_s": round(startup, 2),
        "complete": result.complete,
        "end": result.end,
        "note": result.note,
        "loadavg_1m_at_end": os.getloadavg()[0],
        "exactly_once_in_force": state.get("exactly_once"),
        "rss_mb_at_end": round(rss, 1),
        "keyed": keyed,
        "guarantee": guarantee if bench.guarantee_supported else None,
        "check": check,
    }


async def _bare_consume(
    settings: Settings, partitions: list[int], n: int, timeout: float
) -> dict[str, Any]:
    topic = settings.topic("activity")
    consumer = new_client(AIOKafkaConsumer, settings, enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        tps = [AioTopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        seen, deadline = 0, time.monotonic() + timeout
        start = time.perf_counter()
        while seen < n:
            if time.monotonic() > deadline:
                raise BenchError(f"bare consumer read {seen} of {n} in {timeout}s")
            batch = await consumer.getmany(timeout_ms=1000, max_records=1_000)
            seen += sum(len(records) for records in batch.values())
        seconds = time.perf_counter() - start
    finally:
        await consumer.stop()
    return {"events_per_s": n / seconds, "seconds": round(seconds, 3)}


def bare_consumer(bench: Bench, rules: Rules, backlog: Backlog, timeout: float) -> dict[str, Any]:
    """A bare aiokafka consumer (assigned partitions, no group) over the keyed backlog."""
    settings = bench.settings("bare")
    produce(settings, backlog.items, True, rules)
    lookup = new_client(KafkaConsumer, settings)
    try:
        partitions = sorted(lookup.partitions_for_topic(settings.topic("activity")) or ())
    finally:
        lookup.close()
    result = asyncio.run(_bare_consume(settings, partitions, len(backlog.items), timeout))
    log.info("bare consumer: %.0f events/s", result["events_per_s"] or 0)
    return result


@dataclass
class Probes:
    sent: list[float] = field(default_factory=list)
    rep: list[float] = field(default_factory=list)
    team: list[float] = field(default_factory=list)
    poll_errors: int = 0


def _value(body: dict[str, Any], metric: str) -> int:
    figure = body.get("metrics", {}).get(metric) or {}
    value = figure.get("value")
    return int(Decimal(str(value))) if value is not None else 0


async def _steady(
    worker: Worker,
    producer: EventProducer,
    background: list[Item],
    probe: Callable[[int], dict[str, Any]],
    path: tuple[str, str],
    metric: str,
    period: str,
    rate: float,
    seconds: float,
    probe_rate: float,
    poll_interval: float,
    sample_timeout: float,
) -> tuple[Probes, int, float]:
    probes = Probes()
    done = asyncio.Event()

    async def traffic() -> tuple[int, float]:
        start = time.perf_counter()
        sent = 0
        next_probe = start
        while (now := time.perf_counter()) - start < seconds:
            due = int((now - start) * rate)
            while sent < due:
                if now >= next_probe:
                    rejected = producer.send_event(probe(len(probes.sent)))
                    if rejected is not None:
                        raise BenchError(f"probe rejected: {rejected.message}")
                    probes.sent.append(time.perf_counter())
                    next_probe += 1 / probe_rate
                else:
                    item = background[sent % len(background)]
                    producer.send_valid(item.raw, item.event)
                sent += 1
            await asyncio.sleep(0.005)
        done.set()
        return sent, time.perf_counter() - start

    async def poll() -> None:
        async with httpx.AsyncClient(base_url=worker.url, timeout=10) as client:
            while True:
                check_alive(worker)
                try:
                    rep, team = await asyncio.gather(
                        client.get(path[0], params={"period": period}),
                        client.get(path[1], params={"period": period}),
                    )
                    seen = time.perf_counter()
                    for answer, samples in ((rep, probes.rep), (team, probes.team)):
                        if answer.status_code != 200:
                            probes.poll_errors += 1
                            continue
                        visible = min(_value(answer.json(), metric), len(probes.sent))
                        samples.extend(seen - probes.sent[i] for i in range(len(samples), visible))
                except (httpx.HTTPError, ValueError):
                    probes.poll_errors += 1
                if done.is_set():
                    complete = len(probes.rep) == len(probes.team) == len(probes.sent)
                    last = probes.sent[-1] if probes.sent else 0.0
                    if complete or time.perf_counter() - last > sample_timeout:
                        return
                await asyncio.sleep(poll_interval)

    sent, elapsed = (await asyncio.gather(traffic(), poll()))[0]
    return probes, sent, elapsed


def _percentiles(samples: list[float], sent: list[float], stop: float) -> dict[str, Any]:
    """p50/p99 in ms; probes never seen count with their age at the stop (a lower bound)."""
    values = sorted(samples + [stop - t for t in sent[len(samples) :]])
    if not values:
        return {"p50_ms": None, "p99_ms": None, "samples": 0, "censored": 0}
    p99 = values[min(len(values) - 1, math.ceil(0.99 * len(values)) - 1)]
    return {
        "p50_ms": round(1000 * statistics.median(values), 1),
        "p99_ms": round(1000 * p99, 1),
        "max_ms": round(1000 * values[-1], 1),
        "samples": len(values),
        "censored": len(sent) - len(samples),
    }


def latency(
    bench: Bench,
    rules: Rules,
    backlog: Backlog,
    rate: float,
    seconds: float,
    probe_rate: float,
    poll_interval: float,
    sample_timeout: float,
) -> dict[str, Any]:
    """Produce → visible in the rep and team progress API at a steady ``rate``."""
    settings = bench.settings("latency")
    now = datetime.now(UTC)
    org = backlog.org
    region = next(t.team_id for t in org.teams if t.parent_id == "acme")
    probe_team, probe_rep = "team-probe", "rep-probe"
    org = Org(
        (*org.teams, TeamRow(probe_team, "Probe team", region)),
        (*org.reps, RosterRow(probe_rep, "Probe rep", probe_team, None)),
        {**org.money, probe_team: REGION_MONEY[0]},
        {**org.members, probe_team: (probe_rep,)},
    )
    publish_reference(settings, org, rules, now)
    metric = calls_metric(rules)
    at = now.isoformat(timespec="milliseconds")  # every event today: a known day label
    period = rules.calendar.current("day", now).label
    n = int(rate * seconds) + 100
    background = list(
        encode(generate_events(backlog.org, n, now, now - timedelta(seconds=1), seed=7), rules)
    )

    def probe(i: int) -> dict[str, Any]:
        return {
            "specversion": "1.0",
            "id": f"probe-{i}",
            "source": "dialer.bench",
            "type": "call.completed",
            "time": at,
            "data": {"rep_id": probe_rep},
        }

    worker = bench.worker(settings)
    bench.start(worker)
    log.info(
        "latency: %.0f events/s for %.0fs, %.0f probes/s, period %s",
        rate,
        seconds,
        probe_rate,
        period,
    )
    try:
        producer = EventProducer(settings, rules.decoder)
        try:
            probes, sent, elapsed = asyncio.run(
                _steady(
                    worker,
                    producer,
                    background,
                    probe,
                    (f"/api/v1/reps/{probe_rep}/progress", f"/api/v1/teams/{probe_team}/progress"),
                    metric,
                    period,
                    rate,
                    seconds,
                    probe_rate,
                    poll_interval,
                    sample_timeout,
                )
            )
            stop = time.perf_counter()
            producer.flush(timeout=30)
        finally:
            producer.close()
        rss = rss_mb(worker.process.pid)[0] if worker.process else None
    finally:
        worker.stop()
    rep = _percentiles(probes.rep, probes.sent, stop)
    team = _percentiles(probes.team, probes.sent, stop)
    log.info(
        "latency: rep p50 %s p99 %s ms, team p50 %s p99 %s ms (censored %d/%d)",
        rep["p50_ms"],
        rep["p99_ms"],
        team["p50_ms"],
        team["p99_ms"],
        rep["censored"],
        team["censored"],
    )
    return {
        "rep": rep,
        "team": team,
        "produced": sent,
        "achieved_rate": round(sent / elapsed, 1),
        "probes": len(probes.sent),
        "poll_errors": probes.poll_errors,
        "period": period,
        "rss_mb_at_end": round(rss, 1) if rss else None,
    }


def rss_reps(
    bench: Bench, rules: Rules, reps: int, timeout: float, settle: float
) -> dict[str, Any]:
    """Worker RSS once the roster and quotas of ``reps`` reps are loaded and it is healthy,
    and it idled (or ``settle`` s passed)."""
    settings = bench.settings("rss")
    org = build_org(reps, team_size=10, teams_per_region=25)
    t0 = time.monotonic()
    records = publish_reference(settings, org, rules, datetime.now(UTC))
    log.info(
        "rss: %d reps, %d reference records published in %.0fs",
        reps,
        records,
        time.monotonic() - t0,
    )
    worker = bench.worker(settings)
    startup = bench.start(worker, timeout=timeout)
    try:
        deadline = time.monotonic() + timeout
        body = health(worker, timeout)
        while isinstance(body.get("reps"), int) and body["reps"] < reps:
            if time.monotonic() > deadline:
                raise BenchError(f"rss: healthy but {body['reps']} of {reps} reps after {timeout}s")
            time.sleep(0.5)
            body = health(worker, timeout)
        assert worker.process is not None
        pid = worker.process.pid
        at_healthy = rss_mb(pid)[0]
        # Start-up work can go on after health (books, gauges): give it ``settle`` s to idle.
        idle = wait_idle(pid, settle)
        rss, peak = rss_mb(pid)
    finally:
        worker.stop()
    log.info(
        "rss: %.0f MiB (%.0f when healthy, peak %.0f) with %d reps%s",
        rss,
        at_healthy,
        peak,
        reps,
        "" if idle else " (still busy)",
    )
    return {
        "rss_mb": round(rss, 1),
        "rss_mb_when_healthy": round(at_healthy, 1),
        "peak_rss_mb": round(peak, 1),
        "idle": idle,
        "reps": reps,
        "reference_records": records,
        "startup_s": round(startup, 1),
        "reps_reported": body.get("reps"),
    }


def million(bench: Bench, rules: Rules, events: int, reps: int, timeout: float) -> dict[str, Any]:
    """``events`` events processed, then the worker's state sizes (or its RSS)."""
    settings = bench.settings("million")
    now = datetime.now(UTC)
    org = build_org(reps, team_size=12, teams_per_region=5)
    publish_reference(settings, org, rules, now)
    since = rules.calendar.current("quarter", now).start
    log.info("million: producing %d events", events)
    produce(settings, encode(generate_events(org, events, now, since, seed=3), rules), True, rules)
    worker = bench.worker(settings)
    bench.start(worker)
    try:
        result = sustain(settings, worker, events, timeout, transactional=False)
        if not result.complete:
            raise BenchError(f"million: not caught up in {timeout}s ({result.note})")
        body = health(worker)
        assert worker.process is not None
        rss = rss_mb(worker.process.pid)[0]
    finally:
        worker.stop()
    out: dict[str, Any] = {
        "events": events,
        "events_per_s": result.events_per_s,
        "rss_mb": round(rss, 1),
    }
    state = body.get("state")
    if isinstance(state, dict) and "bytes" in state:
        out["state_mb"] = round(state["bytes"] / 2**20, 2)
        out["parts"] = state.get("parts")
    else:
        out["state_mb"] = out["rss_mb"]
        out["note"] = "GET /healthz has no 'state' with 'bytes': the figure is the worker's RSS"
        if isinstance(state, dict):
            out["state"] = state  # what it reports instead (entries, say)
    log.info("million: state %.1f MiB", out["state_mb"])
    return out


# --- run ----------------------------------------------------------------------------------


def check_broker(settings: Settings, timeout: float = 10) -> None:
    try:
        check_accepted(settings, timeout)
        admin = new_client(KafkaAdminClient, settings, request_timeout_ms=int(timeout * 1000))
        admin.close()
    except KafkaError as exc:
        raise BenchError(
            f"no Kafka broker at {settings.kafka_bootstrap} ({exc}); start it: make stack-up"
        ) from exc


def cleanup(settings: Settings, run_id: str) -> None:
    """Delete the run's topics and consumer groups."""
    admin = new_client(KafkaAdminClient, settings)
    try:
        topics = [t for t in admin.list_topics() if t.startswith(run_id)]
        if topics:
            admin.delete_topics(topics)
        groups = [g.get("group_id", "") for g in admin.list_groups()]
        mine = [g for g in groups if g.startswith(run_id)]
        if mine:
            admin.delete_groups(mine)
        log.info("cleanup: deleted %d topics and %d groups of %s", len(topics), len(mine), run_id)
    finally:
        admin.close()


def git_state() -> dict[str, Any]:
    def run(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()

    return {
        "commit": run("rev-parse", "--short", "HEAD"),
        "dirty_paths": len(run("status", "--porcelain", "--", "streams").splitlines()),
    }


def reported_settings(bench: Bench) -> dict[str, Any]:
    dump = bench.base.model_copy(update=bench.overrides).model_dump(mode="json")
    return {k: v for k, v in dump.items() if k not in PER_RUN_FIELDS}


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or name not in Settings.model_fields:
            raise SystemExit(f"--set {pair!r}: expected NAME=VALUE with a Settings field name")
        out[name] = value
    # Validate through the model (types, ranges) before any worker sees them.
    checked = Settings.model_validate({**Settings().model_dump(), **out})
    return {name: getattr(checked, name) for name in out}


PHASES = ("alo", "eos", "unkeyed", "bare", "latency", "rss")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--events", type=int, default=20_000, help="pre-filled events per throughput run")
    add("--reps", type=int, default=240, help="reps of the throughput/latency organisation")
    add("--timeout", type=float, default=300.0, help="bound of each throughput run (s)")
    add("--start-timeout", type=float, default=120.0, help="bound of a worker's start (s)")
    add("--rate", type=float, default=500.0, help="latency: steady events per second")
    add("--duration", type=float, default=20.0, help="latency: seconds of steady traffic")
    add("--probe-rate", type=float, default=10.0, help="latency: probes per second")
    add("--poll-interval", type=float, default=0.05, help="latency: API poll interval (s)")
    add("--sample-timeout", type=float, default=60.0, help="latency: wait per probe (s)")
    add("--rss-reps", type=int, default=10_000, help="reps of the RSS measurement")
    add("--rss-timeout", type=float, default=300.0, help="bound of the RSS measurement (s)")
    add("--rss-settle", type=float, default=30.0, help="RSS: wait this long for idle (s)")
    add("--million", action="store_true", help="also process --million-events events (long)")
    add("--million-events", type=int, default=1_000_000)
    add("--million-timeout", type=float, default=7200.0)
    add("--profile", type=Path, help="py-spy raw stacks of an extra at-least-once run")
    add("--profile-seconds", type=float, default=20.0, help="py-spy duration (s)")
    add("--profile-rate", type=int, default=100, help="py-spy samples per second")
    add("--skip", default="", help=f"comma-separated phases to skip: {','.join(PHASES)}")
    add("--set", action="append", default=[], metavar="NAME=VALUE", help="worker setting")
    add("--log-dir", type=Path, help="keep worker logs here (default: a temporary directory)")
    add("--output", type=Path, help="also write the JSON result to this file")
    add("--keep-topics", action="store_true", help="do not delete the run's topics")
    args = parser.parse_args()
    skip = {s for s in args.skip.split(",") if s}
    if unknown := skip - set(PHASES):
        parser.error(f"--skip: unknown phases {sorted(unknown)}")
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("kafka").setLevel(logging.ERROR)
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    logging.getLogger("httpx").setLevel(logging.WARNING)

    began = time.monotonic()
    load_at_start = os.getloadavg()
    base = Settings()
    check_broker(base)
    rules = Rules.from_settings(base)
    run_id = f"bench{uuid.uuid4().hex[:6]}"
    result: dict[str, Any] = {
        "bench": "pipeline",
        "run_id": run_id,
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    with tempfile.TemporaryDirectory(prefix="spm-bench-") as tmp_name:
        tmp = Path(tmp_name)
        log_dir = args.log_dir or tmp / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        bench = Bench(base, run_id, tmp, log_dir, parse_overrides(args.set), args.start_timeout)
        log.info("run %s: worker logs in %s", run_id, log_dir)
        backlog = make_backlog(rules, args.events, args.reps, seed=1)
        deal_events = sum(v for k, v in backlog.mix.items() if k.startswith("deal."))
        runs: dict[str, Any] = {}
        try:
            if "alo" not in skip:
                runs["alo"] = throughput(bench, rules, backlog, "alo", ALO, True, args.timeout)
            if "eos" not in skip and bench.guarantee_supported:
                runs["eos"] = throughput(bench, rules, backlog, "eos", EOS, True, args.timeout)
            if "unkeyed" not in skip:
                runs["unkeyed"] = throughput(
                    bench, rules, backlog, "unkeyed", ALO, False, args.timeout
                )
            if "bare" not in skip:
                runs["bare"] = bare_consumer(bench, rules, backlog, args.timeout)
            if "latency" not in skip:
                runs["latency"] = latency(
                    bench,
                    rules,
                    backlog,
                    args.rate,
                    args.duration,
                    args.probe_rate,
                    args.poll_interval,
                    args.sample_timeout,
                )
            if "rss" not in skip:
                runs["rss"] = rss_reps(
                    bench, rules, args.rss_reps, args.rss_timeout, args.rss_settle
                )
            if args.million:
                runs["million"] = million(
                    bench, rules, args.million_events, args.reps, args.million_timeout
                )
            if args.profile:
                profiler = Profiler(args.profile, args.profile_seconds, args.profile_rate)
                runs["profile"] = throughput(
                    bench, rules, backlog, "profile", ALO, True, args.timeout, profiler
                )
                summary = summarize_profile(args.profile)
                text_path = args.profile.with_suffix(".top.txt")
                text_path.write_text(profile_text(summary))
                log.info("profile:\n%s", profile_text(summary))
                runs["profile"].update(
                    {
                        "raw": str(args.profile),
                        "summary": str(text_path),
                        "top_own": summary["top_own"],
                    }
                )
        finally:
            if not args.keep_topics:
                cleanup(base, run_id)

    invalid = [name for name, run in runs.items() if (run.get("check") or {}).get("valid") is False]

    def rate(name: str, key: str = "events_per_s") -> float | None:
        value = runs.get(name, {}).get(key)
        return round(value, 1) if value is not None and name not in invalid else None

    eos = "eos" if bench.guarantee_supported else "alo"

    latency_run = runs.get("latency", {})
    million_run = runs.get("million", {})
    result.update(
        {
            "alo_events_per_s": rate("alo"),
            "eos_events_per_s": rate(eos),
            "unkeyed_events_per_s": rate("unkeyed"),
            "bare_consumer_events_per_s": rate("bare"),
            # Per second of worker CPU: comparable across runs on a busy machine.
            "alo_events_per_cpu_s": rate("alo", "events_per_cpu_s"),
            "eos_events_per_cpu_s": rate(eos, "events_per_cpu_s"),
            "unkeyed_events_per_cpu_s": rate("unkeyed", "events_per_cpu_s"),
            "p50_ms_rep": latency_run.get("rep", {}).get("p50_ms"),
            "p99_ms_rep": latency_run.get("rep", {}).get("p99_ms"),
            "p50_ms_team": latency_run.get("team", {}).get("p50_ms"),
            "p99_ms_team": latency_run.get("team", {}).get("p99_ms"),
            "rss_mb_10k_reps": runs.get("rss", {}).get("rss_mb"),
            "state_mb_after_1m_events": million_run.get("state_mb"),
            "state_parts": million_run.get("parts", million_run.get("state")),
            "events": args.events,
            "reps": args.reps,
            "deal_share": round(deal_events / max(1, len(backlog.items)), 4),
            "mix": backlog.mix,
            "duration_s": round(time.monotonic() - began, 1),
            "settings": {
                **reported_settings(bench),
                "processing_guarantee": "per run (see runs.*.guarantee)"
                if bench.guarantee_supported
                else "not a setting",
            },
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "loadavg_at_start": load_at_start,
                "loadavg_at_end": os.getloadavg(),
            },
            "git": git_state(),
            "runs": runs,
        }
    )
    if not bench.guarantee_supported:
        result["eos_note"] = "exactly-once dropped; figure is the default at-least-once"
    censored = {k: v["censored"] for k, v in latency_run.items() if k in ("rep", "team")}
    if any(censored.values()):
        result["latency_censored"] = censored  # probes never seen: their p99 is a lower bound
    if invalid:
        result["invalid"] = invalid  # the API did not show every event: no figure
    incomplete = [name for name, run in runs.items() if run.get("complete") is False]
    if incomplete:
        result["incomplete"] = incomplete
    line = json.dumps(result, separators=(",", ":"), default=str)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(line, flush=True)


if __name__ == "__main__":
    try:
        main()
    except BenchError as exc:
        log.error("pipeline bench failed: %s", exc)
        sys.exit(1)
