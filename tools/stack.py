"""The local stack: Kafka (KRaft), Prometheus and Alertmanager as detached processes on 127.0.0.1.

Why plain processes rather than containers: tests and the demo need a real broker on any machine
with a JDK, Maven and Debian's Prometheus packages (docker-compose.yml covers the container
route). Each part keeps its config, data, log and pid file under ``StackSettings.var_dir``;
``up`` is idempotent and ``down`` only stops processes that a pid file proves this stack started.

Command line: ``python -m tools.stack up|down|status|jars`` (it imports nothing of the product,
so the stack starts even while the product's code does not import).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar

import httpx
import structlog
import typer
import yaml
from kafka import KafkaAdminClient
from rich.console import Console
from rich.table import Table
from tenacity import (
    Retrying,
    retry_if_exception_type,
    retry_if_not_exception_type,
    stop_after_delay,
    wait_fixed,
)

from tools.settings import HOST, REPO_ROOT, StackSettings, get_stack_settings

log = structlog.get_logger(__name__)

DEPLOY_DIR = REPO_ROOT / "deploy"
KAFKA_POM = DEPLOY_DIR / "kafka" / "pom.xml"
KAFKA_LOG4J = DEPLOY_DIR / "kafka" / "log4j2.properties"
PROMETHEUS_TEMPLATE = DEPLOY_DIR / "prometheus" / "prometheus.yml"
ALERTMANAGER_CONFIG = DEPLOY_DIR / "alertmanager" / "alertmanager.yml"
KAFKA_JVM_OPTS = ("-Xms256m", "-Xmx768m", "-XX:+UseG1GC", "-Djava.awt.headless=true")
STOP_TIMEOUT = 30.0  # seconds between SIGTERM and SIGKILL
PROBE_TIMEOUT = 2.0  # seconds one readiness probe may take
LOG_TAIL_LINES = 30
SCRAM_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")
MAVEN_TIMEOUT = 900.0


class StackError(RuntimeError):
    """A part of the stack could not be started or stopped; the message says which and why."""


class State(StrEnum):
    RUNNING = "running"  # started by this stack and answering
    STARTING = "starting"  # started by this stack, not answering (yet)
    STOPPED = "stopped"
    FOREIGN = "foreign"  # a port of the part is held by a process this stack did not start


@dataclass(frozen=True)
class PartStatus:
    """What ``up``/``down``/``status`` report for one part."""

    name: str
    state: State
    pid: int | None
    address: str
    log_file: Path
    detail: str = ""


class Part:
    """One process of the stack: where its files live, how to launch it and how to probe it."""

    name: ClassVar[str]
    binary: ClassVar[str]

    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings
        self.var_dir = settings.var_dir.resolve()
        self.home = self.var_dir / self.name

    @property
    def ports(self) -> tuple[int, ...]:
        """Every port the part listens on; the first is the one clients use."""
        raise NotImplementedError

    @property
    def address(self) -> str:
        return f"{HOST}:{self.ports[0]}"

    @property
    def pid_file(self) -> Path:
        return self.var_dir / "run" / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.var_dir / "log" / f"{self.name}.log"

    def prepare(self) -> None:
        """Write generated configs and initialise storage before a launch."""

    def command(self) -> list[str]:
        raise NotImplementedError

    def probe(self) -> None:
        """Return when the part answers; raise otherwise (bounded by PROBE_TIMEOUT)."""
        raise NotImplementedError

    def reload(self) -> None:
        """Make an already running part pick up changed config files."""

    def owns(self, pid: int) -> bool:
        """Whether ``pid`` is this part's process: it must be alive and name this part's home."""
        return _alive(pid) and str(self.home) in _cmdline(pid)


class Kafka(Part):
    name = "kafka"
    binary = "java"

    @property
    def ports(self) -> tuple[int, ...]:
        secure = self.settings.kafka_sasl_ssl_port
        return (self.settings.kafka_port, self.settings.kafka_controller_port) + (
            (secure,) if secure is not None else ()
        )

    @property
    def server_properties(self) -> Path:
        return self.home / "server.properties"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    def prepare(self) -> None:
        lib = ensure_kafka_jars(self.settings)
        self.home.mkdir(parents=True, exist_ok=True)
        self.server_properties.write_text(render_server_properties(self.settings, self.data_dir))
        if not (self.data_dir / "meta.properties").exists():
            self._format_storage(lib)

    def _format_storage(self, lib: Path) -> None:
        cmd = [
            *self._java(lib),
            "kafka.tools.StorageTool",
            "format",
            "-t",
            random_cluster_id(),
            "-c",
            str(self.server_properties),
            *scram_arguments(self.settings),
        ]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        except subprocess.TimeoutExpired as exc:
            raise StackError(f"kafka: formatting {self.data_dir} timed out") from exc
        if done.returncode != 0:
            output = self.home / "format.log"
            output.write_text(done.stdout + done.stderr)
            raise StackError(
                f"kafka: formatting storage {self.data_dir} failed; last lines of {output}:\n"
                f"{log_tail(output)}"
            )

    def _java(self, lib: Path) -> list[str]:
        return [
            self.binary,
            *KAFKA_JVM_OPTS,
            f"-Dlog4j2.configurationFile={KAFKA_LOG4J}",
            "-cp",
            f"{lib}/*",
        ]

    def command(self) -> list[str]:
        lib = kafka_lib_dir(self.settings)
        return [*self._java(lib), "kafka.Kafka", str(self.server_properties)]

    def probe(self) -> None:
        timeout_ms = int(PROBE_TIMEOUT * 1000)
        admin = KafkaAdminClient(
            bootstrap_servers=self.address,
            bootstrap_timeout_ms=timeout_ms,
            request_timeout_ms=timeout_ms,
            client_id="spm-stack-probe",
        )
        try:
            cluster = admin.describe_cluster()
        finally:
            admin.close()
        if not cluster.get("brokers"):
            raise StackError("kafka: metadata lists no broker yet")


class _HttpPart(Part):
    """A Prometheus-family server: answers ``/-/ready`` and reloads on ``POST /-/reload``.

    It reloads only when its config files changed since it last read them: a reload makes
    Prometheus restart rule evaluation and Alertmanager drop pending notifications, which
    loses an alert resolution when another run brings the same stack up meanwhile."""

    def config_files(self) -> list[Path]:
        """Every file the server reads its configuration from."""
        raise NotImplementedError

    @property
    def config_stamp(self) -> Path:
        return self.home / "config.sha256"

    def config_digest(self) -> str:
        digest = hashlib.sha256()
        for path in sorted(self.config_files()):
            digest.update(f"{path}\0".encode())
            digest.update(path.read_bytes())
        return digest.hexdigest()

    def probe(self) -> None:
        response = httpx.get(f"http://{self.address}/-/ready", timeout=PROBE_TIMEOUT)
        response.raise_for_status()

    def reload(self) -> None:
        self.prepare()
        digest = self.config_digest()
        if self.config_stamp.is_file() and self.config_stamp.read_text() == digest:
            return
        response = httpx.post(f"http://{self.address}/-/reload", timeout=10.0)
        if response.status_code != 200:
            raise StackError(
                f"{self.name}: reloading its config failed ({response.status_code}): "
                f"{response.text.strip()}"
            )
        self.config_stamp.write_text(digest)
        log.info("stack.reloaded", part=self.name)


class Prometheus(_HttpPart):
    name = "prometheus"
    binary = "prometheus"

    @property
    def ports(self) -> tuple[int, ...]:
        return (self.settings.prometheus_port,)

    @property
    def config_file(self) -> Path:
        return self.home / "prometheus.yml"

    def prepare(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        config = render_prometheus_config(self.settings)
        self.config_file.write_text(yaml.safe_dump(config, sort_keys=False))

    def config_files(self) -> list[Path]:
        config = yaml.safe_load(self.config_file.read_text())
        rules = [path for pattern in config.get("rule_files", []) for path in _glob(pattern)]
        return [self.config_file, *rules]

    def command(self) -> list[str]:
        return [
            self.binary,
            f"--config.file={self.config_file}",
            f"--storage.tsdb.path={self.home / 'data'}",
            "--storage.tsdb.retention.time=15d",
            f"--web.listen-address={self.address}",
            "--web.enable-lifecycle",
        ]


class Alertmanager(_HttpPart):
    name = "alertmanager"
    binary = "prometheus-alertmanager"

    @property
    def ports(self) -> tuple[int, ...]:
        return (self.settings.alertmanager_port,)

    @property
    def config_file(self) -> Path:
        return self.home / "alertmanager.yml"

    def prepare(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        config = render_alertmanager_config(self.settings)
        self.config_file.write_text(yaml.safe_dump(config, sort_keys=False))

    def config_files(self) -> list[Path]:
        config = yaml.safe_load(self.config_file.read_text())
        templates = [path for pattern in config.get("templates", []) for path in _glob(pattern)]
        return [self.config_file, *templates]

    def command(self) -> list[str]:
        return [
            self.binary,
            f"--config.file={self.config_file}",
            f"--storage.path={self.home / 'data'}",
            f"--web.listen-address={self.address}",
            "--cluster.listen-address=",
        ]


def parts(settings: StackSettings) -> list[Part]:
    """The parts of ``settings.stack_parts`` in start order (Prometheus last: it sends alerts to
    Alertmanager)."""
    every = [Kafka(settings), Alertmanager(settings), Prometheus(settings)]
    return [part for part in every if part.name in settings.stack_parts]


# --- configuration ---------------------------------------------------------------------------


def render_server_properties(settings: StackSettings, data_dir: Path) -> str:
    """A single-node KRaft broker+controller on loopback, sized for tests and the demo."""
    broker, controller = settings.kafka_port, settings.kafka_controller_port
    secure = settings.kafka_sasl_ssl_port
    sasl_ssl = f",SASL_SSL://{HOST}:{secure}" if secure is not None else ""
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{HOST}:{controller}",
        "listeners": f"PLAINTEXT://{HOST}:{broker},CONTROLLER://{HOST}:{controller}{sasl_ssl}",
        "advertised.listeners": f"PLAINTEXT://{HOST}:{broker}{sasl_ssl}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
        + (",SASL_SSL:SASL_SSL" if secure is not None else ""),
        "log.dirs": str(data_dir),
        "num.partitions": "1",
        "auto.create.topics.enable": "false",
        "min.insync.replicas": "1",
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        # A restart after a crash waits for the old broker session to expire (default 9 s).
        "broker.heartbeat.interval.ms": "500",
        "broker.session.timeout.ms": "2500",
        "log.retention.hours": "168",
    }
    if secure is not None:
        props |= sasl_ssl_properties(settings)
    return "".join(f"{key}={value}\n" for key, value in props.items())


def sasl_ssl_properties(settings: StackSettings) -> dict[str, str]:
    """The SASL_SSL listener's key (the keystore) and logins: the SCRAM mechanisms check the
    credentials ``kafka-storage format --add-scram`` stored in the cluster metadata; PLAIN
    checks the user written into its JAAS line."""
    keystore, keystore_password = settings.kafka_ssl_keystore, settings.kafka_ssl_keystore_password
    user, password = settings.kafka_sasl_username, settings.kafka_sasl_password
    assert keystore and keystore_password and user and password  # StackSettings checked them
    listener = "listener.name.sasl_ssl"
    scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
    plain = (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        f'user_{user}="{password.get_secret_value()}";'
    )
    return {
        "sasl.enabled.mechanisms": ",".join((*SCRAM_MECHANISMS, "PLAIN")),
        **{f"{listener}.{m.lower()}.sasl.jaas.config": scram for m in SCRAM_MECHANISMS},
        f"{listener}.plain.sasl.jaas.config": plain,
        f"{listener}.ssl.keystore.type": "PKCS12",
        f"{listener}.ssl.keystore.location": str(keystore.resolve()),
        f"{listener}.ssl.keystore.password": keystore_password.get_secret_value(),
    }


def scram_arguments(settings: StackSettings) -> list[str]:
    """``kafka-storage format`` arguments that create the SASL_SSL listener's SCRAM user: KRaft
    keeps SCRAM credentials in the cluster metadata, so they are added when it is formatted."""
    if settings.kafka_sasl_ssl_port is None:
        return []
    user, password = settings.kafka_sasl_username, settings.kafka_sasl_password
    assert user and password  # StackSettings checked them
    credential = f"[name={user},password={password.get_secret_value()}]"
    return [arg for m in SCRAM_MECHANISMS for arg in ("--add-scram", f"{m}={credential}")]


def render_prometheus_config(settings: StackSettings) -> dict[str, Any]:
    """deploy/prometheus/prometheus.yml with this stack's ports and absolute rule paths."""
    config: dict[str, Any] = yaml.safe_load(PROMETHEUS_TEMPLATE.read_text())
    rules_base = PROMETHEUS_TEMPLATE.parent
    config["rule_files"] = [str(rules_base / pattern) for pattern in config.get("rule_files", [])]
    for alertmanager in config["alerting"]["alertmanagers"]:
        for static in alertmanager["static_configs"]:
            static["targets"] = [f"{HOST}:{settings.alertmanager_port}"]
    for job in config["scrape_configs"]:
        if job["job_name"] == "spm-worker":
            job["static_configs"] = [{"targets": [f"{HOST}:{settings.web_port}"]}]
    return config


