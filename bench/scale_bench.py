"""Scale-out benchmark on the local stack: one worker against two, and a worker lost under load.

Figures to report, not a timed test. Every phase runs real workers (the integration harness's
``Worker``: the README's ``faust -A streams.worker worker``) of one app id / topic prefix of its
own, against the broker of ``make stack-up``. In a pool the first worker runs the history sink
on its own chDB path (as shipped); the others have ``history_sink=false``; each has its own web
port, data dir, chDB path and log. ``--set NAME=VALUE`` applies a setting to every worker
(``--set history_sink=false``: no sink anywhere, the pipeline's own scaling).

* **throughput** (``one``, ``two``; ``--rounds`` times, one then two back to back): the pool is
  started and settled (every worker healthy, each partition held exactly once) and idles; then
  it is frozen (SIGSTOP) while ``--events`` events (``pipeline_bench``'s organisation and mix,
  keyed the way ``EventProducer`` keys them) are produced, and thawed (SIGCONT). The clock runs
  from the thaw until the group has committed past every record of every pipeline topic (sampled
  every 0.25 s; offsets are committed every ``commit_interval``, so the end is up to ~1.25 s
  late — for one worker as for two). So both measure steady processing of the same backlog: no
  start-up, no rebalance, no producer competing for the two cores. The freeze lasts a few
  seconds, well inside the session timeout; a rebalance during the measurement would be listed
  in ``rebalances`` and the run not counted (``clean``). The freeze does make Faust log "Thread
  keepalive is not responding" and late timers once, at the thaw. ``events_per_cpu_s`` divides
  by the pool's CPU time (user + system of every worker) over the same interval: comparable on a
  busy machine; ``events_per_cpu_s_until_idle`` also counts the work left after the catch-up
  (the sink, the last publishes) until every worker idles. ``ratio`` is two workers' events/s
  over one's per round: ~1.5 is the practical ceiling on two cores, which the broker and the
  bench share. The machine may be shared: each run records the cores used meanwhile by
  everything but its workers and the bench (``machine.other_cores``: the broker and any other
  program) and stolen by the hypervisor; a run is ``quiet`` when those add up to at most
  ``--quiet`` cores. The summary gives medians over the rounds whose two runs are both quiet,
  else over all rounds (``summary_over``). Each run is checked (``pipeline_bench.verify_calls``
  against every worker): the company's calls this quarter must equal the backlog's, otherwise
  the run is listed under ``invalid`` and gives no figure. A failover phase that fails (a worker
  crashed, say) keeps what it measured and says why in ``failover_error``.
* **kill**: two workers under steady traffic (``--rate`` events/s of the same mix plus
  ``--probe-rate`` calls/s of one probe rep per partition, all timed today); after ``--warmup`` s
  the second worker (no sink) is SIGKILLed. From the kill: ``healthy_all_s``, until the
  survivor's ``/healthz`` is 200 listing every partition (all restored); ``offsets_advance_s``,
  until the group's committed offset of ``activity`` moved past its value at the kill on every
  partition the dead worker held; ``figures_move_s``, until the survivor, owning the partition
  itself, answers its probe rep with more calls than the dead worker showed just before the
  kill. The survivor's log splits it: ``detect_s`` (kill → its first line saying the group is
  rebalancing: the session-timeout part, ``session_timeout_s``), ``rebalance_s`` (→ partitions
  assigned), ``restore_s`` (→ its last "partition restored" line) and each restore's own
  ``seconds=`` (``restore_seconds_logged``, ``restored_partitions``).
* **graceful**: a replacement joins (no sink), the pair settles, and after ``--warmup`` s it gets
  SIGTERM (it leaves the group: no session timeout to wait for). Measured as ``kill``, plus
  ``exit_s`` (SIGTERM → process gone); as the stopping worker still commits and counts until it
  has left the group, the offset and figure references are those seen when the survivor first
  reports owning the partition. Skipped when less than ``--graceful-min`` s of traffic would be
  left. Then the traffic stops, the group catches up and the company's calls this quarter
  must equal the calls sent (``check``; exact despite the kill: events are deduplicated).

``--duration`` (``make bench`` passes it) bounds the failover phase's traffic; a figure still
waiting for traffic when it stops is ``null``, with a note. Every wait has a bound; the run's
workers are stopped and its topics and consumer groups deleted at the end. Error lines of the
worker logs are summarised in ``log_errors``. Progress goes to stderr; the last stdout line is
one JSON object (``--output`` also writes it). Run from the repository root::

    make stack-up
    PYTHONPATH=. .venv/bin/python bench/scale_bench.py --rounds 2 --output var/scale.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bench.pipeline_bench import (
    REGION_MONEY,
    Backlog,
    Bench,
    BenchError,
    GroupWatch,
    Org,
    Snapshot,
    _value,
    calls_metric,
    check_alive,
    check_broker,
    cleanup,
    cpu_seconds,
    encode,
    generate_events,
    git_state,
    health,
    make_backlog,
    parse_overrides,
    produce,
    publish_reference,
    reported_settings,
    rss_mb,
    verify_calls,
    wait_idle,
)
from streams.engine.imports import RosterRow, TeamRow
from streams.pipeline.kafka import partition_for
from streams.producer import EventProducer
from streams.rules import Rules
from streams.settings import Settings
from tests.integration.harness import Worker, wait_caught_up, wait_settled, worker_settings

log = logging.getLogger("scale_bench")

PHASES = ("one", "two", "kill", "graceful")


# --- pools of workers -------------------------------------------------------------------------


def member(bench: Bench, first: Settings, index: int) -> Worker:
    """Worker ``index`` (1-based) of ``first``'s app: the first one is ``first``; the others
    have their own port, data dir and chDB path, and no history sink."""
    log_path = bench.log_dir / f"{first.app_id}-w{index}.log"
    if index == 1:
        return Worker(first, log_path)
    values = {**bench.overrides, "history_sink": False}
    tmp = bench.tmp / first.topic_prefix / f"w{index}"
    tmp.mkdir(parents=True)
    return Worker(worker_settings(bench.base, first.topic_prefix, tmp, **values), log_path)


def settle(workers: list[Worker], partitions: int, timeout: float) -> float:
    """Spawn the workers that are not running and wait until they share every partition."""
    for worker in workers:
        if worker.process is None or worker.process.poll() is not None:
            worker.spawn()
    try:
        return wait_settled(workers, partitions, timeout)
    except AssertionError as exc:
        tails = "\n".join(f"--- {w.log_path.name}\n{w.log_tail(30)}" for w in workers)
        raise BenchError(f"workers did not settle: {exc}\n{tails}") from exc


def held(worker: Worker) -> list[int]:
    partitions: list[int] = health(worker)["partitions"]
    return partitions


def signal_worker(worker: Worker, sig: signal.Signals) -> None:
    """Send ``sig`` to the worker's process group (the harness starts each in its own)."""
    if worker.process is not None and worker.process.poll() is None:
        os.killpg(worker.process.pid, sig)


