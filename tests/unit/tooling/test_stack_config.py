"""The configs the local stack renders from deploy/: what the live tests rely on."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
import yaml

from tools.settings import StackSettings
from tools.stack import ALERTMANAGER_CONFIG, parts, render_alertmanager_config


def test_alertmanager_config_posts_to_the_stacks_webhook_port_and_stays_valid(
    tmp_path: Path,
) -> None:
    shipped = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    rendered = render_alertmanager_config(StackSettings(alertmanager_webhook_port=23456))

    urls = [
        httpx.URL(slack["api_url"])
        for receiver in rendered["receivers"]
        for slack in receiver["slack_configs"]
    ]
    shipped_urls = [
        httpx.URL(slack["api_url"])
        for receiver in shipped["receivers"]
        for slack in receiver["slack_configs"]
    ]
    assert {url.port for url in urls} == {23456}
    assert [(u.host, u.path) for u in urls] == [(u.host, u.path) for u in shipped_urls]
    assert {k: v for k, v in rendered.items() if k not in ("receivers", "templates")} == {
        k: v for k, v in shipped.items() if k not in ("receivers", "templates")
    }
    assert all(list(Path("/").glob(t.lstrip("/"))) for t in rendered["templates"])
    written = tmp_path / "alertmanager.yml"
    written.write_text(yaml.safe_dump(rendered, sort_keys=False))
    amtool = shutil.which("amtool")
    assert amtool, "amtool (Debian prometheus-alertmanager) is needed"
    checked = subprocess.run(
        [amtool, "check-config", str(written)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"{len(rendered['templates'])} templates" in checked.stdout, checked.stdout


def test_a_stack_runs_the_parts_its_settings_name_in_start_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert [part.name for part in parts(StackSettings())] == ["kafka", "alertmanager", "prometheus"]
    assert [part.name for part in parts(StackSettings(stack_parts={"kafka"}))] == ["kafka"]
    monkeypatch.setenv("SPM_STACK_PARTS", '["prometheus", "alertmanager"]')
    assert [part.name for part in parts(StackSettings())] == ["alertmanager", "prometheus"]
