"""The Dockerfile builds a working worker, checked without a Docker engine.

Its instructions are replayed on this machine: COPY puts exactly the copied paths (minus
``.dockerignore``) into a fresh directory standing for the image's ``/``, each ``pip install``
of a RUN runs in a fresh venv in the WORKDIR of that RUN (the other commands of a RUN, such as
``useradd``, only matter inside an image), and the CMD (after any ENTRYPOINT) is started in the
final WORKDIR with the image's ENV, pointed at the local broker. A file the image forgot, an
import that only works from the source tree, or a CMD that does not start a worker fails here.

The image's ``pip install .`` is the product's non-editable install with all its dependencies
(done once per module), so the installed product is checked on it too: ``spm`` runs, and the
worker's code reads the event schema and the ClickHouse migrations from the installed package,
run from a temporary directory so nothing of the repository can stand in for a file the
install lacks. What the wheel ships is checked in ``test_install.py``; ``make lint`` runs
hadolint on the Dockerfile.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import httpx
import pytest
from dockerfile_parse import DockerfileParser

from streams.settings import Settings
from tests.integration.harness import HTTP, free_port
from tests.integration.installing import Venv, output_tail
from tools.settings import REPO_ROOT

pytestmark = pytest.mark.timeout(1800)

HEALTHY_WITHIN = 120.0
STOP_WITHIN = 30.0
PIP_INSTALL = re.compile(r"^(?:pip3?|python3?\s+-m\s+pip)\s+install\s+(?P<args>.*)$", re.DOTALL)
#: Image ENV that only makes the replay slower: pip's cache is what keeps it fast here.
NOT_REPLAYED_ENV = {"PIP_NO_CACHE_DIR"}
#: Added to the image's ``pip install``: the image byte-compiles its whole install (~1 GB with
#: chDB, pandas and pyarrow), ~11 CPU-s of the replay that prove nothing (pip ignores a file
#: that does not compile). The replayed runs compile what they import, as the image's ENV
#: (PYTHONDONTWRITEBYTECODE) has them do with any file the build did not compile.
REPLAY_PIP_OPTIONS = ("--no-compile",)
#: Run inside the installed venv: where the package is, the schema, the migrations, whether
#: the worker's code imports and the contract decodes an event.
PROBE = """
import importlib, json, streams
from streams import resources
from streams.migrations import load_migrations
from streams.rules import Rules
from streams.settings import Settings
importlib.import_module("streams.app")
event = json.dumps({
    "specversion": "1.0", "id": "c-1", "source": "dialer", "type": "call.completed",
    "time": "2026-11-27T10:15:00+01:00", "data": {"rep_id": "rep-001"},
}).encode()
print(json.dumps({
    "package": streams.__file__,
    "schema": json.loads(resources.event_schema_text()),
    "migrations": [[m.version, m.name, len(m.statements)] for m in load_migrations()],
    "decoded": repr(Rules.from_settings(Settings()).decoder.decode(event))[:200],
}))
"""


@dataclass
class Image:
    """What the Dockerfile builds, replayed under ``root`` (which stands for the image's ``/``)."""

    root: Path
    base: str = ""
    env: dict[str, str] = field(default_factory=dict)
    workdir: PurePosixPath = field(default_factory=lambda: PurePosixPath("/"))
    installs: list[tuple[PurePosixPath, list[str]]] = field(default_factory=list)
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)

    def host(self, path: PurePosixPath | str) -> Path:
        """Where an absolute image path lies in the replay."""
        return self.root / PurePosixPath(path).relative_to("/")

    def host_env(self) -> dict[str, str]:
        """The image's ENV, absolute paths into the replayed tree moved under ``root``."""
        moved = {}
        for name, value in self.env.items():
            parts = PurePosixPath(value).parts
            inside = len(parts) > 1 and parts[0] == "/" and self.host("/" + parts[1]).is_dir()
            moved[name] = str(self.host(value)) if inside else value
        return moved


def _dockerignore(context: Path) -> list[str]:
    path = context / ".dockerignore"
    lines = path.read_text().splitlines() if path.exists() else []
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _ignored(relative: PurePosixPath, patterns: list[str]) -> bool:
    """.dockerignore matching, as far as this repository uses it (``**/name``, ``name``)."""
    for pattern in patterns:
        if pattern.startswith("**/"):
            if fnmatch.fnmatch(relative.name, pattern[3:]):
                return True
        elif fnmatch.fnmatch(str(relative), pattern):
            return True
    return False


def _arguments(value: str) -> list[str]:
    """An instruction's arguments: JSON (exec) form or shell words."""
    words: list[str] = json.loads(value) if value.startswith("[") else shlex.split(value)
    return words


def _copy(image: Image, context: Path, value: str) -> None:
    words = _arguments(value)
    flags = [w for w in words if w.startswith("--")]
    assert not [f for f in flags if f.startswith("--from")], "multi-stage COPY is not replayed"
    *sources, dest = [w for w in words if not w.startswith("--")]
    target = image.host(image.workdir / dest)
    into_dir = dest.endswith("/") or len(sources) > 1
    patterns = _dockerignore(context)

    def ignore(directory: str, names: list[str]) -> list[str]:
        base = PurePosixPath(Path(directory).relative_to(context).as_posix())
        return [name for name in names if _ignored(base / name, patterns)]

    for source in sources:
        path = context / source
        assert path.exists(), f"COPY {source}: not in the build context"
        assert not _ignored(PurePosixPath(source), patterns), f"COPY {source}: .dockerignored"
        if path.is_dir():
            shutil.copytree(path, target, ignore=ignore, symlinks=True, dirs_exist_ok=True)
        else:
            file_target = target / path.name if into_dir else target
            file_target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, file_target)