def stop_all(workers: list[Worker]) -> None:
    """SIGTERM to all at once (one by one, each would rebalance onto the next), then wait."""
    for worker in workers:
        signal_worker(worker, signal.SIGCONT)  # a frozen worker would not see its SIGTERM
        signal_worker(worker, signal.SIGTERM)
    for worker in workers:
        if worker.process is None:
            continue
        try:
            worker.process.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()


@dataclass(frozen=True)
class MachineCpu:
    """Machine-wide CPU seconds so far (``/proc/stat``) and this process's own."""

    busy: float  # user, nice, system, irq, softirq (guests are inside user)
    steal: float  # taken by the hypervisor from this VM
    own: float
    at: float

    @classmethod
    def now(cls) -> MachineCpu:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        tick = os.sysconf("SC_CLK_TCK")
        user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
        busy = (user + nice + system + irq + softirq) / tick
        return cls(busy, steal / tick, time.process_time(), time.monotonic())

    def others(self, later: MachineCpu, workers_cpu_s: float) -> dict[str, float]:
        """Cores in use over the interval: in all, by everything but the workers and this
        process (the broker, other programs), and stolen by the hypervisor."""
        span = max(1e-6, later.at - self.at)
        busy = later.busy - self.busy
        others = busy - workers_cpu_s - (later.own - self.own)
        return {
            "busy_cores": round(busy / span, 2),
            "other_cores": round(max(0.0, others) / span, 2),
            "steal_cores": round((later.steal - self.steal) / span, 2),
        }


class PoolWatch(GroupWatch):
    """``GroupWatch`` of a group whose CPU time is that of every (live) worker in ``pids``."""

    def __init__(self, settings: Settings, pids: list[int]) -> None:
        super().__init__(settings, pids[0])
        self.pids = pids

    def cpu(self) -> dict[int, float]:
        out: dict[int, float] = {}
        for pid in self.pids:
            try:
                out[pid] = cpu_seconds(pid)
            except (FileNotFoundError, ProcessLookupError):
                continue
        return out

    def snapshot(self) -> Snapshot:
        committed = self.admin.list_group_offsets(self.group).get(self.group, {})
        ends = self.consumer.end_offsets(self.tps)
        offsets = {tp: m.offset for tp, m in committed.items() if m.offset >= 0}
        return Snapshot(time.monotonic(), offsets, ends, sum(self.cpu().values()))


# --- worker logs ------------------------------------------------------------------------------

#: A log record's first line: ``[2026-11-30 12:33:50,418] [6667] [WARNING] text``.
RECORD = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\] \[(\d+)\] \[(\w+)\] ?(.*)$")
RESTORED_SECONDS = re.compile(r"partition restored\b.*?\bseconds=([\d.]+)")
RESTORED_PARTITION = re.compile(r"partition restored\b.*?\bpartition=(\d+)\b")


@dataclass(frozen=True)
class LogRecord:
    at: float  # wall clock (epoch seconds; the worker logs local time to the millisecond)
    level: str
    text: str  # continuation lines (tables, tracebacks) joined with newlines


def log_records(path: Path) -> list[LogRecord]:
    records: list[LogRecord] = []
    if not path.exists():
        return records
    for line in path.read_text(errors="replace").splitlines():
        match = RECORD.match(line)
        if match:
            stamp = datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            records.append(LogRecord(stamp, match[3], match[4]))
        elif records:
            last = records[-1]
            records[-1] = LogRecord(last.at, last.level, f"{last.text}\n{line}")
    return records


