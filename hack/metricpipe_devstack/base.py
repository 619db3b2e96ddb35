"""What every component of the local stack provides, and the shared start/wait logic."""

from __future__ import annotations

import socket
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import requests

from . import process
from .errors import StackError
from .settings import StackSettings


@dataclass(frozen=True)
class Probe:
    healthy: bool
    detail: str
    version: str = "?"


class Component(ABC):
    """A server of the local stack. Subclasses say how to prepare, run and probe it."""

    name: str
    startup_timeout: float = 180.0

    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings

    # -- what a subclass defines -------------------------------------------------------------
    @abstractmethod
    def argv(self) -> list[str] | None:
        """The command line, or None for a component without a long-running process."""

    @abstractmethod
    def probe(self) -> Probe:
        """Is it up and usable right now? Never raises."""

    def prepare(self) -> None:  # noqa: B027 - optional hook
        """Write configuration and initialise storage before the first start."""

    def process_env(self) -> dict[str, str]:
        return {}

    def run_as(self) -> str | None:
        return None

    def workdir(self) -> Path:
        return self.data_dir

    def port(self) -> int | None:
        return None

    def env(self) -> dict[str, str]:
        """Entries this component contributes to .stack/env."""
        return {}

    # -- shared behaviour -------------------------------------------------------------------
    @property
    def log_path(self) -> Path:
        return self.settings.log_dir / f"{self.name}.log"

    @property
    def data_dir(self) -> Path:
        return self.settings.data_root / self.name

    def record(self) -> process.PidRecord | None:
        return process.read_record(self.settings.run_dir, self.name)

    def is_running(self) -> bool:
        record = self.record()
        return record is not None and process.is_alive(record)

    def ports_in_use(self) -> list[int]:
        """Ports of this component that something else already listens on."""
        busy = []
        for port in self.listen_ports():
            with socket.socket() as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind((self.bind_host(), port))
                except OSError:
                    busy.append(port)
        return busy

    def listen_ports(self) -> list[int]:
        port = self.port()
        return [port] if port else []

    def bind_host(self) -> str:
        """The address the server listens on: the host's address on the pod bridge, so that
        pods reach it (servers only the host talks to override this with 127.0.0.1)."""
        return self.settings.host_address

    def start(self) -> None:
        argv = self.argv()
        if argv is None or self.is_running():
            return
        busy = self.ports_in_use()
        if busy:
            raise StackError(
                self.name,
                f"port(s) {busy} on {self.bind_host()} are already in use, probably by another "
                "metricpipe stack (run 'make stack-down' in that checkout) or another program. "
                "Stop it, or "
                f"choose other ports with METRICPIPE_PORT_<NAME> (see {__package__}/settings.py)",
            )
        self.prepare()
        process.start_process(
            self.name,
            argv,
            run_dir=self.settings.run_dir,
            log_path=self.log_path,
            env=self.process_env(),
            cwd=self.workdir() if self.workdir().exists() else None,
            user=self.run_as(),
        )

    def wait_healthy(self, timeout: float | None = None) -> Probe:
        deadline = time.monotonic() + (timeout or self.startup_timeout)
        last = Probe(False, "not probed yet")
        while time.monotonic() < deadline:
            if self.argv() is not None and not self.is_running():
                raise StackError(
                    self.name,
                    f"the process exited during start-up. Last log lines:\n{self.log_tail()}\n"
                    "Fix the cause, then run 'make stack-up' again",
                    self.log_path,
                )
            last = self.probe()
            if last.healthy:
                return last
            time.sleep(1.0)
        raise StackError(
            self.name,
            f"not healthy after {timeout or self.startup_timeout:.0f}s ({last.detail}). "
            f"Last log lines:\n{self.log_tail()}\nSee the log, then 'make stack-down stack-up'",
            self.log_path,
        )

    def stop(self) -> str:
        return process.stop_process(self.settings.run_dir, self.name)

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log written)"


def http_get_json(url: str, *, timeout: float = 3.0, **kwargs: object) -> tuple[int, object]:
    """GET a URL; returns (status, parsed JSON or text). Raises requests errors."""
    response = requests.get(url, timeout=timeout, **kwargs)  # type: ignore[arg-type]
    try:
        return response.status_code, response.json()
    except ValueError:
        return response.status_code, response.text
