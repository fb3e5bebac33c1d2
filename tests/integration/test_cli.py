"""The feeding commands on the real broker: ``spm emit``, the CSV imports, ``spm dlq replay``.

Each test gets its own topic prefix and runs the installed ``spm`` script as a user would,
then reads the topics back to see exactly what was (or was not) published.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaProducer, TopicPartition

from streams.dlq import replay_group
from streams.engine.money import DEFAULT_RATES
from streams.settings import REPO_ROOT, Settings
from streams.topics import ensure_topics
from tests.integration.feeding import event, read_topic
from tests.integration.harness import spm


@pytest.fixture
def settings(stack: Settings, unique_prefix: str) -> Settings:
    s = stack.model_copy(update={"topic_prefix": unique_prefix, "app_id": unique_prefix})
    ensure_topics(s)
    return s


def jsonl(*events: dict[str, Any] | str) -> str:
    return "\n".join(e if isinstance(e, str) else json.dumps(e) for e in events) + "\n"


# --- spm emit ------------------------------------------------------------------------------


def test_emit_with_a_bad_line_names_it_and_sends_nothing(
    settings: Settings, tmp_path: Path
) -> None:
    file = tmp_path / "events.jsonl"
    file.write_text(
        jsonl(event("a1"), event("a2", rep="r2"), "", {**event("a3"), "time": "yesterday"})
    )
    result = spm(settings, "emit", str(file))
    assert result.returncode == 2, result.stderr
    assert "bad_time: line 4:" in result.stderr
    assert "nothing published" in result.stderr
    assert read_topic(settings, "activity") == []


def test_emit_skip_bad_sends_the_good_lines_byte_for_byte(
    settings: Settings, tmp_path: Path
) -> None:
    good = [
        json.dumps(event("b1")),
        json.dumps(event("b2", deal_id="D-9", amount="1200.50", currency="EUR")),
        json.dumps(event("b3", rep="r7")),
    ]
    bad = json.dumps(event("b4", deal_id="D-10", amount="10", currency="XXX"))
    file = tmp_path / "events.jsonl"
    file.write_text(jsonl(good[0], "{oops", good[1], bad, good[2]))
    result = spm(settings, "emit", "--skip-bad", str(file))
    assert result.returncode == 1, result.stderr
    assert "not_json: line 2:" in result.stderr
    assert "unknown_currency: line 4:" in result.stderr
    assert "sent 3 events" in result.stdout
    sent = read_topic(settings, "activity")
    assert sorted(m.value for m in sent) == sorted(g.encode() for g in good)
    keys = {m.value: m.key for m in sent}  # every event by its idempotency key
    assert keys[good[0].encode()] == b"8:crm.test\x1fb1"
    assert keys[good[1].encode()] == b"8:crm.test\x1fb2"
    assert keys[good[2].encode()] == b"8:crm.test\x1fb3"


def test_emit_one_event_as_argument_or_from_stdin(settings: Settings) -> None:
    inline = json.dumps(event("c1"))
    result = spm(settings, "emit", inline)
    assert result.returncode == 0, result.stderr
    result = spm(settings, "emit", "-", stdin=jsonl(event("c2"), event("c3")))
    assert result.returncode == 0, result.stderr
    sent = sorted(json.loads(m.value)["id"] for m in read_topic(settings, "activity"))
    assert sent == ["c1", "c2", "c3"]
    assert spm(settings, "emit", "-", stdin=jsonl("[1]")).returncode == 2
    assert spm(settings, "emit", str(REPO_ROOT / "no-such-file.jsonl")).returncode == 2


# --- CSV imports ---------------------------------------------------------------------------


def test_quotas_import_names_the_bad_line_and_publishes_nothing_or_the_rest(
    settings: Settings, tmp_path: Path
) -> None:
    file = tmp_path / "quotas.csv"
    file.write_text(
        "scope,scope_id,metric,period,target\n"
        "rep,r1,revenue,2026-Q4,150000\n"
        "team,emea,calls,2026-11,900\n"
        "rep,r2,revenue,2026-Q9,100\n"
        "rep,r3,revnue,2026-Q4,100\n"
    )
    result = spm(settings, "quotas", "import", str(file))
    assert result.returncode == 2
    assert "line 4: not a period label" in result.stderr
    assert "line 5: unknown metric" in result.stderr
    assert read_topic(settings, "quotas") == []

    result = spm(settings, "quotas", "import", "--skip-bad", str(file))
    assert result.returncode == 1
    assert "published 2 quotas" in result.stdout
    records = {
        json.loads(m.key or b""): json.loads(m.value) for m in read_topic(settings, "quotas")
    }
    assert set(records) == {"rep|r1|revenue|2026-Q4|", "team|emea|calls|2026-11|"}
    assert records["rep|r1|revenue|2026-Q4|"]["target"] == "150000"


def test_teams_and_roster_imports_publish_every_row(settings: Settings, tmp_path: Path) -> None:
    teams = tmp_path / "teams.csv"
    teams.write_text("team_id,name,parent_id\nacme,Acme,\nemea,EMEA,acme\n")
    reps = tmp_path / "reps.csv"
    reps.write_text(
        "rep_id,name,team_id,effective_from\nr1,Ada,emea,\nr1,Ada,acme,2026-11-02\nr2,Bo,emea,\n"
    )
    assert spm(settings, "teams", "import", str(teams)).returncode == 0
    result = spm(settings, "roster", "import", str(reps))
    assert result.returncode == 0, result.stderr
    assert "published 3 reps" in result.stdout
    records = {
        json.loads(m.key or b""): json.loads(m.value) for m in read_topic(settings, "roster")
    }
    assert set(records) == {
        "team|acme",
        "team|emea",
        "rep|r1|",
        "rep|r1|2026-11-02T00:00:00+00:00",
        "rep|r2|",
    }
    assert records["team|emea"]["parent_id"] == "acme"
    assert records["rep|r1|2026-11-02T00:00:00+00:00"]["team_id"] == "acme"

    bad = tmp_path / "bad-teams.csv"
    bad.write_text("team_id,name,parent_id\nx,X,x\n")
    result = spm(settings, "teams", "import", "--skip-bad", str(bad))
    assert result.returncode == 2 and "line 2: a team cannot be its own parent" in result.stderr


# --- spm dlq replay ------------------------------------------------------------------------


@pytest.fixture
def dlq_writer(settings: Settings) -> Iterator[KafkaProducer]:
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    yield producer
    producer.close()


def dead_letter(
    producer: KafkaProducer, settings: Settings, value: bytes, key: bytes, code: str, **extra: str
) -> None:
    """A letter as the worker writes it: original bytes and key, error and origin headers."""
    headers = {
        "spm-error-code": code,
        "spm-error-message": f"rejected: {code}",
        "spm-error-path": "",
        "spm-source-topic": settings.topic("activity"),
        "spm-source-partition": "0",
        "spm-source-offset": "17",
        **extra,
    }
    producer.send(
        settings.topic("activity.dlq"),
        value=value,
        key=key,
        partition=0,
        headers=[(k, v.encode()) for k, v in headers.items()],
    )
    producer.flush()


def test_dlq_replay_resubmits_letters_that_pass_after_a_rates_fix_once(
    settings: Settings, dlq_writer: KafkaProducer, kafka_admin: KafkaAdminClient, tmp_path: Path
) -> None:
    rand = json.dumps(event("d1", deal_id="D-1", amount="5000", currency="ZAR")).encode()
    call = json.dumps(event("d2", rep="r5")).encode()
    dead_letter(dlq_writer, settings, rand, b"D-1", "unknown_currency", traceparent="00-abc-01")
    dead_letter(dlq_writer, settings, b"{broken", b"k", "not_json")
    dead_letter(dlq_writer, settings, call, b"r5", "too_large")
    fixed_rates = tmp_path / "rates.csv"
    fixed_rates.write_text(DEFAULT_RATES.read_text() + "ZAR,0.055,2000-01-01\n")

    dry = spm(settings, "dlq", "replay", "--dry-run")
    assert dry.returncode == 1, dry.stderr
    assert "would replay 1, still failing 2" in dry.stdout
    assert "unknown_currency" in dry.stdout and "not_json" in dry.stdout
    assert read_topic(settings, "activity") == []

    fixed = {"SPM_RATES_PATH": str(fixed_rates)}
    first = spm(settings, "dlq", "replay", **fixed)
    assert first.returncode == 1, first.stderr
    assert "read 3 letters" in first.stdout and "replayed 2, still failing 1" in first.stdout
    replayed = {m.value: m for m in read_topic(settings, "activity")}
    assert set(replayed) == {rand, call}
    assert replayed[rand].key == b"D-1" and replayed[call].key == b"r5"
    headers = replayed[rand].headers
    assert headers["traceparent"] == b"00-abc-01"
    assert headers["spm-replayed-from"] == f"{settings.topic('activity.dlq')}/0/0".encode()
    assert not [h for h in headers if h.startswith(("spm-error-", "spm-source-"))]

    group = replay_group(settings.app_id)
    committed = kafka_admin.list_group_offsets(group)[group]
    assert committed[TopicPartition(settings.topic("activity.dlq"), 0)].offset == 3

    again = spm(settings, "dlq", "replay", **fixed)
    assert again.returncode == 0 and "read 0 letters" in again.stdout
    assert len(read_topic(settings, "activity")) == 2  # nothing re-submitted

    late = json.dumps(event("d3", rep="r6")).encode()
    dead_letter(dlq_writer, settings, late, b"r6", "schema")
    third = spm(settings, "dlq", "replay", **fixed)
    assert third.returncode == 0 and "read 1 letters" in third.stdout
    assert len(read_topic(settings, "activity")) == 3

    limited = spm(settings, "dlq", "replay", "--since-offset", "1", "--limit", "1", "--dry-run")
    assert "read 1 letters" in limited.stdout and "still failing 1" in limited.stdout


def test_dlq_replay_without_a_dlq_topic_is_a_clear_error(stack: Settings) -> None:
    nowhere = stack.model_copy(update={"topic_prefix": "no-such-prefix", "app_id": "no-such-app"})
    result = spm(nowhere, "dlq", "replay")
    assert result.returncode == 2
    assert "no-such-prefix.activity.dlq does not exist" in result.stderr