def of_group(text: str, group: str) -> bool:
    """Whether a client log line is about consumer group ``group`` (not ``group``-sink)."""
    return re.search(rf"group '?{re.escape(group)}'?(?![\w.-])", text) is not None


def rebalance_timeline(path: Path, group: str, since: float) -> dict[str, Any]:
    """From a worker's log, after wall time ``since``: when the group's rebalance began (its
    first rebalancing/revoking/re-joining line), when partitions were assigned, and every
    "partition restored" line (partition, its own seconds, when)."""
    began: float | None = None
    assigned: float | None = None
    restored: list[dict[str, Any]] = []
    first_line = ""
    for record in log_records(path):
        if record.at < since:
            continue
        text = record.text
        rebalancing = any(
            marker in text
            for marker in ("rebalanc", "Revoking previously assigned", "(Re-)joining group")
        )
        if began is None and rebalancing and of_group(text, group):
            began, first_line = record.at, text.splitlines()[0][:200]
        if (
            assigned is None
            and began is not None
            and "Setting newly assigned partitions" in text
            and of_group(text, group)
        ):
            assigned = record.at
        if assigned is not None and "partition restored" in text:
            p = RESTORED_PARTITION.search(text)
            s = RESTORED_SECONDS.search(text)
            restored.append(
                {
                    "partition": int(p[1]) if p else None,
                    "seconds": float(s[1]) if s else None,
                    "after_kill_s": round(record.at - since, 3),
                }
            )
    return {
        "rebalance_began_after_s": None if began is None else round(began - since, 3),
        "first_rebalance_line": first_line or None,
        "assigned_after_s": None if assigned is None else round(assigned - since, 3),
        "restored": restored,
    }


def log_errors(log_dir: Path, keep: int = 6) -> dict[str, Any]:
    """Error records (level ERROR/CRITICAL, a structlog ``[error``, a traceback) per worker
    log in ``log_dir``: their number and the first lines of the distinct ones."""
    out: dict[str, Any] = {}
    for path in sorted(log_dir.glob("*.log")):
        records = log_records(path)
        bad = [
            r
            for r in records
            if r.level in ("ERROR", "CRITICAL")
            or "[error" in r.text
            or "[critical" in r.text
            or "Traceback" in r.text
        ]
        if bad:
            excerpts: list[str] = []
            for r in bad:
                first = r.text.splitlines()[0][:300]
                if first not in excerpts:
                    excerpts.append(first)
            out[path.name] = {"count": len(bad), "distinct": excerpts[:keep]}
    return out


# --- throughput -------------------------------------------------------------------------------


