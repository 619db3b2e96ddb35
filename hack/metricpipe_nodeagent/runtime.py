"""Local processes for the containers of one pod: start, watch, probe, restart, stop."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import structlog

from .podplan import ContainerPlan, PodPlan, Probe
from .podstatus import ContainerView, Terminated, decide_backoff, decide_restart

MAX_TERMINATION_MESSAGE = 4096  # bytes the kubelet keeps of a termination message
log = structlog.get_logger("nodeagent")


def utcnow() -> datetime:
    return datetime.now(UTC)


def build_command(argv: tuple[str, ...] | list[str]) -> list[str]:
    """The container's command, tied to the agent's life where util-linux allows it.

    A kubelet that dies takes its containers' supervision with it; here, processes that
    outlived a SIGKILLed agent would keep consuming from the next stack started on the same
    ports. `setpriv --pdeathsig SIGTERM` makes them stop gracefully when the agent goes."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "SIGTERM", "--", *argv] if setpriv else list(argv)


def check_probe(probe: Probe) -> bool:
    try:
        if probe.kind == "tcpSocket":
            with socket.create_connection(("127.0.0.1", probe.port), timeout=probe.timeout):
                return True
        url = f"http://127.0.0.1:{probe.port}{probe.path}"
        with urllib.request.urlopen(url, timeout=probe.timeout) as response:
            return 200 <= int(response.status) < 400
    except OSError:
        return False


@dataclass
class LocalContainer:
    plan: ContainerPlan
    restart_policy: str
    log_path: Path
    cwd: Path
    process: subprocess.Popen[bytes] | None = None
    started_at: datetime | None = None
    started_mono: float = 0.0
    restart_count: int = 0
    ready: bool = False
    terminated: Terminated | None = None
    last_terminated: Terminated | None = None
    next_start: float = 0.0  # monotonic time of the next (re)start
    waiting_reason: str | None = None
    _next_probe: float = 0.0
    _liveness_failures: int = 0
    _next_liveness: float = 0.0

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        if self.plan.termination_message is not None:  # each start writes its own
            self.plan.termination_message.parent.mkdir(parents=True, exist_ok=True)
            self.plan.termination_message.unlink(missing_ok=True)
        with self.log_path.open("ab") as out:
            out.write(f"--- {utcnow().isoformat()} start #{self.restart_count}: "
                      f"{' '.join(self.plan.argv)}\n".encode())  # fmt: skip
            out.flush()
            self.process = subprocess.Popen(
                build_command(self.plan.argv), stdout=out, stderr=subprocess.STDOUT, cwd=self.cwd,
                env=dict(self.plan.env), start_new_session=True, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        self.started_at, self.started_mono = utcnow(), time.monotonic()
        self.ready, self.waiting_reason = False, None
        now = time.monotonic()
        self._next_probe = now + (self.plan.readiness.initial_delay if self.plan.readiness else 0)
        self._next_liveness = now + (self.plan.liveness.initial_delay if self.plan.liveness else 0)
        self._liveness_failures = 0
        log.info("container started", container=self.plan.name, pid=self.process.pid)

    def tick(self, stopping: bool) -> None:
        """Notice an exit (and schedule the restart), or probe the running process."""
        now = time.monotonic()
        if self.process is None:
            if self.terminated is None and not stopping and now >= self.next_start:
                self.start()
            return
        code = self.process.poll()
        if code is None:
            self._probe(now)
            return
        self._exited(code, now, stopping)

    def _exited(self, code: int, now: float, stopping: bool) -> None:
        assert self.started_at is not None
        ran = now - self.started_mono
        finished = Terminated(
            exit_code=code if code >= 0 else 128 - code,
            reason="Completed" if code == 0 else "Error",
            started_at=self.started_at, finished_at=utcnow(),
            signal=-code if code < 0 else None, message=self._termination_message(),
        )  # fmt: skip
        log.info("container exited", container=self.plan.name, code=code, ran=round(ran, 1))
        self.process, self.ready = None, False
        if stopping or not decide_restart(self.restart_policy, code):
            self.terminated = finished
            return
        self.last_terminated = finished
        self.restart_count += 1
        delay = decide_backoff(self.restart_count, ran)
        self.next_start = now + delay
        self.waiting_reason = "CrashLoopBackOff" if delay > 0 else "ContainerCreating"

    def _termination_message(self) -> str:
        path = self.plan.termination_message
        if path is None or not path.is_file():
            return ""
        return path.read_bytes()[:MAX_TERMINATION_MESSAGE].decode(errors="replace")

    def _probe(self, now: float) -> None:
        readiness, liveness = self.plan.readiness, self.plan.liveness
        if readiness is None:
            self.ready = True
        elif now >= self._next_probe:
            self.ready = check_probe(readiness)
            self._next_probe = now + (1.0 if not self.ready else readiness.period)
        if liveness is not None and now >= self._next_liveness:
            self._next_liveness = now + liveness.period
            self._liveness_failures = 0 if check_probe(liveness) else self._liveness_failures + 1
            if self._liveness_failures >= liveness.failure_threshold and self.process:
                log.warning("liveness probe failed: restarting", container=self.plan.name)
                self.signal(signal.SIGKILL)

    def signal(self, sig: int) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)

    def view(self) -> ContainerView:
        message = ""
        if self.waiting_reason == "CrashLoopBackOff":
            wait = max(0.0, self.next_start - time.monotonic())
            message = f"back-off {wait:.0f}s restarting failed container {self.plan.name}"
        return ContainerView(
            name=self.plan.name, image=self.plan.image,
            pid=self.process.pid if self.process else None,
            started_at=self.started_at, ready=self.ready, restart_count=self.restart_count,
            terminated=self.terminated, last_terminated=self.last_terminated,
            waiting_reason=self.waiting_reason, waiting_message=message,
        )  # fmt: skip


@dataclass
class LocalPod:
    plan: PodPlan
    directory: Path
    containers: list[LocalContainer] = field(default_factory=list)
    started: datetime = field(default_factory=utcnow)
    stopping: bool = False

    @classmethod
    def create(cls, plan: PodPlan, directory: Path) -> LocalPod:
        """Write the volumes' files and the log directory; nothing is started yet."""
        for volume, files in plan.volumes.items():
            root = directory / "volumes" / volume
            root.mkdir(parents=True, exist_ok=True)
            for relative, content in files.items():
                target = root / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(content)
        (directory / "home").mkdir(parents=True, exist_ok=True)
        pod = cls(plan, directory)
        pod.containers = [
            LocalContainer(c, plan.restart_policy, directory / "logs" / f"{c.name}.log", directory)
            for c in plan.containers
        ]
        return pod

    def tick(self) -> None:
        for container in self.containers:
            container.tick(self.stopping)

    def stop(self, grace_seconds: float) -> None:
        """SIGTERM to every container's process group; SIGKILL what is left after the grace."""
        self.stopping = True
        for container in self.containers:
            container.signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_seconds
        while time.monotonic() < deadline and self.running():
            time.sleep(0.1)
        for container in self.containers:
            if container.process is not None and container.process.poll() is None:
                log.warning("grace period over: SIGKILL", container=container.plan.name)
                container.signal(signal.SIGKILL)
                container.process.wait()
        self.tick()  # record the exits

    def running(self) -> bool:
        return any(c.process is not None and c.process.poll() is None for c in self.containers)

    def views(self) -> list[ContainerView]:
        return [c.view() for c in self.containers]
