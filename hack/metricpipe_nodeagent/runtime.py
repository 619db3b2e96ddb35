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
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import structlog

from .podplan import ContainerPlan, PodPlan, Probe
from .podstatus import ContainerView, Terminated, decide_backoff, decide_restart
from .probes import ProbeKind, ProbeState, decide_due_probes, decide_probe_result, plan_probes

MAX_TERMINATION_MESSAGE = 4096  # bytes the kubelet keeps of a termination message
log = structlog.get_logger("nodeagent")
# Probes run beside the agent's loop, as the kubelet's probe workers do: a slow answer (a
# consumer on a loaded machine may take seconds) holds up neither the loop nor other pods.
PROBES = ThreadPoolExecutor(max_workers=32, thread_name_prefix="probe")


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
    probes: ProbeState | None = None  # of the running process
    _probing: dict[ProbeKind, Future[bool]] = field(default_factory=dict)

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
        self.waiting_reason = None
        self.probes = plan_probes(self.plan, self.started_mono)
        self.ready = self.probes.ready
        self._probing = {}  # results of the previous process's probes are not this one's
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
        self.process, self.ready, self.probes = None, False, None
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
        """Fold in the results of finished probes, then start the ones that are due."""
        if self.probes is None:
            return
        for kind, answer in list(self._probing.items()):
            if not answer.done():
                continue
            del self._probing[kind]
            verdict = decide_probe_result(self.probes, kind, answer.result(), now)
            self.probes, self.ready = verdict.state, verdict.state.ready
            if verdict.kill is not None and self.process is not None:
                log.warning("probe failed: restarting", container=self.plan.name,
                            reason=verdict.kill)  # fmt: skip
                self.signal(signal.SIGKILL)
                return
        due, self.probes = decide_due_probes(self.probes, now, frozenset(self._probing))
        for kind in due:
            probe = getattr(self.plan, kind)
            self._probing[kind] = PROBES.submit(check_probe, probe)

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
            started=self.probes is not None and self.probes.started,
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