def throughput(
    bench: Bench,
    rules: Rules,
    backlog: Backlog,
    phase: str,
    n: int,
    timeout: float,
    quiet_cores: float,
) -> dict[str, Any]:
    """``n`` settled workers, frozen while the backlog is produced, timed from the thaw until
    the group has committed past every record of every pipeline topic."""
    settings = bench.settings(phase)
    publish_reference(settings, backlog.org, rules, datetime.now(UTC))
    workers = [member(bench, settings, i) for i in range(1, n + 1)]
    input_topic = settings.topic("activity")
    try:
        settle_s = settle(workers, settings.partitions, bench.start_timeout)
        pids = [w.process.pid for w in workers if w.process is not None]
        idle = all(wait_idle(pid, 20.0) for pid in pids)  # start-up work done
        held_at_start = {w.log_path.name: held(w) for w in workers}
        watch = PoolWatch(settings, pids)
        try:
            for worker in workers:
                signal_worker(worker, signal.SIGSTOP)
            try:
                t0 = time.monotonic()
                produce(settings, backlog.items, True, rules)
                release_s = time.monotonic() - t0
                before = watch.snapshot()
                cpu_before = watch.cpu()
                machine_before = MachineCpu.now()
                thaw_wall = time.time()
            finally:
                for worker in workers:
                    signal_worker(worker, signal.SIGCONT)
            start = time.monotonic()
            log.info(
                "%s: %d workers settled in %.1fs holding %s; %d events released (produced in "
                "%.1fs while frozen)",
                phase,
                n,
                settle_s,
                held_at_start,
                before.end(input_topic),
                release_s,
            )
            deadline = start + timeout
            pending: Snapshot | None = None
            first_commit: float | None = None
            complete = True
            while True:
                for worker in workers:
                    check_alive(worker)
                snap = watch.snapshot()
                if first_commit is None and snap.consumed(input_topic) > 0:
                    first_commit = snap.at
                if snap.caught_up():
                    if pending is not None and pending.ends == snap.ends:
                        break
                    pending = snap
                else:
                    pending = None
                if snap.at > deadline:
                    complete, pending = False, snap
                    break
                time.sleep(0.25)
            end = pending
            assert end is not None
            cpu_after = watch.cpu()
            machine = machine_before.others(
                MachineCpu.now(), sum(cpu_after.values()) - sum(cpu_before.values())
            )
            # What the backlog still costs after the group caught up (the history sink, the
            # publisher's last flushes): CPU until every worker idles.
            idle_after = all(wait_idle(pid, 30.0) for pid in pids)
            cpu_idle = watch.cpu()
        finally:
            watch.close()
        seconds = end.at - start
        cpu_s = end.cpu_s - before.cpu_s
        cpu_until_idle = sum(cpu_idle.values()) - sum(cpu_before.values())
        done = len(backlog.items) if complete else round(end.consumed(input_topic))
        checks = (
            {w.log_path.name: verify_calls(w, rules, backlog) for w in workers} if complete else {}
        )
        held_at_end = {w.log_path.name: held(w) for w in workers}
        rebalances = [
            r.at - thaw_wall
            for w in workers
            for r in log_records(w.log_path)
            if r.at >= thaw_wall
            and "Setting newly assigned partitions" in r.text
            and of_group(r.text, settings.app_id)
        ]
        rss = {w.log_path.name: round(rss_mb(p)[0], 1) for w, p in zip(workers, pids, strict=True)}
    finally:
        stop_all(workers)
    valid = bool(checks) and all(c["valid"] for c in checks.values())
    if checks and not valid:
        log.warning("%s: INVALID, %s (logs in %s)", phase, checks, bench.log_dir)
    notes: list[str] = []
    if not complete:
        notes.append(f"not caught up in {timeout:.0f}s: the input consumed so far")
    if release_s > settings.session_timeout / 2:
        notes.append(f"the freeze ({release_s:.1f}s) came near the session timeout")
    if rebalances:
        notes.append("the group rebalanced during the measurement")
    if not idle:
        notes.append("a worker was still busy when the backlog was released")
    result = {
        "workers": n,
        "events_per_s": done / seconds if seconds > 0 else None,
        "events_per_cpu_s": done / cpu_s if cpu_s > 0 else None,
        "events": done,
        "seconds": round(seconds, 2),
        "cpu_s": round(cpu_s, 2),
        "cpu_s_per_worker": {
            w.log_path.name: round(cpu_after.get(p, 0.0) - cpu_before.get(p, 0.0), 2)
            for w, p in zip(workers, pids, strict=True)
        },
        "cpu_s_until_idle": round(cpu_until_idle, 2),
        "cpu_s_until_idle_per_worker": {
            w.log_path.name: round(cpu_idle.get(p, 0.0) - cpu_before.get(p, 0.0), 2)
            for w, p in zip(workers, pids, strict=True)
        },
        "events_per_cpu_s_until_idle": done / cpu_until_idle if cpu_until_idle > 0 else None,
        "idle_after": idle_after,
        "first_commit_s": None if first_commit is None else round(first_commit - start, 2),
        "release_s": round(release_s, 2),
        # The machine while measuring: is it a quiet run (little CPU used by anything else)?
        "machine": machine,
        "quiet": machine["other_cores"] + machine["steal_cores"] <= quiet_cores,
        "settle_s": round(settle_s, 2),
        "partitions_at_start": held_at_start,
        "partitions_at_end": held_at_end,
        "rebalances": [round(r, 2) for r in rebalances],
        "complete": complete,
        "loadavg_1m_at_end": os.getloadavg()[0],
        "rss_mb_at_end": rss,
        "check": checks or None,
        "valid": valid if checks else None,
        # A figure of steady processing: caught up, verified, no rebalance on the way.
        "clean": complete and valid and not rebalances,
        "notes": notes,
    }
    log.info(
        "%s: %.0f events/s, %.0f events per CPU-s (%d events in %.1fs, CPU %s; other programs "
        "%.2f cores, stolen %.2f; load %.1f)%s",
        phase,
        result["events_per_s"] or 0,
        result["events_per_cpu_s"] or 0,
        done,
        seconds,
        result["cpu_s_per_worker"],
        machine["other_cores"],
        machine["steal_cores"],
        os.getloadavg()[0],
        f" — {'; '.join(notes)}" if notes else "",
    )
    return result


# --- traffic, kill and graceful stop ----------------------------------------------------------


def probe_reps(partitions: int) -> dict[int, str]:
    """One rep id per partition (its activities and its rep scope both live there)."""
    found: dict[int, str] = {}
    k = 0
    while len(found) < partitions:
        rep = f"rep-probe-{k}"
        found.setdefault(partition_for(rep, partitions), rep)
        k += 1
    return found


def with_probes(org: Org, probes: dict[int, str]) -> Org:
    region = next(t.team_id for t in org.teams if t.parent_id == "acme")
    team = "team-probe"
    reps = tuple(RosterRow(rep, f"Probe {p}", team, None) for p, rep in sorted(probes.items()))
    return Org(
        (*org.teams, TeamRow(team, "Probe team", region)),
        (*org.reps, *reps),
        {**org.money, team: REGION_MONEY[0]},
        {**org.members, team: tuple(r.rep_id for r in reps)},
    )