def render_alertmanager_config(settings: StackSettings) -> dict[str, Any]:
    """deploy/alertmanager/alertmanager.yml with absolute template paths and every receiver
    posting to this stack's loopback webhook port."""
    config: dict[str, Any] = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    base = ALERTMANAGER_CONFIG.parent
    config["templates"] = [str(base / pattern) for pattern in config.get("templates", [])]
    for receiver in config["receivers"]:
        for slack in receiver.get("slack_configs", []):
            url = httpx.URL(slack["api_url"])
            slack["api_url"] = str(url.copy_with(port=settings.alertmanager_webhook_port))
    return config


def _glob(pattern: str) -> list[Path]:
    """The files an absolute glob pattern (as Prometheus' ``rule_files`` takes) matches."""
    path = Path(pattern)
    return sorted(Path(path.anchor).glob(str(path.relative_to(path.anchor))))


def random_cluster_id() -> str:
    """A KRaft cluster id as ``StorageTool random-uuid`` makes it, without starting a JVM."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):  # Kafka rejects ids its CLI would read as options
            return cluster_id


def kafka_lib_dir(settings: StackSettings) -> Path:
    return settings.cache_dir.resolve() / "kafka" / "lib"


def ensure_kafka_jars(settings: StackSettings) -> Path:
    """Resolve the broker classpath with Maven unless the cache matches the current pom."""
    lib = kafka_lib_dir(settings)
    stamp = lib.parent / "pom.sha256"
    digest = hashlib.sha256(KAFKA_POM.read_bytes()).hexdigest()
    if lib.is_dir() and stamp.is_file() and stamp.read_text().strip() == digest:
        return lib
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError("kafka: `mvn` not found; install Maven (make deps) to fetch the broker")
    shutil.rmtree(lib, ignore_errors=True)
    log.info("stack.kafka.resolving_jars", into=str(lib))
    cmd = [
        mvn,
        "-q",
        "-B",
        "-f",
        str(KAFKA_POM),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={lib}",
        "-Dmdep.includeScope=runtime",
    ]
    try:
        done = subprocess.run(
            cmd, capture_output=True, text=True, timeout=MAVEN_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise StackError(f"kafka: Maven did not resolve the jars within {MAVEN_TIMEOUT}s") from exc
    if done.returncode != 0:
        output = (done.stdout + done.stderr).splitlines()[-LOG_TAIL_LINES:]
        raise StackError("kafka: Maven could not resolve the broker jars:\n" + "\n".join(output))
    stamp.write_text(digest + "\n")
    return lib


# --- processes -------------------------------------------------------------------------------


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs; an exited child of ours is reaped first so it cannot look alive."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (FileNotFoundError, ProcessLookupError):
        return ""


def _owned_pid(part: Part) -> int | None:
    """The pid in the part's pid file if that process is still this part, else None."""
    try:
        pid = int(part.pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if part.owns(pid) else None


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def _port_owner(port: int) -> str:
    """Who holds ``port`` as ``ss`` shows it (best effort, for error messages): a listener, or
    a client whose outgoing connection got it as its ephemeral port."""
    ss = shutil.which("ss")
    if ss is None:
        return "unknown process"
    done = subprocess.run(
        [ss, "-H", "-tanp", f"sport = :{port}"], capture_output=True, text=True, timeout=5
    )
    found = re.search(r'\("([^"]+)",pid=(\d+)', done.stdout)  # users:(("java",pid=42,fd=95))
    return f"{found[1]} (pid {found[2]})" if found else "unknown process"


def _busy_ports(part: Part) -> list[int]:
    return [port for port in part.ports if not _port_free(port)]


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last lines of a log file, for error messages."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return "(no log written)"
    return "\n".join(text.splitlines()[-lines:])


def _launch(part: Part) -> int:
    """Start ``part`` detached (own session, so it outlives the CLI); return its pid."""
    if shutil.which(part.binary) is None:
        raise StackError(f"{part.name}: `{part.binary}` not found on PATH; run `make deps`")
    part.prepare()
    part.log_file.parent.mkdir(parents=True, exist_ok=True)
    part.pid_file.parent.mkdir(parents=True, exist_ok=True)
    if part.log_file.exists():
        part.log_file.replace(part.log_file.with_suffix(".log.1"))
    with part.log_file.open("ab") as out:
        process = subprocess.Popen(
            part.command(),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=part.home,
            start_new_session=True,
        )
    part.pid_file.write_text(f"{process.pid}\n")
    if isinstance(part, _HttpPart):
        part.config_stamp.write_text(part.config_digest())
    log.info("stack.started", part=part.name, pid=process.pid, log=str(part.log_file))
    return process.pid


class _Exited(Exception):
    """The process under watch ended."""


def _wait_ready(part: Part, pid: int, timeout: float) -> None:
    """Probe until the part answers; fail fast if its process dies, give up after ``timeout``."""
    retrying = Retrying(
        stop=stop_after_delay(timeout),
        wait=wait_fixed(0.5),
        retry=retry_if_not_exception_type(_Exited),
        reraise=True,
    )
    try:
        for attempt in retrying:
            with attempt:
                if not _alive(pid):
                    raise _Exited
                part.probe()
    except _Exited:
        raise StackError(
            f"{part.name} (pid {pid}) exited during start-up; last lines of {part.log_file}:\n"
            f"{log_tail(part.log_file)}"
        ) from None
    except Exception as exc:
        raise StackError(
            f"{part.name} (pid {pid}) did not answer on {part.address} within {timeout:.0f}s "
            f"({type(exc).__name__}: {exc}); last lines of {part.log_file}:\n"
            f"{log_tail(part.log_file)}"
        ) from exc


def _terminate(part: Part, pid: int) -> None:
    """SIGTERM the part's process group, SIGKILL it if it is still there after STOP_TIMEOUT."""
    for sig, grace in ((signal.SIGTERM, STOP_TIMEOUT), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if not _alive(pid):
                part.pid_file.unlink(missing_ok=True)
                log.info("stack.stopped", part=part.name, pid=pid, signal=sig.name)
                return
            time.sleep(0.1)
    raise StackError(f"{part.name} (pid {pid}) survived SIGKILL; see {part.log_file}")


@contextlib.contextmanager
def _locked(settings: StackSettings) -> Iterator[None]:
    """Serialise ``up``/``down`` of one var dir (parallel `make test` runs share the stack)."""
    lock_path = settings.var_dir.resolve() / "run" / "stack.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    timeout = 2 * settings.stack_start_timeout + STOP_TIMEOUT
    with lock_path.open("w") as lock:
        retrying = Retrying(
            stop=stop_after_delay(timeout),
            wait=wait_fixed(0.2),
            retry=retry_if_exception_type(BlockingIOError),
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StackError(
                f"another `python -m tools.stack` command held {lock_path} for over {timeout:.0f}s"
            ) from None
        yield


# --- the three verbs -------------------------------------------------------------------------


def up(settings: StackSettings) -> list[PartStatus]:
    """Start every part that is not running and wait until all answer.

    Stale pid files (dead process, or a pid now used by another program) are dropped. A port
    held by a process this stack did not start is reported before anything is launched.
    A part started here that fails to answer is stopped again and reported with its log tail.
    """
    stack = parts(settings)
    with _locked(settings):
        running = {part.name: _owned_pid(part) for part in stack}
        to_start = [part for part in stack if running[part.name] is None]
        for part in to_start:
            part.pid_file.unlink(missing_ok=True)
            busy = _busy_ports(part)
            if busy:
                owners = ", ".join(f"{HOST}:{port} by {_port_owner(port)}" for port in busy)
                raise StackError(
                    f"{part.name}: port in use by a process this stack did not start "
                    f"({owners}); stop it or choose other ports (SPM_*_PORT)"
                )
        for part in to_start:
            running[part.name] = _launch(part)
        report = []
        for part in stack:
            pid = running[part.name]
            assert pid is not None
            started = part in to_start
            try:
                _wait_ready(part, pid, settings.stack_start_timeout)
            except StackError:
                if started and _alive(pid):
                    _terminate(part, pid)
                raise
            if not started:
                part.reload()
            detail = "started" if started else "already running"
            report.append(_status(part, State.RUNNING, pid, detail))
        return report


def down(settings: StackSettings) -> list[PartStatus]:
    """Stop the parts this stack started (reverse start order); others are left alone."""
    report = []
    with _locked(settings):
        for part in reversed(parts(settings)):
            pid = _owned_pid(part)
            if pid is None:
                part.pid_file.unlink(missing_ok=True)
                report.append(_status(part, State.STOPPED, None, "was not running"))
                continue
            _terminate(part, pid)
            report.append(_status(part, State.STOPPED, None, f"stopped pid {pid}"))
    return report


def status(settings: StackSettings) -> list[PartStatus]:
    """Each part's state, without changing anything."""
    report = []
    for part in parts(settings):
        pid = _owned_pid(part)
        if pid is not None:
            try:
                part.probe()
            except Exception as exc:
                report.append(_status(part, State.STARTING, pid, f"not answering: {exc}"))
            else:
                report.append(_status(part, State.RUNNING, pid))
        elif busy := _busy_ports(part):
            owners = ", ".join(f"{port} held by {_port_owner(port)}" for port in busy)
            report.append(_status(part, State.FOREIGN, None, owners))
        else:
            report.append(_status(part, State.STOPPED, None))
    return report


def _status(part: Part, state: State, pid: int | None, detail: str = "") -> PartStatus:
    return PartStatus(part.name, state, pid, part.address, part.log_file, detail)


# --- command line: python -m tools.stack up|down|status|jars ------------------------------------

app = typer.Typer(help="Start, stop and inspect the local stack.", no_args_is_help=True)
console = Console()
error_console = Console(stderr=True)

STATE_STYLES = {
    State.RUNNING: "green",
    State.STARTING: "yellow",
    State.STOPPED: "dim",
    State.FOREIGN: "red",
}


def _shown(path: Path) -> str:
    """A path relative to the working directory when it lies below it (shorter tables)."""
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


def _table(title: str, report: list[PartStatus]) -> Table:
    log_dir = _shown(report[0].log_file.parent)
    table = Table(title=title, title_justify="left", caption=f"logs: {log_dir}/<part>.log")
    for column in ("part", "state", "pid", "address"):
        table.add_column(column, no_wrap=True)
    table.add_column("detail", overflow="fold")
    for part in report:
        style = STATE_STYLES[part.state]
        table.add_row(
            part.name,
            f"[{style}]{part.state}[/{style}]",
            str(part.pid or "-"),
            part.address,
            part.detail,
        )
    return table


def _run(title: str, verb: Callable[[], list[PartStatus]]) -> list[PartStatus]:
    """Run a stack verb; a StackError becomes a red message and exit code 1."""
    try:
        with console.status(f"{title}…"):
            report = verb()
    except StackError as exc:
        error_console.print(f"[bold red]{title} failed:[/bold red] {exc}", highlight=False)
        raise typer.Exit(1) from None
    console.print(_table(title, report))
    return report


@app.command("up")
def up_command() -> None:
    """Start every part that is not running and wait until each answers (idempotent)."""
    settings = get_stack_settings()
    _run("stack up", lambda: up(settings))


@app.command("down")
def down_command() -> None:
    """Stop the parts `up` started; processes it did not start are left alone."""
    settings = get_stack_settings()
    _run("stack down", lambda: down(settings))


@app.command("status")
def status_command() -> None:
    """Show each part's state; exits 1 unless every part is running."""
    settings = get_stack_settings()
    report = _run("stack status", lambda: status(settings))
    if any(part.state is not State.RUNNING for part in report):
        raise typer.Exit(1)


@app.command("jars")
def jars_command() -> None:
    """Resolve the Kafka broker jars with Maven into the cache unless they are current."""
    settings = get_stack_settings()
    try:
        with console.status("resolving Kafka jars…"):
            lib = ensure_kafka_jars(settings)
    except StackError as exc:
        error_console.print(f"[bold red]resolving Kafka jars failed:[/bold red] {exc}")
        raise typer.Exit(1) from None
    console.print(f"Kafka jars in {_shown(lib)}")


if __name__ == "__main__":
    app()