def replay(dockerfile: Path, root: Path) -> Image:
    """Read ``dockerfile`` and lay out its COPYs under ``root``; RUN pip and CMD are recorded."""
    parser = DockerfileParser(path=str(dockerfile))
    context = dockerfile.parent
    image = Image(root)
    root.mkdir(parents=True)
    for instruction in parser.structure:
        kind, value = instruction["instruction"], instruction["value"]
        if kind == "FROM":
            assert not image.base, "multi-stage builds are not replayed"
            image.base = value
        elif kind == "WORKDIR":
            image.workdir = image.workdir / value
            image.host(image.workdir).mkdir(parents=True, exist_ok=True)
        elif kind in ("COPY", "ADD"):
            _copy(image, context, value)
        elif kind == "RUN":
            for command in value.split("&&"):
                found = PIP_INSTALL.match(command.strip())
                if found:
                    image.installs.append((image.workdir, shlex.split(found["args"])))
        elif kind == "ENTRYPOINT":
            image.entrypoint = _arguments(value)
        elif kind == "CMD":
            image.cmd = _arguments(value)
    image.env = dict(parser.envs)
    return image


def _healthy(url: str) -> bool:
    try:
        return HTTP.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _tail(log: Path, lines: int = 60) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


@dataclass(frozen=True)
class Installed:
    """The replayed image with its ``pip install`` lines run (in order) in one fresh venv."""

    image: Image
    venv: Venv
    env: dict[str, str]  # the image's ENV as the replay uses it (NOT_REPLAYED_ENV left out)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """The Dockerfile replayed and its installs run, once for the module's tests."""
    root = tmp_path_factory.mktemp("dockerfile")
    image = replay(REPO_ROOT / "Dockerfile", root / "image")
    venv = Venv.create(root / "venv")
    env = {k: v for k, v in image.host_env().items() if k not in NOT_REPLAYED_ENV}
    for workdir, args in image.installs:
        venv.pip_install(*REPLAY_PIP_OPTIONS, *args, cwd=image.host(workdir), **env)
    return Installed(image, venv, env)


@pytest.mark.stack
def test_the_images_command_starts_a_healthy_worker(
    installed: Installed, stack: Settings, unique_prefix: str, tmp_path: Path
) -> None:
    image, venv = installed.image, installed.venv
    here = f"python:{sys.version_info.major}.{sys.version_info.minor}"
    assert image.base.startswith(f"{here}-") or image.base == here, (
        f"the replay runs on {here}; the Dockerfile builds FROM {image.base}"
    )
    assert image.installs, "no RUN pip install in the Dockerfile"
    assert image.entrypoint + image.cmd, "the Dockerfile has no CMD or ENTRYPOINT"

    port = free_port()
    data = tmp_path / "data"  # the image makes its data dir in a RUN that is not replayed
    data.mkdir()
    env = installed.env | {
        "SPM_KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
        "SPM_TOPIC_PREFIX": unique_prefix,
        "SPM_APP_ID": unique_prefix,
        "SPM_WEB_HOST": "127.0.0.1",
        "SPM_WEB_PORT": str(port),
        "SPM_DATA_DIR": str(data / "worker"),
        "SPM_CLICKHOUSE_URL": f"chdb://{data / 'clickhouse'}",
        "SPM_HISTORY_SINK": "false",
    }
    argv = image.entrypoint + image.cmd
    process_env = venv.env(**env)
    if "/" not in argv[0]:  # a command from the install (the image's pip puts it on PATH)
        argv[0] = shutil.which(argv[0], path=str(venv.bin)) or argv[0]
        assert Path(argv[0]).is_relative_to(venv.root), f"{argv[0]} is not from the install"
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen(
            argv,
            cwd=image.host(image.workdir),
            env=process_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + HEALTHY_WITHIN
        while not _healthy(f"http://127.0.0.1:{port}/healthz"):
            assert worker.poll() is None, (
                f"`{shlex.join(argv)}` exited with {worker.returncode}:\n{_tail(log)}"
            )
            assert time.monotonic() < deadline, (
                f"`{shlex.join(argv)}` not healthy within {HEALTHY_WITHIN:.0f} s:\n{_tail(log)}"
            )
            time.sleep(0.5)
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.wait(STOP_WITHIN)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait(10)


def test_spm_runs_from_the_install(installed: Installed, tmp_path: Path) -> None:
    done = installed.venv.run("spm", "--help", cwd=tmp_path, COLUMNS="200")

    assert done.returncode == 0, output_tail(done)
    for command in ("emit", "quotas", "roster", "teams", "dlq", "db", "replay", "grafana"):
        assert f" {command} " in done.stdout, done.stdout
    for tooling in ("stack", "demo"):  # developer tooling is not part of the product
        assert f" {tooling} " not in done.stdout, done.stdout


def test_the_installed_package_reads_its_schema_and_migrations(
    installed: Installed, tmp_path: Path
) -> None:
    done = installed.venv.run(installed.venv.python, "-c", PROBE, cwd=tmp_path)

    assert done.returncode == 0, output_tail(done)
    found = json.loads(done.stdout.splitlines()[-1])
    assert Path(found["package"]).is_relative_to(installed.venv.root), found["package"]
    repo_schema = json.loads((REPO_ROOT / "schemas" / "event.v1.schema.json").read_text())
    assert found["schema"] == repo_schema
    repo_sql = REPO_ROOT.glob("schemas/clickhouse/*.sql")
    repo_versions = sorted(int(p.name.split("_")[0]) for p in repo_sql)
    assert [version for version, _, _ in found["migrations"]] == repo_versions
    assert all(statements for _, _, statements in found["migrations"])
    assert found["decoded"].startswith("Event("), found["decoded"]