class Traffic(threading.Thread):
    """Steady events (the backlog's mix, timed today, keyed by the project's producer) at
    ``rate``/s and one call per probe rep at ``probe_rate``/s each, for at most ``seconds``."""

    def __init__(
        self,
        settings: Settings,
        rules: Rules,
        org: Org,
        probes: dict[int, str],
        rate: float,
        probe_rate: float,
        seconds: float,
    ) -> None:
        super().__init__(name="traffic", daemon=True)
        self.settings = settings
        self.rules = rules
        self.org = org
        self.probes = probes
        self.rate = rate
        self.probe_rate = probe_rate
        self.seconds = seconds
        self.halt = threading.Event()
        self.sent = 0
        self.calls = 0
        self.probe_rounds = 0
        self.started_at: float | None = None
        self.ended_at: float | None = None
        self.error: BaseException | None = None

    def remaining(self) -> float:
        if self.started_at is None:
            return self.seconds
        return max(0.0, self.seconds - (time.monotonic() - self.started_at))

    def flowing(self) -> bool:
        return self.is_alive() and not self.halt.is_set() and self.ended_at is None

    def run(self) -> None:
        try:
            now = datetime.now(UTC)
            at = now.isoformat(timespec="milliseconds")
            n = int(self.rate * self.seconds) + 1000
            since = now - timedelta(seconds=1)
            items = encode(generate_events(self.org, n, now, since, seed=11), self.rules)
            with EventProducer(self.settings, self.rules.decoder) as producer:
                start = self.started_at = time.monotonic()
                while not self.halt.is_set():
                    elapsed = time.monotonic() - start
                    if elapsed >= self.seconds:
                        break
                    while self.sent < min(n, int(elapsed * self.rate)):
                        item = next(items)
                        producer.send_valid(item.raw, item.event)
                        self.sent += 1
                        self.calls += item.event.type == "call.completed"
                    while self.probe_rounds < int(elapsed * self.probe_rate):
                        for p, rep in sorted(self.probes.items()):
                            rejected = producer.send_event(
                                {
                                    "specversion": "1.0",
                                    "id": f"probe-{p}-{self.probe_rounds}",
                                    "source": "dialer.bench",
                                    "type": "call.completed",
                                    "time": at,
                                    "data": {"rep_id": rep},
                                }
                            )
                            if rejected is not None:
                                raise BenchError(f"probe rejected: {rejected.message}")
                            self.calls += 1
                        self.probe_rounds += 1
                    time.sleep(0.01)
                self.ended_at = time.monotonic()
        except BaseException as exc:  # reported by the main thread
            self.error = exc
            self.ended_at = time.monotonic()

    def check(self) -> None:
        if self.error is not None:
            raise BenchError(f"traffic failed: {self.error!r}") from self.error


def probe_value(worker: Worker, rep: str, period: str, metric: str) -> int | None:
    """The rep's calls in ``period`` as ``worker`` answers (forwarding if need be); None
    unless 200."""
    try:
        answer = httpx.get(
            f"{worker.url}/api/v1/reps/{rep}/progress", params={"period": period}, timeout=5
        )
    except httpx.HTTPError:
        return None
    if answer.status_code != 200:
        return None
    try:
        return _value(answer.json(), metric)
    except ValueError:
        return None


def activity_committed(watch: PoolWatch, topic: str) -> dict[int, int]:
    committed = watch.admin.list_group_offsets(watch.group).get(watch.group, {})
    return {tp.partition: m.offset for tp, m in committed.items() if tp.topic == topic}


