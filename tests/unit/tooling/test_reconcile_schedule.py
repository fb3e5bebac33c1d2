"""The nightly reconcile job in ``deploy/reconcile/``: a valid CronJob whose shell proves the
current and the previous quarter and fails with the worse of the two exit codes."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import yaml

from streams.settings import REPO_ROOT

CRONJOB = REPO_ROOT / "deploy" / "reconcile" / "cronjob.yaml"
FAKE_SPM = """#!/bin/sh
echo "$*" >> "$CALLS"
case "$*" in *--previous*) exit "$PREVIOUS" ;; *) exit "$CURRENT" ;; esac
"""


def test_the_cronjob_runs_both_quarters_and_exits_with_the_worse_code(tmp_path: Path) -> None:
    job = yaml.safe_load(CRONJOB.read_text())
    assert (job["apiVersion"], job["kind"]) == ("batch/v1", "CronJob")
    assert len(job["spec"]["schedule"].split()) == 5
    [container] = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["/bin/sh", "-c"]
    [script] = container["args"]
    spm = tmp_path / "spm"
    spm.write_text(FAKE_SPM)
    spm.chmod(0o755)
    for current, previous, want in ((0, 0, 0), (1, 0, 1), (0, 2, 2), (2, 1, 2)):
        calls = tmp_path / f"calls-{current}-{previous}"
        env = os.environ | {
            "PATH": f"{tmp_path}:{os.environ['PATH']}",
            "SPM_API_URL": "http://worker:26066",
            "CALLS": str(calls),
            "CURRENT": str(current),
            "PREVIOUS": str(previous),
        }
        result = subprocess.run(["/bin/sh", "-c", script], env=env, timeout=10)
        assert result.returncode == want, (current, previous)
        assert calls.read_text().splitlines() == [
            "reconcile --api http://worker:26066",
            "reconcile --previous --api http://worker:26066",
        ]
