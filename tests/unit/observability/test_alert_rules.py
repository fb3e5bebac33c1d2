"""The Prometheus alert rules are valid, pass their promtool unit tests, and only use series
the worker exports."""

from __future__ import annotations

import re

import yaml

from .helpers import RULE_TESTS, RULES, exported_series_names, run, tool


def test_rule_files_exist_and_pass_promtool_check():
    assert RULES, "deploy/prometheus/rules/*.yml"
    result = run(tool("promtool"), "check", "rules", *RULES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_pass():
    assert RULE_TESTS, "deploy/prometheus/tests/*.yml"
    result = run(tool("promtool"), "test", "rules", *RULE_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_check_catches_a_broken_rule(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text(
        yaml.safe_dump({"groups": [{"name": "x", "rules": [{"alert": "X", "expr": "sum(("}]}]})
    )
    result = run(tool("promtool"), "check", "rules", broken)
    assert result.returncode != 0


def test_every_spm_series_in_the_rules_is_exported_by_the_worker():
    exported = exported_series_names()
    for path in RULES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                used = set(re.findall(r"\bspm_[a-z_]+", rule["expr"]))
                annotations = " ".join(rule.get("annotations", {}).values())
                used |= set(re.findall(r"\bspm_[a-z_]+(?=\{)", annotations))
                name = rule.get("alert") or rule["record"]
                assert used <= exported, f"{name}: {used - exported} not exported"


def test_every_alert_says_who_and_links_a_board():
    for path in RULES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "record" in rule:
                    continue
                assert {"summary", "description", "dashboard"} <= rule["annotations"].keys()
                component, severity = rule["labels"]["component"], rule["labels"]["severity"]
                assert (component, severity) in {
                    ("quota", "warning"),
                    ("pipeline", "warning"),
                    ("pipeline", "critical"),
                    ("celebration", "info"),
                }


def test_recorded_series_are_only_read_after_they_are_recorded():
    """Every recorded ``spm:`` series a rule reads is recorded by a rule before it in file order
    (within a group that is evaluation order; across groups a reader sees the last evaluation)."""
    recorded: set[str] = set()
    for path in RULES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                used = set(re.findall(r"\bspm:[a-z_]+", rule["expr"]))
                assert used <= recorded, f"{rule.get('record') or rule['alert']}: {used - recorded}"
                if "record" in rule:
                    recorded.add(rule["record"])