def takeover(
    settings: Settings,
    rules: Rules,
    victim: Worker,
    survivor: Worker,
    traffic: Traffic,
    probes: dict[int, str],
    graceful: bool,
    timeout: float,
) -> dict[str, Any]:
    """Stop ``victim`` (SIGTERM if ``graceful``, else SIGKILL) under traffic and time the
    survivor's takeover of its partitions (see the module docstring)."""
    metric = calls_metric(rules)
    period = rules.calendar.current("day", datetime.now(UTC)).label
    partitions = settings.partitions
    lost = held(victim)
    kept = held(survivor)
    if not lost:
        raise BenchError(f"the victim holds no partition (survivor: {kept})")
    topic = settings.topic("activity")
    assert survivor.process is not None and victim.process is not None
    watch = PoolWatch(settings, [survivor.process.pid])
    try:
        before_values = {p: probe_value(victim, probes[p], period, metric) for p in lost}
        before_offsets = activity_committed(watch, topic)
        kill_wall = time.time()
        t0 = time.monotonic()
        if graceful:
            signal_worker(victim, signal.SIGTERM)
        else:
            victim.kill()
        what = "SIGTERM" if graceful else "SIGKILL"
        log.info(
            "%s to the worker holding %s (survivor holds %s); probe calls then %s",
            what,
            lost,
            kept,
            before_values,
        )
        exit_s = None if graceful else 0.0
        healthy_all: float | None = None
        owned_at: dict[int, float] = {}
        offsets_moved: dict[int, float] = {}
        figures_moved: dict[int, float] = {}
        # A SIGKILLed worker commits and counts nothing more: the references are the values
        # just before the kill. A stopping one still commits and counts until it has left the
        # group, so after SIGTERM the references are the values when the survivor first
        # reports owning the partition.
        offset_ref: dict[int, int] = {} if graceful else dict(before_offsets)
        value_ref: dict[int, int] = (
            {} if graceful else {p: v for p, v in before_values.items() if v is not None}
        )
        unavailable_polls = 0
        deadline = t0 + timeout
        while time.monotonic() < deadline:
            traffic.check()
            check_alive(survivor)
            if exit_s is None and victim.process.poll() is not None:
                exit_s = time.monotonic() - t0
            owned: set[int] = set()
            try:
                answer = httpx.get(f"{survivor.url}/healthz", timeout=2)
                body = answer.json()
                owned = set(body["partitions"])
                at = time.monotonic() - t0
                everything = body["partitions"] == list(range(partitions))
                if healthy_all is None and answer.status_code == 200 and everything:
                    healthy_all = at
                for p in owned & set(lost):
                    owned_at.setdefault(p, at)
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            committed = activity_committed(watch, topic)
            at = time.monotonic() - t0
            for p in lost:
                if p in offsets_moved or committed.get(p) is None:
                    continue
                if p not in offset_ref:
                    if p in owned:
                        offset_ref[p] = committed[p]
                elif committed[p] > offset_ref[p]:
                    offsets_moved[p] = at
            for p in lost:
                if p in figures_moved or p not in owned:
                    continue  # only the survivor's own books count (not a forwarded answer)
                value = probe_value(survivor, probes[p], period, metric)
                if value is None:
                    unavailable_polls += 1
                elif p not in value_ref:
                    value_ref[p] = value
                elif value > value_ref[p]:
                    figures_moved[p] = time.monotonic() - t0
            done = (
                healthy_all is not None
                and len(offsets_moved) == len(figures_moved) == len(lost)
                and exit_s is not None
            )
            if done or (not traffic.flowing() and healthy_all is not None):
                break
            time.sleep(0.1)
        if exit_s is None:  # graceful, still not gone: the harness's stop() kills it after 30s
            victim.stop()
    finally:
        watch.close()
    timeline = rebalance_timeline(survivor.log_path, settings.app_id, kill_wall)
    restored = timeline["restored"]
    began, assigned = timeline["rebalance_began_after_s"], timeline["assigned_after_s"]
    last_restore = max((r["after_kill_s"] for r in restored), default=None)
    notes: list[str] = []
    if healthy_all is None:
        notes.append(f"the survivor did not hold every partition within {timeout:.0f}s")
    if len(figures_moved) < len(lost) or len(offsets_moved) < len(lost):
        why = "the traffic stopped (--duration)" if not traffic.flowing() else f"{timeout:.0f}s"
        notes.append(f"figures/offsets of some lost partitions did not move before {why}")

    def worst(moved: dict[int, float]) -> float | None:
        return round(max(moved.values()), 2) if len(moved) == len(lost) else None

    result = {
        "signal": what,
        "lost_partitions": lost,
        "survivor_partitions_before": kept,
        "session_timeout_s": settings.session_timeout,
        "healthy_all_s": None if healthy_all is None else round(healthy_all, 2),
        "offsets_advance_s": worst(offsets_moved),
        "figures_move_s": worst(figures_moved),
        "offsets_advance_s_by_partition": {p: round(s, 2) for p, s in offsets_moved.items()},
        "figures_move_s_by_partition": {p: round(s, 2) for p, s in figures_moved.items()},
        "owned_s_by_partition": {p: round(s, 2) for p, s in owned_at.items()},
        "exit_s": None if exit_s is None else round(exit_s, 2),
        "detect_s": began,
        "rebalance_s": None if began is None or assigned is None else round(assigned - began, 3),
        "restore_s": None
        if assigned is None or last_restore is None
        else round(last_restore - assigned, 3),
        "restore_seconds_logged": [r["seconds"] for r in restored],
        "restored_partitions": [r["partition"] for r in restored],
        "timeline": timeline,
        "probe_polls_unavailable": unavailable_polls,
        "loadavg_1m_at_end": os.getloadavg()[0],
        "notes": notes,
    }
    log.info(
        "%s: healthy holding all after %ss, offsets advance after %ss, figures move after %ss; "
        "log: rebalance began %ss, assigned %ss, restores %s (seconds=%s)%s",
        what,
        result["healthy_all_s"],
        result["offsets_advance_s"],
        result["figures_move_s"],
        began,
        assigned,
        result["restored_partitions"],
        result["restore_seconds_logged"],
        f" — {'; '.join(notes)}" if notes else "",
    )
    return result


