"""The one error type of the local stack: it names the component, the log and what to do."""

from __future__ import annotations

from pathlib import Path


class StackError(RuntimeError):
    def __init__(self, component: str, message: str, log: Path | None = None) -> None:
        self.component = component
        self.log = log
        hint = f" (log: {log})" if log else ""
        super().__init__(f"{component}: {message}{hint}")