def failover(
    bench: Bench,
    rules: Rules,
    backlog: Backlog,
    args: argparse.Namespace,
    graceful: bool,
    out: dict[str, Any],
) -> None:
    """Two workers under traffic; SIGKILL one; optionally a replacement then SIGTERMed. The
    figures go into ``out`` as they come (a later failure keeps the earlier ones)."""
    settings = bench.settings("failover")
    probes = probe_reps(settings.partitions)
    org = with_probes(backlog.org, probes)
    publish_reference(settings, org, rules, datetime.now(UTC))
    workers = [member(bench, settings, 1), member(bench, settings, 2)]
    traffic = Traffic(settings, rules, org, probes, args.rate, args.probe_rate, args.duration)
    timeout = args.takeover_timeout or max(60.0, 4 * settings.session_timeout)
    out.update({"rate": args.rate, "probe_rate": args.probe_rate, "probes": probes})
    try:
        out["settle_s"] = round(settle(workers, settings.partitions, bench.start_timeout), 2)
        traffic.start()
        time.sleep(min(args.warmup, args.duration / 4))
        traffic.check()
        out["kill"] = takeover(
            settings, rules, workers[1], workers[0], traffic, probes, False, timeout
        )
        if graceful:
            replacement = member(bench, settings, 3)
            workers.append(replacement)
            pair = [workers[0], replacement]
            out["replacement_settle_s"] = round(
                settle(pair, settings.partitions, bench.start_timeout), 2
            )
            if traffic.remaining() >= args.graceful_min + args.warmup:
                time.sleep(args.warmup)
                out["graceful"] = takeover(
                    settings, rules, replacement, workers[0], traffic, probes, True, timeout
                )
            else:
                out["graceful"] = None
                out["graceful_note"] = (
                    f"skipped: {traffic.remaining():.0f}s of traffic left (--duration)"
                )
        traffic.halt.set()
        traffic.join(60)
        traffic.check()
        elapsed = (traffic.ended_at or time.monotonic()) - (traffic.started_at or 0.0)
        out["traffic"] = {
            "events": traffic.sent,
            "probe_calls": traffic.probe_rounds * len(probes),
            "calls": traffic.calls,
            "seconds": round(elapsed, 1),
        }
        try:
            wait_caught_up(settings, worker=workers[0], timeout=args.timeout)
        except AssertionError as exc:
            raise BenchError(f"failover: the group did not catch up: {exc}") from exc
        sent = Backlog(org, [], {"call.completed": traffic.calls})
        out["check"] = verify_calls(workers[0], rules, sent)
        if not out["check"]["valid"]:
            log.warning("failover: INVALID, %s (logs in %s)", out["check"], bench.log_dir)
    finally:
        traffic.halt.set()
        if traffic.is_alive():
            traffic.join(60)
        stop_all(workers)


def ratios(done: dict[str, Any]) -> dict[str, float | None]:
    """Two workers over one in a round: events/s and events per CPU-s (valid runs only)."""

    def figure(phase: str, key: str) -> float | None:
        run = done.get(phase) or {}
        value = run.get(key)
        ok = run.get("clean")
        return float(value) if ok and value else None

    out: dict[str, float | None] = {}
    for name, key in (("ratio", "events_per_s"), ("cpu_efficiency", "events_per_cpu_s")):
        one, two = figure("one", key), figure("two", key)
        out[name] = round(two / one, 3) if one and two else None
    return out


# --- run --------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--events", type=int, default=40_000, help="backlog of each throughput run")
    add("--reps", type=int, default=240, help="reps of the organisation")
    add("--timeout", type=float, default=300.0, help="bound of each throughput run / catch-up (s)")
    add("--start-timeout", type=float, default=120.0, help="bound of a pool's start (s)")
    add("--rate", type=float, default=300.0, help="failover: steady events per second")
    add("--probe-rate", type=float, default=5.0, help="failover: calls/s of each probe rep")
    add("--duration", type=float, default=60.0, help="failover: traffic lasts at most this (s)")
    add("--warmup", type=float, default=5.0, help="failover: traffic before each stop (s)")
    add("--graceful-min", type=float, default=15.0, help="graceful: traffic it needs left (s)")
    add("--takeover-timeout", type=float, help="bound of each takeover (s; default 4×session)")
    add("--rounds", type=int, default=1, help="throughput: rounds of one then two workers")
    add(
        "--quiet",
        type=float,
        default=0.6,
        help="a throughput run is quiet if other programs (the broker included) and the "
        "hypervisor took at most this many cores meanwhile",
    )
    add("--note", help="free text stored in the JSON (what was measured, e.g. a commit)")
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
    for noisy in ("kafka", "aiokafka"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    logging.getLogger("httpx").setLevel(logging.WARNING)

    began = time.monotonic()
    load_at_start = os.getloadavg()
    base = Settings()
    check_broker(base)
    rules = Rules.from_settings(base)
    run_id = f"scale{uuid.uuid4().hex[:6]}"
    result: dict[str, Any] = {
        "bench": "scale",
        "run_id": run_id,
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    runs: dict[str, Any] = {}
    rounds: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="spm-scale-") as tmp_name:
        tmp = Path(tmp_name)
        log_dir = args.log_dir or tmp / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        bench = Bench(base, run_id, tmp, log_dir, parse_overrides(args.set), args.start_timeout)
        log.info("run %s: worker logs in %s (load %.1f)", run_id, log_dir, load_at_start[0])
        backlog = make_backlog(rules, args.events, args.reps, seed=1)
        try:
            for k in range(1, args.rounds + 1):
                done: dict[str, Any] = {}
                rounds.append(done)
                for phase, n in (("one", 1), ("two", 2)):
                    if phase not in skip:
                        done[phase] = throughput(
                            bench, rules, backlog, f"{phase}-r{k}", n, args.timeout, args.quiet
                        )
                done.update(ratios(done))
            if "kill" not in skip:
                runs["failover"] = {}
                try:
                    failover(bench, rules, backlog, args, "graceful" not in skip, runs["failover"])
                except BenchError as exc:  # reported, with what was measured before it
                    log.error("failover phase failed: %s", exc)
                    text = str(exc)
                    if len(text) > 8000:
                        text = f"{text[:2000]}\n[…]\n{text[-6000:]}"
                    runs["failover"]["error"] = text
                    # The cause is usually in a worker's log, not in the tail of the message.
                    runs["failover"]["crashes"] = sorted(
                        {
                            line
                            for name, found in log_errors(log_dir).items()
                            if "-failover-" in name
                            for line in found["distinct"]
                            if "Crashed reason" in line
                        }
                    )
        finally:
            if not args.keep_topics:
                cleanup(base, run_id)
            errors = log_errors(log_dir)
    runs["throughput"] = rounds

    # Rounds whose two runs are both clean and quiet, if any; otherwise every clean run.
    quiet = [
        r
        for r in rounds
        if all(r.get(phase, {}).get("clean") and r[phase].get("quiet") for phase in ("one", "two"))
    ]
    chosen = quiet or rounds
    over = (
        f"{len(quiet)} quiet round(s) of {len(rounds)}"
        if quiet
        else f"all {len(rounds)} round(s): none was quiet, the figures are disturbed by other load"
    )

    def median(phase: str, key: str) -> float | None:
        """Over the chosen rounds whose run of ``phase`` is clean."""
        values = [r[phase][key] for r in chosen if phase in r and r[phase].get("clean")]
        return round(statistics.median(values), 1) if values else None

    def median_ratio(key: str) -> float | None:
        values = [r[key] for r in chosen if r.get(key) is not None]
        return round(statistics.median(values), 2) if values else None

    fail = runs.get("failover") or {}
    kill = fail.get("kill") or {}
    graceful = fail.get("graceful") or {}
    result.update(
        {
            # Medians over the quiet rounds, else over all (``summary_over`` says which).
            "one_worker_events_per_s": median("one", "events_per_s"),
            "one_worker_events_per_cpu_s": median("one", "events_per_cpu_s"),
            "two_workers_events_per_s": median("two", "events_per_s"),
            "two_workers_events_per_cpu_s": median("two", "events_per_cpu_s"),
            "ratio_two_over_one": median_ratio("ratio"),
            "cpu_efficiency_two_over_one": median_ratio("cpu_efficiency"),
            "ratios_by_round": [r.get("ratio") for r in rounds],
            "quiet_by_round": [
                all(r.get(phase, {}).get("quiet") for phase in ("one", "two")) for r in rounds
            ],
            "summary_over": over if rounds else None,
            # CPU until every worker idled after the catch-up (history sink, last publishes).
            "one_worker_events_per_cpu_s_until_idle": median("one", "events_per_cpu_s_until_idle"),
            "two_workers_events_per_cpu_s_until_idle": median("two", "events_per_cpu_s_until_idle"),
            "kill_healthy_all_s": kill.get("healthy_all_s"),
            "kill_offsets_advance_s": kill.get("offsets_advance_s"),
            "kill_figures_move_s": kill.get("figures_move_s"),
            "kill_detect_s": kill.get("detect_s"),
            "kill_rebalance_s": kill.get("rebalance_s"),
            "kill_restore_s": kill.get("restore_s"),
            "kill_restore_seconds_logged": kill.get("restore_seconds_logged"),
            "graceful_healthy_all_s": graceful.get("healthy_all_s"),
            "graceful_figures_move_s": graceful.get("figures_move_s"),
            "graceful_offsets_advance_s": graceful.get("offsets_advance_s"),
            "graceful_detect_s": graceful.get("detect_s"),
            "graceful_restore_s": graceful.get("restore_s"),
            "graceful_exit_s": graceful.get("exit_s"),
            "session_timeout_s": kill.get("session_timeout_s"),
            "failover_valid": (fail.get("check") or {}).get("valid"),
            "failover_error": (fail.get("error") or "").split("\n", 1)[0] or None,
            "failover_crashes": fail.get("crashes"),
            "events": args.events,
            "reps": args.reps,
            "rounds": args.rounds,
            "mix": backlog.mix,
            "duration_s": round(time.monotonic() - began, 1),
            "settings": reported_settings(bench),
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "loadavg_at_start": load_at_start,
                "loadavg_at_end": os.getloadavg(),
            },
            "git": git_state(),
            "note": args.note,
            "log_errors": errors,
            "runs": runs,
        }
    )
    invalid = [
        f"{phase}-r{k}"
        for k, r in enumerate(rounds, start=1)
        for phase in ("one", "two")
        if phase in r and r[phase].get("complete") and not r[phase].get("valid")
    ]
    if fail and not (fail.get("check") or {}).get("valid"):
        invalid.append("failover")
    if invalid:
        result["invalid"] = invalid  # the API did not show every event: no figure
    incomplete = [
        f"{phase}-r{k}"
        for k, r in enumerate(rounds, start=1)
        for phase in ("one", "two")
        if phase in r and not r[phase].get("complete")
    ]
    if incomplete:
        result["incomplete"] = incomplete
    noted = {
        f"{phase}-r{k}": r[phase]["notes"]
        for k, r in enumerate(rounds, start=1)
        for phase in ("one", "two")
        if phase in r and r[phase].get("notes")
    }
    for name in ("kill", "graceful"):
        if (fail.get(name) or {}).get("notes"):
            noted[name] = fail[name]["notes"]
    if fail.get("graceful_note"):
        noted["graceful"] = [fail["graceful_note"]]
    if noted:
        result["notes"] = noted
    line = json.dumps(result, separators=(",", ":"), default=str)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(line, flush=True)


if __name__ == "__main__":
    try:
        main()
    except BenchError as exc:
        log.error("scale bench failed: %s", exc)
        sys.exit(1)
